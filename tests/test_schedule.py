"""Learning-rate schedules: the paper's halving, and the decay that ends a run, planned from its
step limit or from its time budget."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli, train_log

from dist_train.optim import LearningRateSchedule, OptimConfig


def test_halving_schedule_follows_the_paper():
    schedule = LearningRateSchedule(OptimConfig(), steps_per_epoch=100, total_steps=750)
    lrs = [schedule.lr_at(s) for s in (0, 499, 500, 549, 550, 600, 749)]
    assert lrs == [0.7, 0.7, 0.35, 0.35, 0.175, 0.0875, 0.7 / 2**5]


def test_the_decay_ends_a_step_limited_run_at_zero():
    cfg = OptimConfig(lr=1.0, schedule="constant", decay_fraction=0.25)
    schedule = LearningRateSchedule(cfg, steps_per_epoch=10, total_steps=100)
    assert [schedule.lr_at(s) for s in (0, 74, 75, 90, 100)] == [1.0, 1.0, 1.0, pytest.approx(0.4), 0.0]
    schedule.begin_decay(50, steps_affordable=1000)  # the step limit comes first: nothing changes
    assert (schedule.decay_from, schedule.horizon) == (75.0, 100)
    longer = LearningRateSchedule(cfg, steps_per_epoch=10, total_steps=200)  # resumed with a higher step limit
    longer.load_state_dict(schedule.state_dict())
    assert (longer.decay_from, longer.horizon) == (150.0, 200)


def test_a_time_budget_moves_the_decay_and_a_resume_keeps_it():
    cfg = OptimConfig(lr=0.5, schedule="constant", decay_fraction=0.3)
    schedule = LearningRateSchedule(cfg, steps_per_epoch=10, total_steps=10_000)
    schedule.begin_decay(400, steps_affordable=100.7)
    assert (schedule.decay_from, schedule.horizon) == (400.0, 500)
    assert [schedule.lr_at(s) for s in (399, 400, 450, 500)] == [0.5, 0.5, 0.25, 0.0]
    schedule.begin_decay(450, steps_affordable=10)  # planned once: the decay is under way
    assert schedule.horizon == 500
    resumed = LearningRateSchedule(cfg, steps_per_epoch=10, total_steps=10_000)
    resumed.load_state_dict(schedule.state_dict())
    assert [resumed.lr_at(s) for s in (399, 450, 500)] == [0.5, 0.25, 0.0]


@pytest.mark.slow
def test_a_time_budgeted_run_ends_at_the_end_of_its_decay(newstest_small_shards, tmp_path):
    run = tmp_path / "run"
    done = run_cli(
        "s2s", "--preset", "tiny", "--data", newstest_small_shards, "--run-dir", run,
        "max_steps=1000000", "num_epochs=100000", "max_minutes=0.25", "optim.schedule=constant", "optim.lr=0.5",
        "optim.decay_fraction=0.5", "log_every=1", "threads=1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = train_log(run, "lr")
    planned = records[-1]["planned_steps"]
    assert records[0]["planned_steps"] == 1_000_000 and planned < 1_000_000, "planned from the measured speed"
    lrs = [r["lr"] for r in records]
    decay = lrs.index(next(lr for lr in lrs if lr < 0.5))
    assert set(lrs[:decay]) == {0.5} and lrs[decay:] == sorted(lrs[decay:], reverse=True)
    assert decay > 0.3 * len(lrs), "the decay starts when half the budget is left, not at once"
    assert lrs[-1] < 0.2, "the run stops near the end of its decay"
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["steps"] == records[-1]["step"] and summary["steps"] >= 0.8 * planned
