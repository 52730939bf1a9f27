"""SIGTERM / SIGUSR1 → checkpoint at the next step → exit 0 → ``--resume auto`` continues, and the
run is the uninterrupted run: no step repeated, none skipped, the same losses."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from conftest import losses
from local_cluster import poll

from launcher.paths import PROJECT_ROOT


def s2s(data, run_dir, *extra) -> subprocess.Popen:
    command = [sys.executable, "-m", "launcher.main", "s2s", "--preset", "tiny", "--data", str(data)]
    command += ["--run-dir", str(run_dir), "max_steps=60", "log_every=1", "threads=1", "metrics.port=0", *extra]
    return subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def summary(process) -> dict:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_a_stop_signal_checkpoints_and_the_resumed_run_is_the_uninterrupted_one(newstest_small_shards, tmp_path, sig):
    straight = s2s(newstest_small_shards, tmp_path / "straight")
    stopped = s2s(newstest_small_shards, tmp_path / "stopped")
    logged = tmp_path / "stopped" / "train.jsonl"
    poll(lambda: logged.exists() and len(logged.read_text().splitlines()) >= 5, timeout=120, what="5 steps")
    stopped.send_signal(sig)
    first = summary(stopped)
    assert first["stopped_by_signal"] == sig.name and 5 <= first["steps"] < 60
    assert first["checkpoint"].endswith(f"step-{first['steps']:08d}.pt")
    second = summary(s2s(newstest_small_shards, tmp_path / "stopped"))
    assert second["steps"] == 60 and "stopped_by_signal" not in second
    summary(straight)
    resumed, uninterrupted = losses(tmp_path / "stopped"), losses(tmp_path / "straight")
    assert sorted(resumed) == list(range(1, 61))  # each step logged once: none repeated or skipped
    assert resumed == uninterrupted
