"""Peers that fail under torchrun, injected with real signals: a worker killed with SIGKILL
(torchrun --max-restarts restarts the group, which resumes from the newest complete checkpoint and
ends as the uninterrupted run would), a worker that stops answering (SIGSTOP: the job fails
within parallel.collective_timeout_s plus a margin, naming the rank and what it was doing), and a
head node that never answers a joining process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ONE_NODE, finished, free_port, losses, torchrun
from local_cluster import poll

from dist_train.checkpoint import CheckpointFolder, read_checkpoint
from dist_train.metrics.clock import PHASES

STEPS = 12
OVERRIDES = ("log_every=1", "checkpoint_every_steps=4", "threads=1", "metrics.port=0")


def worker(tag: str, rank: int) -> int:
    """The pid of the first-attempt training process of ``rank`` in the job tagged ``tag``."""
    for proc in Path("/proc").iterdir():
        try:
            environ = dict(item.split("=", 1) for item in (proc / "environ").read_text().split("\0") if "=" in item)
        except (OSError, ValueError):
            continue
        mine = environ.get("DIST_TRAIN_TEST_JOB") == tag and environ.get("RANK") == str(rank)
        if mine and environ.get("TORCHELASTIC_RESTART_COUNT") == "0":
            return int(proc.name)
    raise LookupError(f"no rank {rank} worker of {tag}")


def tagged(tag: str) -> dict:
    return {**os.environ, "DIST_TRAIN_TEST_JOB": tag, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def steps_logged(run_dir: Path) -> int:
    logged = run_dir / "train.jsonl"
    return len(logged.read_text().splitlines()) if logged.exists() else 0


def weights(run_dir: Path) -> dict:
    return read_checkpoint(CheckpointFolder(run_dir / "checkpoints").latest()).weights["model"]


@pytest.fixture(scope="module")
def uninterrupted(newstest_small_shards, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    finished(torchrun(*ONE_NODE, data=newstest_small_shards, run_dir=run_dir, steps=STEPS, overrides=OVERRIDES))
    return run_dir


def two_nodes_on_localhost() -> tuple[tuple[str, ...], ...]:
    """Two torchrun agents, one process each, meeting at a c10d rendezvous as on two Slurm nodes."""
    endpoint = ("--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{free_port()}", "--rdzv_id", "faults")
    return (("--nnodes", "2", "--nproc_per_node", "1", *endpoint),) * 2


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["one node", "two nodes"])
def test_a_killed_worker_restarts_the_group_which_resumes_and_ends_as_the_uninterrupted_run(
    newstest_small_shards, tmp_path, uninterrupted, layout
):
    agents = (ONE_NODE,) if layout == "one node" else two_nodes_on_localhost()
    tag, run_dir = tmp_path.name, tmp_path / "run"
    jobs = [
        torchrun(*args, "--max-restarts", "1", data=newstest_small_shards, run_dir=run_dir, steps=STEPS,
                 overrides=OVERRIDES, env=tagged(tag))
        for args in agents
    ]  # fmt: skip
    try:
        poll(lambda: steps_logged(run_dir) >= 6, timeout=180, what="6 steps (a checkpoint at 4)")
        os.kill(worker(tag, rank=1), signal.SIGKILL)
        summaries = [finished(job) for job in jobs]
    finally:
        for job in jobs:
            job.kill()
    assert [s["steps"] for s in summaries if s] == [STEPS]
    resumed, straight = losses(run_dir), losses(uninterrupted)  # a step logged twice: its rerun counts
    assert sorted(resumed) == list(range(1, STEPS + 1)) and resumed == straight
    mine, theirs = weights(run_dir), weights(uninterrupted)
    assert all(torch.equal(mine[name], theirs[name]) for name in theirs)


@pytest.mark.slow
def test_a_hung_peer_fails_the_job_within_the_collective_timeout_naming_rank_and_operation(
    newstest_small_shards, tmp_path
):
    tag, run_dir, timeout = tmp_path.name, tmp_path / "run", 10
    overrides = (*OVERRIDES, f"parallel.collective_timeout_s={timeout}")
    job = torchrun(*ONE_NODE, data=newstest_small_shards, run_dir=run_dir, steps=100_000, overrides=overrides,
                   env=tagged(tag))  # fmt: skip
    hung = None
    try:
        poll(lambda: steps_logged(run_dir) >= 3, timeout=180, what="3 steps")
        hung = worker(tag, rank=1)
        os.kill(hung, signal.SIGSTOP)
        stopped = time.monotonic()
        _, err = job.communicate(timeout=timeout + 120)
        failed_after = time.monotonic() - stopped
    finally:
        job.kill()
        if hung is not None:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(hung, sig)
    assert job.returncode != 0
    assert failed_after < timeout + 60, failed_after
    (line,) = [line for line in err.splitlines() if line.startswith("error: rank 0 ")]
    print(f"failed {failed_after:.1f} s after the peer stopped: {line}")
    assert f"failed: a peer died or did not answer within parallel.collective_timeout_s={timeout} s" in line
    # what rank 0 was doing when its peer stopped: a step, the agreement after it, or the step-4 checkpoint
    assert "at step " in line and any(f"): {what} at step " in line for what in PHASES.values())
    # the flight recorder (gloo records too): rank 0's dump, the collective it waits at, the rank that sent none
    assert (run_dir / "flight_recorder" / "rank_0.json").is_file() and "rank 0 waits at collective #" in line
    assert "no flight-recorder dump from rank(s) 1 within" in line


@pytest.mark.slow
def test_a_head_that_never_answers_is_a_one_line_error_after_the_timeout(newstest_small_shards, tmp_path):
    port, timeout = free_port(), 4
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}
    env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}  # as torchrun or srun set them; nobody listens
    command = [sys.executable, "-m", "launcher.main", "s2s", "--preset", "tiny", "--data", str(newstest_small_shards)]
    command += ["--run-dir", str(tmp_path / "run"), f"parallel.collective_timeout_s={timeout}", "metrics.port=0"]
    started = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and time.monotonic() - started < timeout + 30
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: rank 1 of 2 could not join the process group at 127.0.0.1:{port} within ")
    assert f"parallel.collective_timeout_s={timeout} s" in line and not (tmp_path / "run").exists()
