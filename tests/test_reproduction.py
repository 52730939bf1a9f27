"""The study behind docs/REPRODUCTION.md and the report behind docs/PERFORMANCE.md: which runs the
study makes, and that each document is built from the figures it is given (the figures themselves
come from `reproduce` and `bench all`, run by hand: hours and tens of minutes)."""

from __future__ import annotations

import json

from conftest import run_cli
from PIL import Image

from launcher.commands import performance, reproduction
from launcher.study.plan import Study


def study(tmp_path, seeds=(1, 2), scale="small") -> Study:
    return Study(scale=scale, minutes=2.0, architecture="small", seeds=seeds, test_sentences=50, gan_minutes=3.0,
                 classifier_epochs=1, work=tmp_path / "work", out=tmp_path / "docs" / "REPRODUCTION.md")  # fmt: skip


def test_the_study_runs_every_depth_reversed_and_two_layers_plain_for_every_seed(tmp_path):
    runs = study(tmp_path).s2s_runs()
    configs = ("reversed-1l", "reversed-2l", "reversed-4l", "plain-2l")
    assert sorted(runs) == sorted(f"{config}-seed{seed}" for seed in (1, 2) for config in configs)
    assert runs["plain-2l-seed2"] == ("model.num_layers=2", "model.reverse_source=false", "train.seed=2")
    assert runs["reversed-4l-seed1"] == ("model.num_layers=4", "model.reverse_source=true", "train.seed=1")


def test_one_seed_is_refused_there_is_no_spread(tmp_path):
    result = run_cli("reproduce", "--seeds", "1", "--work-dir", tmp_path)
    assert result.returncode == 2 and "--seeds must be at least 2" in result.stderr


def test_configurations_below_copying_the_source_are_named(tmp_path):
    s = study(tmp_path)
    results = fake_results(tmp_path, s)
    for name in s.s2s_runs():
        results["evaluations"][name]["bleu_copy_baseline"] = 4.5  # fake_results: BLEU 1 + run index
    reproduction.write(s, results)
    text = s.out.read_text()
    below = [c for c in ("reversed-1l", "reversed-2l", "reversed-4l", "plain-2l")
             if sum(1.0 + list(s.s2s_runs()).index(f"{c}-seed{k}") for k in (1, 2)) / 2 < 4.5]  # fmt: skip
    assert below and f"{', '.join(below)}\nscore below copying the source unchanged (BLEU 4.50" in text


def test_a_work_dir_holds_one_study_other_settings_are_refused(tmp_path):
    assert study(tmp_path).claim_work_dir() == "" and study(tmp_path).claim_work_dir() == ""
    result = run_cli("reproduce", "--work-dir", tmp_path / "work", "--architecture", "paper")
    assert result.returncode == 2 and "architecture small here, paper asked" in result.stderr
    assert "minutes 2.0 here, 5.0 asked" in result.stderr


def fake_results(tmp_path, s: Study) -> dict:
    runs, evaluations = {}, {}
    for i, name in enumerate(s.s2s_runs()):
        run_dir = tmp_path / "runs" / name
        run_dir.mkdir(parents=True)
        logged = [{"step": k * 10, "loss": 6.0 - k / 10, "dev_ppl": 300.0 - 10 * k - i} for k in range(1, 6)]
        (run_dir / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in logged))
        runs[name] = {"steps": 100 + i, "run_dir": str(run_dir)}
        evaluations[name] = {"bleu": 1.0 + i, "perplexity": 100.0 - i, "num_sentences": 50, "translate_seconds": 3.0}
    for beam in (1, 2, 12):
        evaluations[f"{s.main_run(1)}-beam{beam}"] = {"bleu": 2.0 + beam / 10, "translate_seconds": float(beam)}
    evaluations["ensemble"] = {"bleu": 9.87, "perplexity": 54.32}
    images = []
    for name in ("grid.png", "nearest.png"):
        Image.new("L", (29, 29)).save(tmp_path / name)
        images.append(str(tmp_path / name))
    gan = {
        "training": {"steps": 1234, "epochs": 2.5, "train_seconds": 180.0},
        "classifier": {"test_accuracy": 0.9812},
        "evaluation": {"parzen_ll": 111.1, "parzen_se": 2.2, "parzen_sigma": 0.2, "fcd": 77.7,
                       "class_coverage": 0.9, "num_samples": 10000, "grid": images[0], "nearest_grid": images[1]},
    }  # fmt: skip
    return {"s2s": runs, "evaluations": evaluations, "gan": gan}


def test_the_reproduction_document_is_built_from_the_study_figures(tmp_path):
    s = study(tmp_path)
    results = fake_results(tmp_path, s)
    for i, summary in enumerate(reproduction.records(results)[:6]):
        summary["study_seconds"] = 60.0 * (i + 1)  # 1 + 2 + ... + 6 minutes
    reproduction.write(s, results)
    text = s.out.read_text()
    # the reversal rows: the mean over seeds and its range, beside the paper's figures
    order = list(s.s2s_runs())
    at = [order.index(f"plain-2l-seed{k}") for k in (1, 2)]  # fake_results: run i took 100 + i steps, ppl 100 - i
    steps, ppl = [100 + i for i in at], [100.0 - i for i in at]
    assert f"| plain | {sum(steps) / 2:.0f} ({min(steps)}–{max(steps)}) | {sum(ppl) / 2:.2f} ({min(ppl):.2f}–" in text
    assert "ppl 5.8, BLEU 25.9 |" in text and "ppl 4.7, BLEU 30.6 |" in text
    assert "| 12 | 3.20 | 12 |" in text and "| both (ensemble) | 9.87 | 54.32 |" in text
    assert "| 111.1 ± 2.2 | 0.200 | 77.7 | 0.90 | 225 ± 2 |" in text
    assert "its 6 runs and evaluations took 21 minutes" in text and "0.9812" in text
    assert "no model has learned to translate yet" not in text  # fake_results' BLEU reaches 8
    # depth at equal steps: every run logged dev_ppl at steps 10..50, run i at step 50: 250 - i
    at = [order.index(f"reversed-4l-seed{k}") for k in (1, 2)]
    dev = [250.0 - i for i in at]
    assert "dev perplexity at step 50 |" in text and f"| {sum(dev) / 2:.2f} ({min(dev):.2f}–{max(dev):.2f}) |" in text
    assert "--architecture small" in text and "Luong attention" in text
    # the measured effects said in words: beams 1/2/12 scored 2.1/2.2/3.2 and decoded in 1/2/12 s
    assert "beam 2 against greedy +0.10 BLEU; beam 12\nagainst beam 2 +1.00, decoding 6.0× as long" in text
    members = [100.0 - order.index(f"reversed-2l-seed{k}") for k in (1, 2)]
    mean = sum(members) / 2
    assert (
        f"the ensemble) {mean:.2f} → 54.32 ({54.32 / mean - 1:+.1%}; the ensemble and its members' range do not" in text
    )
    assert "below copying the source" not in text  # no copy baseline in fake_results
    figures = s.out.parent / "reproduction"
    assert Image.open(figures / "s2s-dev.png").size[0] > 800
    assert (figures / "gan-nearest.png").exists() and json.loads((figures / "results.json").read_text())["gan"]


def test_the_performance_document_is_built_from_the_benchmark_figures(tmp_path):
    machine = {"cpu_model": "Test CPU", "cpus": 2, "cpu_capability": "AVX2", "torch": "2.13.0", "gpu": None}
    s2s = {"batch_size": 32, "vocab_sizes": [10000, 10000], "precision": "fp32", "threads": 2, "mfu": 0.5}
    results = [
        {"bench": "data", "read_tokens_per_s": {"0_workers": 800, "1_workers": 1000, "2_workers": 1900},
         "read_pairs_per_s": {"0_workers": 30, "1_workers": 40, "2_workers": 76}, "shard_pairs_per_s": 12.5,
         "shard_pairs": 400, "shard_workers": 2, "read_images_per_s": 5000, "read_logical_streams_tokens_per_s": 1850,
         "read_by_offset_tokens_per_s": 2500, **machine},
        {"bench": "s2s", "preset": "small", "words_per_s": 4321.0, "step_time_s": 0.5, **s2s, **machine},
        {"bench": "plain_pytorch_s2s", "preset": "small", "words_per_s": 2000.0, "step_time_s": 0.9, "steps": 30,
         **machine},
        {"bench": "s2s_same_as_plain", "preset": "small", "words_per_s": 3000.0, "step_time_s": 0.6, **s2s, **machine},
        {"bench": "ddp_scaling", "preset": "small", "one_process_words_per_s": 1000.0, "steps": 40,
         "two_processes_words_per_s": 1500.0, "speedup": 1.5, "efficiency": 0.75, **machine},
        {"bench": "pipeline", "preset": "paper", "plain_step_s": 2.0, "pipelined_step_s": 2.2, "overhead": 0.1,
         "chunk_len": 8, "devices": 8, **machine},
        {"bench": "checkpoint", "preset": "paper", "checkpoint_bytes": 662_000_000, "foreground_stall_s": 3.5,
         "background_stall_s": 0.5, "stall_ratio": 0.1429, "host_copy_s": 0.45, "step_time_s": 13.0, "saves": 3,
         "steps_between": 1, **machine},
        {"bench": "plain_pytorch_gan", "preset": "paper-mnist", "images_per_s": 2000.0, "step_time_s": 0.05,
         "step_time_median_s": 0.048, "steps": 200, **machine},
        {"bench": "gan_same_as_plain", "preset": "paper-mnist", "images_per_s": 2500.0, "step_time_s": 0.04,
         "step_time_median_s": 0.039, **machine},
        {"bench": "gan", "preset": "paper-mnist", "arch": "paper-mnist", "update_mode": "joint", "batch_size": 100,
         "threads": 2, "images_per_s": 9876.0, "step_time_s": 0.0101, **machine},
    ]  # fmt: skip
    out = tmp_path / "docs" / "PERFORMANCE.md"
    performance.write(results, out, seconds=600, command="python -m launcher.main bench all")
    text = out.read_text()
    assert "in 10.0 minutes" in text and "Test CPU, 2 CPUs (AVX2)" in text and "no GPU" in text
    assert "| small | 32 | 10,000/10,000 | fp32 | 2 | 4,321 | 0.500 | 50.0% |" in text
    assert "Ours / plain: **1.50×** words/s." in text
    assert "| 2 × 1 | 1,500 | 1.50 | 75% |" in text and "+10.0%" in text
    assert "| paper-mnist | paper-mnist | joint | 100 | 2 | 9,876 | 0.0101 |" in text
    assert "| read, 2 workers | 1,900 | 76 |" in text and "| read, 1 worker | 1,000 | 40 |" in text
    assert "30 timed steps" in text and "200 timed steps" in text and "Ours / plain: **1.25×** images/s." in text
    assert "| ours (`bench gan --preset paper-mnist`) | 2,500 | 0.0400 | 0.0390 |" in text
    assert "| read, in the training process | 800 | 30 |" in text and "| 1,850 |" in text and "| 2,500 |" in text
    assert (
        "(662 MB with" in text and "| written in the background (`train.async_checkpoints`) | 0.500 | 14.3% |" in text
    )
    assert len((tmp_path / "docs" / "performance.jsonl").read_text().splitlines()) == len(results)


def test_a_budget_too_small_to_translate_is_said_plainly(tmp_path):
    s = study(tmp_path)
    results = fake_results(tmp_path, s)
    for found in results["evaluations"].values():
        found["bleu"] = 0.05
    reproduction.write(s, results)
    assert "At 2 minutes per run no model has learned to translate yet" in s.out.read_text()


def test_the_paper_scale_document_has_every_depth_and_the_four_layer_model_at_its_centre(tmp_path):
    s = study(tmp_path, seeds=(1, 2, 3, 4, 5), scale="paper")
    reproduction.write(s, fake_results(tmp_path, s))
    text = s.out.read_text()
    assert "--scale paper" in text and "| plain | " in text and "One checkpoint (reversed-4l-seed1)" in text
    assert all(f"\n| {layers} | " in text for layers in (1, 2, 3, 4)) and "3 → 4 layers" in text
    assert "Beam 12. Paper (BLEU)" in text
