"""Resuming on another number of replicas: every sample of the interrupted epoch once, as many samples
an update as before, and a refusal naming the counts that keep them when none does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import ONE_NODE, finished, run_cli, torchrun, train_log

from data_shards import ShardSet
from data_shards.errors import UserError
from dist_train.checkpoint import read_checkpoint

pytestmark = pytest.mark.slow  # several processes each


def seen_in_epoch(run_dir: Path, epoch: int) -> list[int]:
    """Every sample id the run's replicas trained on in ``epoch`` (``train.record_samples``), repeats kept."""
    lines = [
        line.split() for f in (run_dir / "samples-seen").glob("replica-*.txt") for line in f.read_text().splitlines()
    ]
    return sorted(int(i) for fields in lines if int(fields[0]) == epoch for i in fields[2:])


def one_process(job: str, data: Path, run_dir: Path, *overrides: str) -> dict:
    result = run_cli(job, "--preset", "tiny", "--data", data, "--run-dir", run_dir, "parallel.device=cpu", *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


JOBS = {  # the tiny presets with epochs short enough to cross: (data fixture, overrides)
    "s2s": ("newstest_small_shards", ("data.batch_size=128", "data.num_workers=1")),
    "gan": ("mnist_5k_shards", ("data.batch_size=100", "data.num_workers=1")),
}


@pytest.mark.parametrize("job", JOBS)
@pytest.mark.parametrize("direction", ["2 -> 1", "1 -> 2"])
def test_stopped_mid_epoch_and_resumed_on_another_replica_count_every_sample_is_seen_once(
    job, direction, request, tmp_path
):
    fixture, overrides = JOBS[job]
    data = request.getfixturevalue(fixture)
    per_update = {"s2s": "train.grad_accum_steps=2", "gan": "data.batch_size=200"}[job]  # on 1 replica, as 2 × 1
    common = (*overrides, "train.num_epochs=1.3", "train.record_samples=true", "log_every=1")
    run = tmp_path / "run"
    if direction == "2 -> 1":
        finished(torchrun(*ONE_NODE, job=job, data=data, run_dir=run, steps=7, overrides=common))
        summary = one_process(job, data, run, "max_steps=0", *common)
        replicas = "1 replica(s) from 2 at step 7"
    else:
        one_process(job, data, run, "max_steps=7", *common, per_update)
        summary = finished(torchrun(*ONE_NODE, job=job, data=data, run_dir=run, steps=0, overrides=common))
        replicas = "2 replica(s) from 1 at step 7"
    assert summary["resumed_on"] == replicas and summary["resumed_from"] == "step-00000007.pt"
    assert summary["steps"] > 7 and summary["replicas_in_sync"] is True
    assert seen_in_epoch(run, 0) == list(range(ShardSet(data).num_samples)), "each sample of the epoch exactly once"
    began = [r for r in train_log(run) if r.get("attempt_began")]
    assert began[-1]["resumed_on"] == replicas
    per_step = {r["step"] for r in train_log(run, "loss" if job == "s2s" else "d_loss")}
    assert per_step == set(range(1, summary["steps"] + 1)), "every step logged once"


def test_a_replica_count_that_cannot_keep_the_samples_per_update_is_refused_naming_those_that_can(
    newstest_small_shards, tmp_path
):
    common = ("data.batch_size=32", "data.num_workers=0", "train.grad_accum_steps=4")
    one_process("s2s", newstest_small_shards, tmp_path / "run", "max_steps=2", *common)  # 1 × 32 × 4 = 128 an update
    three = torchrun("--standalone", "--nproc_per_node", "3", data=newstest_small_shards, run_dir=tmp_path / "run",
                     steps=4, overrides=("data.batch_size=32", "data.num_workers=0"))  # fmt: skip
    out, err = three.communicate(timeout=300)
    assert three.returncode != 0
    assert "was written by 1 replicas taking 128 samples an update, which 3 replicas cannot keep" in err
    assert "resume on 1, 2, 4 replicas, or accept another number with train.keep_global_batch=false" in err
    assert err.count("error: ") == 3 and "launcher/main.py" not in err, "one line from each worker, no traceback"


@pytest.mark.parametrize("job", JOBS)
def test_with_micro_batches_a_run_stopped_on_2_replicas_and_resumed_on_1_follows_the_uninterrupted_run(
    job, request, tmp_path
):
    """data.micro_batches=2: each update takes the same two batches and draws the same dropout masks (and
    GAN noise) on 2 replicas × 1 batch as on 1 replica × 2 accumulated batches, so the losses after the
    resume are the uninterrupted run's, up to the order in which gradients are summed."""
    fixture, overrides = JOBS[job]
    data = request.getfixturevalue(fixture)
    common = (*overrides, "data.micro_batches=2", "train.record_samples=true", "log_every=1")
    common += {"s2s": ("data.batch_size=32", "model.dropout=0.3"), "gan": ("data.batch_size=50",)}[job]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    runs = [torchrun(*ONE_NODE, job=job, data=data, run_dir=run, steps=steps, overrides=common)
            for run, steps in ((straight, 6), (stopped, 3))]  # fmt: skip
    for run in runs:
        finished(run)
    summary = one_process(job, data, stopped, "max_steps=6", *common)
    assert summary["resumed_on"] == "1 replica(s) from 2 at step 3" and summary["steps"] == 6
    for key in ("loss",) if job == "s2s" else ("d_loss", "g_loss", "d_real"):
        after, before = logged(stopped, key), logged(straight, key)
        assert sorted(after) == list(range(1, 7)) and after == pytest.approx(before, rel=1e-5, abs=1e-6), key
    assert seen_per_step(stopped) == seen_per_step(straight)
    weights = [read_checkpoint(run / "checkpoints" / "step-00000006.pt").weights for run in (stopped, straight)]
    for module, tensors in weights[1].items():  # the losses of the tiny gan hardly move in 6 steps: its weights do
        for name, tensor in tensors.items():
            assert torch.allclose(weights[0][module][name], tensor, rtol=1e-4, atol=1e-6), (module, name)


def logged(run_dir: Path, key: str) -> dict[int, float]:
    return {r["step"]: r[key] for r in train_log(run_dir, key)}


def seen_per_step(run_dir: Path) -> dict[int, list[int]]:
    """The samples each step trained on, all replicas together (``train.record_samples``)."""
    steps: dict[int, list[int]] = {}
    for path in (run_dir / "samples-seen").glob("replica-*.txt"):
        for line in path.read_text().splitlines():
            _, step, *ids = map(int, line.split())
            steps.setdefault(step, []).extend(ids)
    return {step: sorted(ids) for step, ids in steps.items()}


def test_micro_batches_changed_on_resume_keep_the_samples_per_update_or_are_refused(tmp_path):
    """Saved with 4 micro-batches of 32 on 2 replicas (128 an update), resumed on 1: the same micro-batches
    go on; none keep 128 by train.grad_accum_steps; another count is refused, naming the one that keeps 128."""
    from dist_train.checkpoint.elastic import SavedLayout, keep_samples_per_update
    from dist_train.trainers.s2s.trainer import S2SConfig
    from launcher.config import load_config, preset_file

    def cfg(*overrides):
        return load_config(S2SConfig, files=[preset_file("s2s", "tiny")], overrides=["data.batch_size=32", *overrides])

    saved = SavedLayout(num_replicas=2, batch_size=32, max_tokens=0, grad_accum_steps=1, step=7, micro_batches=4)
    same = cfg("data.micro_batches=4")
    assert keep_samples_per_update(same, "s2s", saved, 1, tmp_path) is same
    assert keep_samples_per_update(cfg(), "s2s", saved, 1, tmp_path).train.grad_accum_steps == 4  # 1 × 4 × 32
    with pytest.raises(UserError, match="taking 128 samples an update; data.micro_batches=8 of 32 take 256: set "
                       "data.micro_batches=4, or accept the change with train.keep_global_batch=false"):  # fmt: skip
        keep_samples_per_update(cfg("data.micro_batches=8"), "s2s", saved, 1, tmp_path)
    accepted = cfg("data.micro_batches=8", "train.keep_global_batch=false")
    assert keep_samples_per_update(accepted, "s2s", saved, 1, tmp_path) is accepted
