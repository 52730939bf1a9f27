"""Faults injected into real training runs: non-finite losses and gradients, a checkpoint write that
fails (a full disk) or is killed half-way, a checkpoint of another model."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from conftest import losses, run_cli, tiny_cli, train_log
from local_cluster import poll

import dist_train.checkpoint.files
from data_shards.errors import UserError
from dist_train.checkpoint import CheckpointFolder, read_checkpoint
from dist_train.distributed import Topology, replica_devices
from dist_train.models.seq2seq import Seq2Seq
from dist_train.peers import peer_failure
from launcher.main import main
from launcher.paths import PROJECT_ROOT


def poison(monkeypatch, steps: set[int]) -> None:
    """The model's training forward returns NaN losses on these steps (1-based)."""
    forward, calls = Seq2Seq.forward, [0]

    def poisoned(self, *args, **kwargs):
        losses = forward(self, *args, **kwargs)
        if not self.training:
            return losses
        calls[0] += 1
        return losses * float("nan") if calls[0] in steps else losses

    monkeypatch.setattr(Seq2Seq, "forward", poisoned)


def s2s(data, run_dir, *overrides, resume="never") -> int:
    args = ["s2s", "--preset", "tiny", "--data", str(data), "--run-dir", str(run_dir), "--resume", resume]
    return main([*args, "log_every=1", "threads=1", "metrics.port=0", *overrides])


def finite_weights(checkpoint) -> bool:
    return all(
        torch.isfinite(w).all() for w in read_checkpoint(checkpoint).weights["model"].values() if w.is_floating_point()
    )


def test_a_non_finite_step_is_skipped_and_counted(newstest_small_shards, tmp_path, monkeypatch, capsys):
    poison(monkeypatch, {3, 5})
    assert s2s(newstest_small_shards, tmp_path / "run", "max_steps=8") == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["skipped_steps"] == 2 and summary["steps"] == 8
    logged = losses(tmp_path / "run")
    assert [s for s, loss in logged.items() if loss != loss] == [3, 5]  # NaN only where poisoned
    assert all(logged[s] == logged[s] for s in (4, 6, 7, 8))  # the weights stayed finite
    assert finite_weights(CheckpointFolder(tmp_path / "run" / "checkpoints").latest())


def test_a_streak_of_them_stops_the_run_and_keeps_the_last_good_checkpoint(
    newstest_small_shards, tmp_path, monkeypatch, capsys
):
    poison(monkeypatch, {3, 4, 5, 6})
    code = s2s(newstest_small_shards, tmp_path / "run", "max_steps=20", "checkpoint_every_steps=2",
               "train.max_skipped_in_a_row=3")  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err
    assert "3 updates in a row were skipped at step 5" in error and "step-00000004.pt" in error
    newest = CheckpointFolder(tmp_path / "run" / "checkpoints").latest()
    assert newest.name == "step-00000004.pt" and finite_weights(newest)


@pytest.mark.parametrize("value", ["0", "-1"])
def test_the_streak_limit_must_be_positive(newstest_small_shards, tmp_path, value):
    with pytest.raises(SystemExit):
        s2s(newstest_small_shards, tmp_path / "run", f"train.max_skipped_in_a_row={value}")


def test_a_checkpoint_of_another_model_is_a_one_line_error(newstest_small_shards, tmp_path, capsys):
    assert s2s(newstest_small_shards, tmp_path / "run", "max_steps=2") == 0
    args = ["s2s", "--preset", "tiny", "--data", str(newstest_small_shards), "--run-dir", str(tmp_path / "run")]
    assert main([*args, "threads=1", "metrics.port=0", "max_steps=4", "model.hidden_dim=48"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: ") and "step-00000002.pt: does not fit this run" in error
    assert "size mismatch" in error and "Traceback" not in error


class FullDisk(io.FileIO):
    """A file on a disk that fills up after ``room`` bytes."""

    room = 2000

    def write(self, data) -> int:
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def test_a_full_disk_stops_the_run_keeps_the_previous_checkpoint_and_leaves_no_partial_file(
    newstest_small_shards, tmp_path, monkeypatch, capsys
):
    run_dir = tmp_path / "run"
    folder = run_dir / "checkpoints"

    def open_checkpoint(path, mode="r", *args, **kwargs):  # the disk fills up before the second checkpoint
        full = "w" in mode and CheckpointFolder(folder).latest() is not None
        return FullDisk(path, mode) if full else open(path, mode, *args, **kwargs)

    monkeypatch.setattr(dist_train.checkpoint.files, "open", open_checkpoint, raising=False)
    assert s2s(newstest_small_shards, run_dir, "max_steps=6", "checkpoint_every_steps=2") == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "step-00000004.pt: could not be written (No space left on device)" in error
    assert f"the newest complete checkpoint, {folder / 'step-00000002.pt'}, is intact" in error
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000002.pt"]  # no partial file left behind
    monkeypatch.undo()  # space freed: the run resumes from the checkpoint that was kept
    assert s2s(newstest_small_shards, run_dir, "max_steps=6", "checkpoint_every_steps=2", resume="auto") == 0
    assert "resumed from step-00000002.pt" in capsys.readouterr().err
    assert json.loads((run_dir / "train.jsonl").read_text().splitlines()[-1])["step"] == 6


STALLING_SAVE = """
import sys, time, torch
real_save, saves = torch.save, []
def stalling_save(state, f, *args, **kwargs):  # the second save writes a little, then hangs until killed
    saves.append(1)
    if len(saves) == 2:
        f.write(b"PK" + bytes(4096)); f.flush()
        open(sys.argv[1], "w").close()
        time.sleep(600)
    return real_save(state, f, *args, **kwargs)
torch.save = stalling_save
from launcher.main import main
sys.exit(main(sys.argv[2:]))
"""


SLOW_SAVE = """
import sys, time, torch
real_save, saves = torch.save, []
def slow_save(state, f, *args, **kwargs):  # the second save takes 4 seconds longer
    saves.append(1)
    if len(saves) == 2:
        time.sleep(4)
    return real_save(state, f, *args, **kwargs)
torch.save = slow_save
from launcher.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_training_goes_on_while_a_checkpoint_is_written_in_the_background(newstest_small_shards, tmp_path):
    run_dir = tmp_path / "run"
    args = ["s2s", "--preset", "tiny", "--data", str(newstest_small_shards), "--run-dir", str(run_dir)]
    args += ["threads=1", "log_every=1", "max_steps=40", "checkpoint_every_steps=4", "keep_checkpoints=20"]
    job = subprocess.run([sys.executable, "-c", SLOW_SAVE, *args], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert job.returncode == 0, job.stderr[-3000:]
    written = (run_dir / "checkpoints" / "step-00000008.pt").stat().st_mtime  # the slow one
    logged = {r["step"]: r["time"] for r in train_log(run_dir, "loss")}
    assert [step for step in range(9, 41) if logged[step] < written], "no step was taken while it was written"
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("step-*.pt"))[-1] == "step-00000040.pt"
    sync = tiny_cli(newstest_small_shards, tmp_path / "sync", "max_steps=4", "train.async_checkpoints=false")
    assert sync.returncode == 0 and (tmp_path / "sync" / "checkpoints" / "step-00000004.pt").is_file()


@pytest.mark.slow
def test_a_process_killed_mid_save_leaves_the_previous_checkpoint_which_the_rerun_resumes(
    newstest_small_shards, tmp_path, capsys
):
    run_dir, marker = tmp_path / "run", tmp_path / "saving"
    folder = run_dir / "checkpoints"
    args = ["s2s", "--preset", "tiny", "--data", str(newstest_small_shards), "--run-dir", str(run_dir)]
    args += ["threads=1", "metrics.port=0", "max_steps=6", "checkpoint_every_steps=2"]
    job = subprocess.Popen([sys.executable, "-c", STALLING_SAVE, str(marker), *args], cwd=PROJECT_ROOT)
    try:
        poll(marker.exists, timeout=120, what="the second checkpoint's write")
        os.kill(job.pid, signal.SIGKILL)
        assert job.wait(timeout=30) == -signal.SIGKILL
    finally:
        job.kill()
    (partial,) = folder.glob(".step-00000004.pt.tmp-*")
    assert partial.stat().st_size > 0 and CheckpointFolder(folder).latest().name == "step-00000002.pt"
    assert s2s(newstest_small_shards, run_dir, "max_steps=6", "checkpoint_every_steps=2", resume="auto") == 0
    err = capsys.readouterr().err
    assert "removed 1 incomplete checkpoint file(s)" in err and "resumed from step-00000002.pt" in err
    assert not partial.exists() and CheckpointFolder(folder).latest().name == "step-00000006.pt"


def test_more_devices_per_replica_than_visible_gpus_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    assert replica_devices(0, 8) == tuple(f"cuda:{i}" for i in range(8))
    with pytest.raises(UserError, match=r"local rank 1 needs GPUs 8..15, but 8 are visible: lower --nproc_per_node"):
        replica_devices(1, 8)


def test_an_unknown_preset_is_a_usage_error_listing_the_presets(tmp_path):
    result = run_cli("s2s", "--preset", "huge", "--data", tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "argument --preset: invalid choice: 'huge' (choose from" in result.stderr and "'paper'" in result.stderr


def test_only_a_collective_backends_error_is_taken_for_a_peers_failure():
    two = Topology(rank=1, world_size=2, node_name="n1", collective_timeout_s=10)
    gloo = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [10.0.0.2]:1")
    said = str(peer_failure(gloo, two, "the training step at step 4"))
    assert said.startswith("rank 1 (node n1): the training step at step 4 failed: a peer died or did not answer")
    assert "parallel.collective_timeout_s=10 s (Connection closed by peer [10.0.0.2]:1)" in said
    assert peer_failure(torch.distributed.DistBackendError("Timed out waiting 10000ms"), two, "x") is not None
    assert peer_failure(RuntimeError("timed out reading /data/shard-0001.tar"), two, "x") is None  # not a backend's
    assert peer_failure(OSError("gloo: connection reset"), two, "x") is None  # not a collective's error type
    assert peer_failure(gloo, Topology(), "x") is None  # no process group: no peer
