"""SIGTERM / SIGUSR1 → checkpoint at the next step → exit 0 → ``--resume auto`` continues, and the
run is the uninterrupted run: no step repeated, none skipped, the same losses."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from conftest import losses, train_log
from local_cluster import poll

from launcher.main import main
from launcher.paths import PROJECT_ROOT


def s2s(data, run_dir, *extra) -> subprocess.Popen:
    command = [sys.executable, "-m", "launcher.main", "s2s", "--preset", "tiny", "--data", str(data)]
    command += ["--run-dir", str(run_dir), "max_steps=60", "log_every=1", "threads=1", "metrics.port=0", *extra]
    return subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def summary(process) -> dict:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT])  # SIGINT: a first Ctrl-C
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


def test_a_rerun_after_a_crash_logs_each_step_once_and_says_where_each_attempt_began(newstest_small_shards, tmp_path):
    run = tmp_path / "run"
    args = ["s2s", "--preset", "tiny", "--data", str(newstest_small_shards), "--run-dir", str(run), "threads=1"]
    args += ["metrics.port=0", "log_every=1", "checkpoint_every_steps=3"]
    assert main([*args, "max_steps=3"]) == 0
    log = run / "train.jsonl"
    with log.open("a") as f:  # an attempt that logged steps 4 and 5, then died before its next checkpoint
        f.writelines(json.dumps({"step": step, "loss": 99.0}) + "\n" for step in (4, 5))
        f.write('{"step": 6, "lo')  # cut short mid-line
    assert main([*args, "max_steps=6"]) == 0
    records = train_log(run)
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5, 6]  # never back, no zig-zag
    assert 99.0 not in [r["loss"] for r in records if "loss" in r], "the dead attempt's steps are gone"
    began = [(r["step"], r.get("resumed_from")) for r in records if r.get("attempt_began")]
    assert began == [(0, None), (3, "step-00000003.pt")]
