"""Shared fixtures: the real data in ../shared/data, sharded once per test session."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data_shards import ShardImagesConfig, ShardTextConfig, shard_images, shard_text
from data_shards.bench import wmt_train_files
from data_shards.vocab import UNK_ID
from dist_train.precision import configure_numerics
from launcher.paths import PROJECT_ROOT, shared_data

DATA = shared_data()
WMT = DATA / "wmt14-en-fr"
NEWSTEST_2008_2011 = ("news-test2008", "newstest2009", "newstest2010", "newstest2011")


@pytest.fixture(autouse=True, scope="session")
def full_fp32():
    """Parity tests compare to 1e-5: no TF32 on a GPU (cuDNN uses it by default)."""
    configure_numerics(tf32=False, deterministic=False)


@pytest.fixture(scope="session")
def data_root() -> Path:
    assert (WMT).is_dir(), f"the real test data is missing: {DATA} (expected ../shared/data beside the project)"
    return DATA


@pytest.fixture(scope="session")
def wmt_train(tmp_path_factory, data_root) -> Path:
    """The whole WMT'14 training sample (40,068 pairs), word vocabulary, 5,000 pairs a shard."""
    src, tgt = wmt_train_files(data_root)
    out = tmp_path_factory.mktemp("wmt-train") / "shards"
    shard_text(ShardTextConfig(src=src, tgt=tgt, out=out, shard_size=5000, progress=False))
    return out


@pytest.fixture(scope="session")
def newstest_small_shards(tmp_path_factory, data_root) -> Path:
    """newstest2008–2011 (10,068 pairs) in 1,000-pair shards: the reader tests' corpus."""
    base = WMT / "train-newstest2008-2011-plain"
    out = tmp_path_factory.mktemp("newstest") / "shards"
    shard_text(
        ShardTextConfig(
            src=tuple(base / f"{n}.en" for n in NEWSTEST_2008_2011),
            tgt=tuple(base / f"{n}.fr" for n in NEWSTEST_2008_2011),
            out=out,
            shard_size=1000,
            progress=False,
        )
    )
    return out


@pytest.fixture(scope="session")
def mnist_test_shards(tmp_path_factory, data_root) -> Path:
    out = tmp_path_factory.mktemp("mnist") / "shards"
    shard_images(
        ShardImagesConfig(
            input=(data_root / "mnist" / "t10k-images-idx3-ubyte.gz",), out=out, shard_size=3000, progress=False
        )
    )
    return out


def run_cli(
    *args: str | Path, cwd: Path | None = None, env: dict | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess:
    """``python -m launcher.main ARGS`` in a real subprocess, as a user runs it (``env`` adds variables)."""
    return subprocess.run(
        [sys.executable, "-m", "launcher.main", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd or PROJECT_ROOT,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, newstest_small_shards) -> Path:
    """A `tiny` s2s model trained for 20 steps on newstest2008–2011."""
    from launcher.main import main

    run_dir = tmp_path_factory.mktemp("tiny-run")
    argv = ["s2s", "--preset", "tiny", "--data", str(newstest_small_shards), "--run-dir", str(run_dir), "threads=1"]
    assert main(argv) == 0
    return run_dir / "checkpoints" / "step-00000020.pt"


HEADS = {"plain": {}, "attention": {"attention": True}, "copy": {"attention": True, "copy": True}}  # model variants


def map_sources_for_copying(model) -> None:
    """A copying model's source → target id map, as the trainer sets it from two vocabularies: here
    source id i is target id i, except that every third word is missing from the target side."""
    if model.cfg.copy:
        ids = torch.arange(len(model.source_to_target))
        ids[4:][ids[4:] % 3 == 0] = UNK_ID
        model.source_to_target.copy_(ids)


@pytest.fixture(scope="session")
def mnist_5k_shards(tmp_path_factory, data_root) -> Path:
    """The 5,000-image MNIST file (500 per class) as image shards."""
    out = tmp_path_factory.mktemp("mnist-5k") / "shards"
    shard_images(ShardImagesConfig(input=(data_root / "mnist-5k" / "mnist_5k.csv.gz",), out=out, progress=False))
    return out


def train_log(run_dir: Path, *having: str) -> list[dict]:
    """The run's ``train.jsonl`` records, those with every key in ``having`` (all when none)."""
    records = map(json.loads, (Path(run_dir) / "train.jsonl").read_text().splitlines())
    return [r for r in records if all(key in r for key in having)]


def losses(run_dir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in train_log(run_dir, "loss")}


ONE_NODE = ("--standalone", "--nproc_per_node", "2")  # standalone: a free port, so runs side by side never collide


def torchrun(*args, job="s2s", data, run_dir, steps=6, overrides=(), env=None):
    """``torchrun ARGS -m launcher.main JOB --preset tiny ...`` on the CPU (several processes: on a 1-GPU
    machine they could not each have a GPU)."""
    command = [sys.executable, "-m", "torch.distributed.run", *args, "-m", "launcher.main", job, "--preset", "tiny"]
    command += ["--data", str(data), "--run-dir", str(run_dir), f"max_steps={steps}", "log_every=2"]
    command += ["parallel.device=cpu", *overrides]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finished(process) -> dict:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1]) if out.strip() else {}


def tiny_cli(data, run_dir, *extra):
    """``s2s --preset tiny`` as a user runs it, in a subprocess."""
    return run_cli("s2s", "--preset", "tiny", "--data", data, "--run-dir", run_dir, *extra)


def stopped_by_signal(process) -> dict:
    """The summary of a torchrun job that was sent SIGTERM/SIGUSR1: its workers checkpoint and print it;
    torchrun itself then exits 1 (it re-raises the signal it handled)."""
    out, err = process.communicate(timeout=300)
    assert out.strip(), err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stopped_by_signal"] in ("SIGTERM", "SIGUSR1"), summary
    return summary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """The (step, value) of every scalar tag TensorBoard shows for the event files in ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0}).Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
