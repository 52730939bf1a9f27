"""Faults injected into real training runs: non-finite losses and gradients."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import losses

from dist_train.checkpoint import Checkpointer, load_checkpoint
from dist_train.models.seq2seq import Seq2Seq
from launcher.main import main


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


def s2s(data, run_dir, *overrides) -> int:
    args = ["s2s", "--preset", "tiny", "--data", str(data), "--run-dir", str(run_dir), "--resume", "never"]
    return main([*args, "log_every=1", "threads=1", "metrics.port=0", *overrides])


def finite_weights(checkpoint) -> bool:
    return all(torch.isfinite(w).all() for w in load_checkpoint(checkpoint)["model"].values() if w.is_floating_point())


def test_a_non_finite_step_is_skipped_and_counted(newstest_small_shards, tmp_path, monkeypatch, capsys):
    poison(monkeypatch, {3, 5})
    assert s2s(newstest_small_shards, tmp_path / "run", "max_steps=8") == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["skipped_steps"] == 2 and summary["steps"] == 8
    logged = losses(tmp_path / "run")
    assert [s for s, loss in logged.items() if loss != loss] == [3, 5]  # NaN only where poisoned
    assert all(logged[s] == logged[s] for s in (4, 6, 7, 8))  # the weights stayed finite
    assert finite_weights(Checkpointer(tmp_path / "run" / "checkpoints").latest())


def test_a_streak_of_them_stops_the_run_and_keeps_the_last_good_checkpoint(
    newstest_small_shards, tmp_path, monkeypatch, capsys
):
    poison(monkeypatch, {3, 4, 5, 6})
    code = s2s(newstest_small_shards, tmp_path / "run", "max_steps=20", "checkpoint_every_steps=2",
               "train.max_skipped_in_a_row=3")  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err
    assert "3 updates in a row were skipped at step 5" in error and "step-00000004.pt" in error
    newest = Checkpointer(tmp_path / "run" / "checkpoints").latest()
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
