"""The s2s trainer end to end: exact resume, torchrun with 2 processes and with 2 nodes, config errors."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from conftest import ONE_NODE, finished, free_port, losses, run_cli, tensorboard_scalars, tiny_cli, torchrun, train_log

from data_shards.errors import UserError
from data_shards.reader import ShardReader
from dist_train.checkpoint import FORMAT, CheckpointFolder, read_checkpoint
from dist_train.decoding import BeamConfig
from dist_train.distributed import Topology
from dist_train.trainers.s2s.batch import model_inputs
from dist_train.trainers.s2s.trainer import S2SConfig, S2STrainer
from dist_train.translation import Translator
from launcher.config import load_config, preset_file
from launcher.main import main


def s2s(data, run_dir, *overrides, resume="auto"):
    args = ["s2s", "--preset", "tiny", "--data", str(data), "--run-dir", str(run_dir), "--resume", resume]
    assert main([*args, "log_every=1", "threads=1", *overrides]) == 0


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])
def test_stop_and_resume_gives_the_same_loss_at_every_later_step(newstest_small_shards, tmp_path, workers):
    data = newstest_small_shards
    options = (f"data.num_workers={workers}", "data.batch_size=48", "model.dropout=0.3", "train.deterministic=true")
    s2s(data, tmp_path / "straight", "max_steps=16", *options)  # dropout: the global RNG must resume too
    s2s(data, tmp_path / "stopped", "max_steps=7", *options)
    assert CheckpointFolder(tmp_path / "stopped" / "checkpoints").latest().name == "step-00000007.pt"
    s2s(data, tmp_path / "stopped", "max_steps=16", *options)
    straight, resumed = losses(tmp_path / "straight"), losses(tmp_path / "stopped")
    assert sorted(resumed) == list(range(1, 17))
    assert [resumed[s] for s in range(8, 17)] == [straight[s] for s in range(8, 17)]
    assert straight[16] < straight[1]


def test_checkpoint_holds_the_full_state_and_loads_weights_only(newstest_small_shards, tmp_path):
    s2s(newstest_small_shards, tmp_path / "run", "max_steps=3")
    saved = read_checkpoint(CheckpointFolder(tmp_path / "run" / "checkpoints").latest())
    assert (
        saved.job == "s2s" and set(saved.weights) == {"model"} and set(saved.training.job) == {"schedule", "precision"}
    )
    assert set(saved.training.optimizers) == {"model"}  # whole: DDP, no ZeRO
    assert saved.step == 3 and saved.training.replicas[0].reader["position"] == 3
    assert len(saved.vocab.tokens["tgt"]) == 2000 and saved.model_config["hidden_dim"] == 32
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"model": saved.weights["model"], "hook": CheckpointFolder}, unsafe)  # a pickled class could run code
    with pytest.raises(UserError, match="refused, loading it could run code") as refused:
        read_checkpoint(unsafe)
    assert "weights_only" not in str(refused.value), "never relay torch's advice to load it unsafely"
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(UserError, match=r"notes\.txt: is not a checkpoint"):
        read_checkpoint(text)
    with pytest.raises(UserError, match=r"is a translation model \(s2s\); evaluate-gan needs a GAN"):
        read_checkpoint(CheckpointFolder(tmp_path / "run" / "checkpoints").latest(), "gan", "evaluate-gan")


def format_1(saved) -> dict:
    """A format-2 s2s checkpoint written as format 1 did: one flat dict."""
    training = saved.training
    return {
        **saved.weights,
        **training.job,
        **saved.inference,
        "optimizers": training.optimizers,
        "trainer": {
            **{k: v for k, v in vars(training.progress).items() if k != "seen"},
            "words_seen": training.progress.seen,
        },
        "readers": [r.reader for r in training.replicas],
        "rng": [r.rng for r in training.replicas],
        "replicas": [{"optimizers": r.optimizers} for r in training.replicas],
    }


def test_a_format_1_checkpoint_resumes_and_translates_as_format_2_and_a_newer_one_is_refused(
    newstest_small_shards, tmp_path
):
    s2s(newstest_small_shards, tmp_path / "run", "max_steps=3")
    newest = CheckpointFolder(tmp_path / "run" / "checkpoints").latest()
    torch.save(format_1(read_checkpoint(newest)), old := tmp_path / "format-1.pt")
    for name, start in (("from-2", newest), ("from-1", old)):
        s2s(newstest_small_shards, tmp_path / name, "max_steps=5", resume=str(start))
    assert losses(tmp_path / "from-1") == losses(tmp_path / "from-2") and sorted(losses(tmp_path / "from-1")) == [4, 5]
    source = ["The President arrived in Paris."]
    assert Translator([old]).translate(source, BeamConfig(beam=2)) == Translator([newest]).translate(
        source, BeamConfig(beam=2)
    )
    torch.save({**torch.load(newest, weights_only=True), "format": FORMAT + 1}, newer := tmp_path / "newer.pt")
    with pytest.raises(UserError, match=f"is checkpoint format {FORMAT + 1}; this version of the program reads "
                                        f"formats 1 to {FORMAT}"):  # fmt: skip
        read_checkpoint(newer)


@pytest.mark.slow
def test_torchrun_two_processes_data_parallel(newstest_small_shards, tmp_path):
    run = tmp_path / "run"
    summary = finished(torchrun(*ONE_NODE, data=newstest_small_shards, run_dir=run,
                                overrides=["metrics.tensorboard_all_ranks=true"]))  # fmt: skip
    assert summary["steps"] == 6 and summary["replicas_in_sync"] is True
    for rank in (0, 1):  # each process's own step times, step by step
        times = tensorboard_scalars(run / "tensorboard" / f"rank-{rank}")
        assert [step for step, _ in times["step/seconds"]] == list(range(1, 7)) and "step/compute_seconds" in times
    saved = read_checkpoint(tmp_path / "run" / "checkpoints" / "step-00000006.pt")
    assert [r.reader["replica_rank"] for r in saved.training.replicas] == [0, 1]


PAPER_LAYOUT = ("parallel.placement=paper", "parallel.devices_per_replica=8", "parallel.chunk_len=3")


@pytest.mark.slow
def test_paper_layout_trains_as_the_plain_model_and_its_checkpoint_translates(newstest_small_shards, tmp_path):
    """8 devices per replica (all ``cpu`` here): layers, softmax shards, wavefront; same losses."""
    s2s(newstest_small_shards, tmp_path / "plain", "max_steps=5", "model.num_layers=4")
    s2s(newstest_small_shards, tmp_path / "paper", "max_steps=5", "model.num_layers=4", *PAPER_LAYOUT)
    plain, paper = losses(tmp_path / "plain"), losses(tmp_path / "paper")
    assert sorted(paper) == [1, 2, 3, 4, 5]
    assert [paper[s] for s in plain] == pytest.approx([plain[s] for s in plain], rel=1e-4)
    result = run_cli("translate", "--checkpoint", tmp_path / "paper", "--beam", "2", stdin="The house .\nYes\n")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2


@pytest.mark.slow
def test_torchrun_two_replicas_of_the_paper_layout_with_ddp_and_with_deepspeed(newstest_small_shards, tmp_path):
    """Multi-device replicas under both data-parallel engines: the same losses, replicas in sync."""
    runs = {
        engine: torchrun(
            *ONE_NODE,
            data=newstest_small_shards,
            run_dir=tmp_path / engine,
            overrides=(*PAPER_LAYOUT, f"parallel.engine={engine}", "threads=1"),
        )
        for engine in ("ddp", "deepspeed")
    }
    for engine, process in runs.items():
        summary = finished(process)
        assert summary["steps"] == 6 and summary["replicas_in_sync"] is True, engine
    ddp, deepspeed = losses(tmp_path / "ddp"), losses(tmp_path / "deepspeed")
    assert sorted(deepspeed) == [2, 4, 6]
    assert [deepspeed[s] for s in (2, 4, 6)] == pytest.approx([ddp[s] for s in (2, 4, 6)], rel=1e-4)
    saved = read_checkpoint(tmp_path / "deepspeed" / "checkpoints" / "step-00000006.pt")
    under_ddp = read_checkpoint(tmp_path / "ddp" / "checkpoints" / "step-00000006.pt")
    assert set(saved.weights["model"]) == set(under_ddp.weights["model"])


@pytest.mark.slow
def test_torchrun_two_nodes_on_localhost(newstest_small_shards, tmp_path):
    rendezvous = [
        "--nnodes",
        "2",
        "--nproc_per_node",
        "1",
        "--rdzv_backend",
        "c10d",
        "--rdzv_endpoint",
        f"127.0.0.1:{free_port()}",
        "--rdzv_id",
        "two-nodes",
    ]
    nodes = [torchrun(*rendezvous, data=newstest_small_shards, run_dir=tmp_path / "run") for _ in range(2)]
    summaries = [finished(node) for node in nodes]
    summary = next(s for s in summaries if s)
    assert summary["steps"] == 6 and summary["replicas_in_sync"] is True
    assert len(read_checkpoint(tmp_path / "run" / "checkpoints" / "step-00000006.pt").training.replicas) == 2


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lrr=0.5", "unknown config key 'optim.lrr'; did you mean optim.lr"),
        ("max_steps=ten", "train.max_steps must be a whole number, not 'ten'"),
        ("precision=fp8", "train.precision must be one of fp32, bf16, fp16"),
    ],
)
def test_bad_overrides_are_usage_errors_naming_the_key(tmp_path, override, message):
    result = run_cli("s2s", "--preset", "tiny", "--data", tmp_path, override)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def raw_corpus(folder, data_root):
    """A raw WMT-like folder: one real training pair and newstest2014 (held out, must not be trained on)."""
    base = data_root / "wmt14-en-fr"
    for name in ("newstest2009.en", "newstest2009.fr"):
        (folder / "training").mkdir(parents=True, exist_ok=True)
        (folder / "training" / name).write_bytes((base / "train-newstest2008-2011-plain" / name).read_bytes())
    for name in ("newstest2014.en", "newstest2014.fr"):
        (folder / "test" / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / "test" / name).write_bytes((base / "newstest2014-plain-derived" / name).read_bytes())
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("how", ["--data-root", "WMT14_ROOT"])
def test_without_data_the_raw_corpora_are_found_and_sharded_once(tmp_path, data_root, how):
    raw = raw_corpus(tmp_path / "raw", data_root)
    env = {"DIST_TRAIN_SHARDS": str(tmp_path / "shards"), "DIST_TRAIN_DATA": str(tmp_path / "nothing")}
    flags = ["--data-root", str(raw)] if how == "--data-root" else []
    if how == "WMT14_ROOT":
        env["WMT14_ROOT"] = str(raw)
    args = ["s2s", "--preset", "tiny", "--run-dir", tmp_path / "run", *flags, "max_steps=2", "threads=1"]
    result = run_cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "shards" / "wmt14-train" / "manifest.json").read_text())
    assert [Path(i["path"]).name for i in manifest["inputs"]] == ["newstest2009.en", "newstest2009.fr"]
    assert "sharding" in result.stderr
    again = run_cli(*args, env=env)
    assert again.returncode == 0 and "sharding" not in again.stderr


@pytest.mark.slow
def test_no_data_anywhere_says_where_wmt14_comes_from(tmp_path):
    env = {
        "DIST_TRAIN_SHARDS": str(tmp_path / "shards"),
        "DIST_TRAIN_DATA": str(tmp_path / "nothing"),
        "WMT14_ROOT": "",
    }
    result = run_cli("s2s", "--preset", "tiny", "--run-dir", tmp_path / "run", env=env)
    assert result.returncode == 2 and "prepare-wmt14" in result.stderr and "--data-root" in result.stderr


@pytest.mark.slow
def test_bf16_autocast_trains_on_cpu_and_fp16_asks_for_a_gpu(newstest_small_shards, tmp_path):
    s2s(newstest_small_shards, tmp_path / "bf16", "max_steps=3", "precision=bf16")
    assert all(0 < loss < 10 for loss in losses(tmp_path / "bf16").values())
    result = tiny_cli(newstest_small_shards, tmp_path / "fp16", "precision=fp16", "max_steps=1")
    assert result.returncode == 2 and "precision=fp16 needs a GPU" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_resume_from_a_missing_checkpoint_is_one_clear_error(newstest_small_shards, tmp_path):
    result = tiny_cli(newstest_small_shards, tmp_path / "run", "--resume", tmp_path / "nope.pt")
    assert result.returncode == 2 and "nope.pt: no such checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_dev_perplexity_is_logged_and_reported(newstest_small_shards, tmp_path, data_root):
    from data_shards import ShardTextConfig, shard_text

    dev_dir = data_root / "wmt14-en-fr" / "dev-sgm"
    shard_text(
        ShardTextConfig(
            src=(dev_dir / "newstest2013-src.en.sgm",),
            tgt=(dev_dir / "newstest2013-ref.fr.sgm",),
            out=tmp_path / "dev",
            vocab_from=newstest_small_shards,
            progress=False,
        )
    )
    args = [
        "s2s",
        "--preset",
        "tiny",
        "--data",
        newstest_small_shards,
        "--dev",
        tmp_path / "dev",
        "--run-dir",
        tmp_path / "run",
        "max_steps=10",
        "eval.every_steps=5",
        "threads=1",
        "optim.name=adam",  # learns visibly within 10 steps, whatever the batches
        "optim.lr=0.01",
    ]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    records = train_log(tmp_path / "run")
    dev = [(r["step"], r["dev_ppl"]) for r in records if "dev_ppl" in r]
    assert [step for step, _ in dev] == [5, 10] and dev[1][1] < dev[0][1] < 2000
    assert json.loads(result.stdout.strip().splitlines()[-1])["dev_ppl"] == dev[1][1]
    shown = tensorboard_scalars(tmp_path / "run" / "tensorboard")  # the same figures, in TensorBoard
    assert [(step, round(ppl, 3)) for step, ppl in shown["dev/ppl"]] == dev
    trained = [r for r in records if "loss" in r]
    for tag, name in [("train/loss", "loss"), ("train/ppl", "ppl"), ("throughput/words_per_s", "words_per_s"),
                      ("optim/lr", "lr"), ("optim/grad_norm", "grad_norm")]:  # fmt: skip
        assert [s for s, _ in shown[tag]] == [r["step"] for r in trained], tag
        assert shown[tag][-1][1] == pytest.approx(trained[-1][name], rel=1e-6), tag


def test_accumulated_batches_make_the_update_one_batch_of_all_their_sentences_would(newstest_small_shards, tmp_path):
    cfg = load_config(S2SConfig, files=[preset_file("s2s", "tiny")], overrides=["train.grad_accum_steps=2"])
    trainers = []
    for name in ("accumulated", "summed"):
        torch.manual_seed(0)
        reader = ShardReader(newstest_small_shards, cfg.data)
        trainers.append(S2STrainer(cfg, Topology(devices=["cpu"]), reader, tmp_path / name))
    accumulated, summed = trainers
    assert accumulated.steps_per_epoch == -(-len(accumulated.reader) // 2)
    first, second = itertools.islice(iter(accumulated.reader), 2)
    result = accumulated.train_step([first, second])
    sizes = (summed.src_vocab_size, summed.tgt_vocab_size)
    losses = [summed.model(*model_inputs(b, sizes, torch.device("cpu")).as_args()).sum() for b in (first, second)]
    summed.engine.update(sum(losses) / (len(first) + len(second)))
    assert result.sentences == len(first) + len(second) and float(result.loss_sum) == pytest.approx(
        float(sum(losses).detach())
    )
    for mine, theirs in zip(accumulated.model.parameters(), summed.model.parameters()):
        torch.testing.assert_close(mine, theirs)


def test_dev_given_without_data_takes_the_place_of_the_default_dev_set(tmp_path):
    """`s2s --dev D` with --data unset: the default training shards, D as the dev set (newstest2013 is not
    even sharded)."""
    import argparse
    from dataclasses import replace

    from launcher.commands import s2s
    from launcher.commands.training import JobData, job_data

    asked = []

    def default(root, with_dev):
        asked.append(with_dev)
        return JobData(tmp_path / "wmt14-train", tmp_path / "wmt14-dev" if with_dev else None)

    job = replace(s2s.JOB, default_data=default)
    args = argparse.Namespace(data=None, dev=tmp_path / "giga-fren-val", data_root=None)
    assert job_data(args, job, Topology()) == JobData(tmp_path / "wmt14-train", tmp_path / "giga-fren-val")
    assert asked == [False], "the default dev set is not made when --dev is given"
    args.dev = None
    assert job_data(args, job, Topology()) == JobData(tmp_path / "wmt14-train", tmp_path / "wmt14-dev")
    args.data = tmp_path / "mine"
    assert job_data(args, job, Topology()) == JobData(tmp_path / "mine", None)
