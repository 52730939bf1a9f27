"""The study behind docs/REPRODUCTION.md and the report behind docs/PERFORMANCE.md: which runs the
study makes, and that each document is built from the figures it is given (the figures themselves
come from `reproduce` and `bench all`, run by hand: hours and tens of minutes)."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time

from conftest import run_cli
from PIL import Image

from launcher.commands import performance, reproduction
from launcher.paths import shared_data
from launcher.study import run
from launcher.study.plan import Study, steps

PPL = {"reversed-1l": (50.0, 52.0), "reversed-2l": (60.0, 62.0), "reversed-4l": (58.0, 64.0), "plain-2l": (70.0, 72.0)}
BLEU = {"reversed-1l": (7.0, 8.0), "reversed-2l": (5.0, 6.0), "reversed-4l": (4.0, 6.5), "plain-2l": (3.0, 4.0)}


def study(tmp_path, seeds=(1, 2), scale="small") -> Study:
    return Study(scale=scale, steps=2000, architecture="paper", seeds=seeds, test_sentences=50, gan_epochs=3.0,
                 classifier_epochs=1, work=tmp_path / "work", out=tmp_path / "docs" / "REPRODUCTION.md")  # fmt: skip


def test_the_study_runs_every_depth_reversed_and_two_layers_plain_for_every_seed(tmp_path):
    runs = study(tmp_path).s2s_runs()
    configs = ("reversed-1l", "reversed-2l", "reversed-4l", "plain-2l")
    assert sorted(runs) == sorted(f"{config}-seed{seed}" for seed in (1, 2) for config in configs)
    assert runs["plain-2l-seed2"].overrides == ("model.num_layers=2", "model.reverse_source=false", "train.seed=2")
    assert runs["reversed-4l-seed1"].overrides == ("model.num_layers=4", "model.reverse_source=true", "train.seed=1")


def test_the_cpu_study_reads_dev_and_test_in_domain_and_the_paper_study_the_news_sets(tmp_path):
    """small: every s2s run's dev set is giga-fren's val split (sharded by the data step), every evaluation
    and Figure 3 read giga-fren's test split; paper: newstest2013 (the runs' default) and newstest2014."""
    held_out = shared_data() / "wmt14-en-fr" / "train-giga-fren-head30000" / "original-split"
    test = ("--src", str(held_out / "test.en"), "--ref", str(held_out / "test.fr"))
    small = study(tmp_path)
    found = {step.name: step.args for step in steps(small)}
    for name in small.s2s_runs():
        args = found[f"train/{name}"]
        assert args[args.index("--dev") + 1] == str(small.work / "shards" / "giga-fren-val")
    for name in ("evaluate/reversed-2l-seed1-beam12", "evaluate/ensemble-beam2", "figures/s2s"):
        args = found[name]
        assert args[args.index("--src") :][:4] == test and "--data-root" not in args, name
    paper = Study(**{**small.__dict__, "scale": "paper", "data_root": tmp_path / "wmt14"})
    for step in steps(paper):
        assert "--dev" not in step.args and "--src" not in step.args, step.name
        if step.name.startswith(("evaluate/", "figures/s2s")):
            assert step.args[step.args.index("--data-root") + 1] == str(tmp_path / "wmt14"), step.name


def test_the_gan_keeps_a_checkpoint_at_each_point_of_its_curve_and_each_is_evaluated(tmp_path):
    s = study(tmp_path)  # 3 epochs of 500 steps
    assert s.gan_curve() == [187, 374, 561, 748, 935, 1122, 1309, 1500]
    found = {step.name: step for step in steps(s)}
    assert "max_steps=1500" in found["gan/train"].args and "train.checkpoint_every_steps=187" in found["gan/train"].args
    for step in s.gan_curve():
        evaluation = found[f"gan/curve/step-{step}" if step < 1500 else "gan/evaluate"]
        assert str(s.work / "gan" / "checkpoints" / f"step-{step:08d}.pt") in evaluation.args
        assert evaluation.after == ("gan/train", "gan/classifier")


def test_the_study_runs_its_steps_two_at_a_time_each_after_the_steps_it_needs(tmp_path, monkeypatch):
    s, began, ended, threads = study(tmp_path), {}, {}, set()
    clock = iter(range(10_000))
    lock = threading.Lock()

    def fake_step(study_, step, n):
        with lock:
            began[step.name] = next(clock)
            threads.add(n)
        time.sleep(0.002)
        with lock:
            ended[step.name] = next(clock)
        return {}

    monkeypatch.setattr(run, "run_step", fake_step)
    run.run_here(s, lanes=2)
    graph = steps(s)
    assert set(began) == {step.name for step in graph} and threads == {max(1, (os.cpu_count() or 1) // 2)}
    for step in graph:
        assert all(ended[need] < began[step.name] for need in step.after), step.name
    events = sorted([(t, 1) for t in began.values()] + [(t, -1) for t in ended.values()])
    assert max(itertools.accumulate(delta for _, delta in events)) == 2
    assert began["gan/train"] < began[f"train/{s.main_run(1)}"], "the longest step first"


def test_one_seed_is_refused_there_is_no_spread(tmp_path):
    result = run_cli("reproduce", "--seeds", "1", "--work-dir", tmp_path)
    assert result.returncode == 2 and "--seeds must be at least 2" in result.stderr


def test_configurations_below_copying_the_source_are_named(tmp_path):
    s = study(tmp_path)
    results = fake_results(tmp_path, s)
    for name in s.s2s_runs():
        results["evaluations"][name]["bleu_copy_baseline"] = 5.2
    reproduction.write(s, results)
    assert "translate: plain-2l\nscore below copying the source unchanged (BLEU 5.20" in s.out.read_text()


def test_a_work_dir_holds_one_study_other_settings_are_refused(tmp_path):
    assert study(tmp_path).claim_work_dir() == "" and study(tmp_path).claim_work_dir() == ""
    result = run_cli("reproduce", "--work-dir", tmp_path / "work", "--architecture", "small")
    assert result.returncode == 2 and "architecture paper here, small asked" in result.stderr
    assert "steps 2000 here, 3000 asked" in result.stderr


def gan_results(tmp_path) -> dict:
    """A GAN trained 1,000 steps (1 s a step) in two attempts, evaluated at steps 250, 500, 750, 1000."""
    images = []
    for name in ("grid.png", "nearest.png"):
        Image.new("L", (29, 29)).save(tmp_path / name)
        images.append(str(tmp_path / name))
    run_dir = tmp_path / "gan"
    run_dir.mkdir()
    logged = [{"step": 0, "time": 1000.0, "attempt_began": True}]
    logged += [{"step": k, "time": 1000.0 + k} for k in range(50, 601, 50)]
    logged += [{"step": 600, "time": 5000.0, "attempt_began": True}]  # resumed at 600, after 600 s of training
    logged += [{"step": k, "time": 5000.0 + k - 600} for k in range(650, 1001, 50)]
    (run_dir / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in logged))
    curve = {str(step): {"parzen_ll": ll, "parzen_se": 2.0, "fcd": 90.0 - step / 100, "class_coverage": 1.0}
             for step, ll in ((250, 100.0), (500, 120.0), (750, 130.0), (1000, 140.0))}  # fmt: skip
    evaluation = {**curve["1000"], "parzen_sigma": 0.2, "num_samples": 10000, "grid": images[0],
                  "nearest_grid": images[1]}  # fmt: skip
    training = {"steps": 1000, "epochs": 2.0, "train_seconds": 1000.0}
    return {"training": training, "classifier": {"test_accuracy": 0.9812}, "evaluation": evaluation,
            "curve": {**curve, "1000": evaluation}, "run_dir": str(run_dir)}  # fmt: skip


def fake_results(tmp_path, s: Study) -> dict:
    """Test perplexity and BLEU per configuration and seed from PPL and BLEU; dev perplexity logged at
    steps 10..50, 60 − step above the test figure; beams 1/2/12 of the main models 2.1/2.2/3.2 BLEU
    (+1 for the second seed), decoded in 1/2/12 s."""
    runs, evaluations = {}, {}
    for name in s.s2s_runs():
        config, seed = name.rsplit("-seed", 1)
        k = s.seeds.index(int(seed)) % 2
        known = config if config in PPL else "plain-2l" if config.startswith("plain") else "reversed-2l"
        ppl, bleu = PPL[known], BLEU[known]
        run_dir = tmp_path / "runs" / name
        run_dir.mkdir(parents=True)
        logged = [{"step": t, "loss": 6.0 - t / 100, "dev_ppl": ppl[k] + 60 - t} for t in range(10, 51, 10)]
        (run_dir / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in logged))
        runs[name] = {"steps": 2000, "epochs": 1.6, "run_dir": str(run_dir)}
        evaluations[name] = {"bleu": bleu[k], "perplexity": ppl[k], "perplexity_other_source": 2 * ppl[k],
                             "num_sentences": 50, "translate_seconds": 3.0}  # fmt: skip
    for k, seed in enumerate(s.seeds[:2]):
        for beam in (1, 2, 12):
            evaluations[f"{s.main_run(seed)}-beam{beam}"] = {"bleu": 2.0 + beam / 10 + k, "translate_seconds": beam}
    evaluations["ensemble"] = {"bleu": 9.87, "perplexity": 54.32}
    return {"s2s": runs, "evaluations": evaluations, "gan": gan_results(tmp_path)}


def test_the_reproduction_document_gives_every_claim_its_verdict_from_the_study_figures(tmp_path):
    s = study(tmp_path)
    results = fake_results(tmp_path, s)
    ends = (60, 120, 240, 360, 540, 720)  # two lanes: 1, 3, 5 minutes after each other, and 2, 4, 6
    for i, summary in enumerate(reproduction.records(results)[:6]):
        summary["study_seconds"], summary["finished_at"] = 60.0 * (i + 1), 10_000.0 + ends[i]
    reproduction.write(s, results)
    text = s.out.read_text()
    assert "its 6 runs and evaluations took 21 minutes, 12 minutes of wall time with up to 2 at once" in text
    assert "--scale small --architecture paper --steps-per-run 2000 --seeds 2" in text
    # the claims table: the paper's direction with the seeds apart, the opposite apart, or overlapping
    for claim, verdict in (
        ("Reversing the source lowers test perplexity | 5.8 → 4.7 | 71.00 → 61.00 (-14.1%)", "reproduced"),
        ("Reversing the source raises test BLEU | 25.9 → 30.6 | 3.50 → 5.50 (+57.1%)", "reproduced"),
        ("2 layers rather than 1 lower test perplexity", "not reproduced"),
        ("4 layers rather than 2 lower test perplexity", "not resolved at this budget"),
        ("Beam 2 scores higher BLEU than greedy | most of beam 12's gain | +0.10, +0.10 (per model)", "reproduced"),
        ("Beam 2 gives most of beam 12's gain", "not reproduced"),  # 0.1 of a 1.1 gain
        ("An ensemble of 2 raises BLEU over each member | 30.59", "reproduced"),
        ("An ensemble of 2 lowers test perplexity below each member's", "reproduced"),
        ("The GAN's Parzen estimate on MNIST (test) | 225 ± 2 | 140.0 ± 2.0", "not resolved at this budget"),
    ):
        assert any(line.startswith(f"| {claim}") and line.endswith(f"**{verdict}** |") for line in text.splitlines())
    assert "Here: 5 reproduced, 2 not reproduced, 2 not resolved at this budget." in text
    # the tables: mean (min–max) over seeds; what the dev curves say
    assert "| plain | 71.00 (70.00–72.00) | 81.00 (80.00–82.00) | 3.50 (3.00–4.00) | ppl 5.8, BLEU 25.9 |" in text
    assert "dev perplexity at step 50 |" in text
    assert "another sentence's: plain-2l 71.00 (70.00–72.00) → 142.00 (140.00–144.00); reversed-2l 61.00" in text
    assert "Dev curves: reversed below plain for every seed from step 10 on; the gap between the means" in text
    assert (
        "Dev curves: 1 layer below 2 layers for every seed from step 10 on; the gap between the means (1 layer" in text
    )
    assert "Dev curves: the seeds' ranges still overlap at step 50" in text  # 2 → 4 layers
    assert "| 4 | 61.00 (58.00–64.00) | +0.0% |" in text
    assert "| 12 | 3.20 | 4.20 | 12 |" in text and "| both (ensemble) | 9.87 | 54.32 |" in text
    # the GAN: its last evaluation, then Parzen against training minutes (two attempts: 600 + 400 s)
    assert "| 140.0 ± 2.0 | 0.200 | 80.0 | 1.00 | 225 ± 2 |" in text
    assert "| 0.5 | 4.2 | 100.0 ± 2.0 | 87.5 | 1.00 |" in text and "| 2.0 | 16.7 | 140.0 ± 2.0 |" in text
    assert "reaches 225 after about 3.2 hours of this machine's training" in text
    figures = s.out.parent / "reproduction"
    assert Image.open(figures / "s2s-dev.png").size[0] > 800 and (figures / "gan-parzen.png").is_file()
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


def test_a_budget_too_small_to_translate_leaves_the_bleu_claims_unresolved(tmp_path):
    s = study(tmp_path, scale="quick")
    results = fake_results(tmp_path, s)
    for found in results["evaluations"].values():
        found["bleu"] = 0.05
    reproduction.write(s, results)
    text = s.out.read_text()
    assert "At 2,000 steps per run no model has learned to translate yet" in text
    assert "This is the reduced study (`--scale quick`" in text
    bleu_claims = [line for line in text.splitlines() if line.startswith("| ") and "BLEU" in line.split("|")[1]]
    assert len(bleu_claims) == 3 and all(line.endswith("**not resolved at this budget** |") for line in bleu_claims)


def test_the_paper_scale_document_has_every_depth_and_the_four_layer_model_at_its_centre(tmp_path):
    s = study(tmp_path, seeds=(1, 2, 3, 4, 5), scale="paper")
    reproduction.write(s, fake_results(tmp_path, s))
    text = s.out.read_text()
    assert "--scale paper" in text and "| plain | " in text and "test BLEU, reversed-4l-seed2 |" in text
    assert all(f"\n| {layers} | " in text for layers in (1, 2, 3, 4)) and "4 layers rather than 3" in text
    assert "Beam 12. Paper (BLEU)" in text
