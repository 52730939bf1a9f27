"""DeepSpeed as the second engine: its config files, ZeRO 0/1/2 against DDP on CPU with gloo and 2
processes, and exact resume, including each replica's ZeRO partition of the optimizer state."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ONE_NODE, finished, free_port, losses, tiny_cli, torchrun, train_log

from data_shards.errors import UserError
from dist_train import PROJECT_ROOT
from dist_train.checkpoint import read_checkpoint
from dist_train.parallel.deepspeed_engine import load_config, reshard

JOB = {"batch_size": 32, "num_replicas": 4, "max_grad_norm": 5.0}
ADAM = ("optim.name=adam", "optim.lr=0.003", "threads=1")  # Adam: an optimizer state to partition


def zero(stage: int) -> tuple[str, ...]:
    return ("parallel.engine=deepspeed", f"parallel.deepspeed_config=cluster/deepspeed/zero{stage}.json")


def records(run_dir) -> list[float]:
    """step, loss, gradient norm, step, ... for every logged interval."""
    return [value for r in train_log(run_dir, "loss") for value in (r["step"], r["loss"], r["grad_norm"])]


def test_the_shipped_configs_get_the_jobs_values_where_they_say_auto():
    for path in sorted((PROJECT_ROOT / "cluster" / "deepspeed").glob("*.json")):
        precision = "fp16" if "fp16" in path.name else "bf16" if "bf16" in path.name else "fp32"
        config = load_config(str(path), precision=precision, **JOB)
        assert config["train_micro_batch_size_per_gpu"] == 32 and config["train_batch_size"] == 128
        assert config["gradient_accumulation_steps"] == 1 and config["gradient_clipping"] == 5.0
        assert config["fp16"]["enabled"] is (precision == "fp16")
        assert config["bf16"]["enabled"] is (precision == "bf16")
    assert load_config("", precision="fp32", **JOB)["zero_optimization"] == {"stage": 0}
    assert load_config("cluster/deepspeed/zero2-bf16.json", precision="fp32", **JOB)["bf16"]["enabled"] is False
    accumulating = load_config("cluster/deepspeed/zero2.json", precision="fp32", grad_accum_steps=3, **JOB)
    assert accumulating["gradient_accumulation_steps"] == 3 and accumulating["train_batch_size"] == 32 * 4 * 3


@pytest.mark.parametrize(
    "content, precision, message",
    [
        ('{"train_micro_batch_size_per_gpu": 8}', "fp32", "train_micro_batch_size_per_gpu is 8 but this job needs 32"),
        ('{"gradient_accumulation_steps": 4}', "fp32", "gradient_accumulation_steps is 4"),
        ('{"bf16": {"enabled": true}}', "fp32", "enables bf16 but the job runs precision=fp32"),
        ("{}", "fp16", "needs DeepSpeed's loss scaler"),
        ("{not json", "fp32", "not valid JSON"),
    ],
)
def test_a_config_that_disagrees_with_the_job_is_refused_naming_the_file(tmp_path, content, precision, message):
    path = tmp_path / "mine.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message) as err:
        load_config(str(path), precision=precision, **JOB)
    assert "mine.json" in str(err.value)


def test_a_missing_config_lists_the_shipped_ones():
    with pytest.raises(UserError, match=r"no such DeepSpeed config.*zero1\.json, zero2-bf16\.json"):
        load_config("cluster/deepspeed/zero3.json", precision="fp32", **JOB)


@pytest.mark.slow
def test_zero_0_1_and_2_match_ddp_step_for_step(newstest_small_shards, tmp_path):
    """Losses and gradient norms (ZeRO 2 measures its own, over the partitioned gradients), two batches
    accumulated into each update."""
    engines = {"ddp": (), "zero0": zero(0), "zero1": zero(1), "zero2": zero(2)}
    engines = {name: (*engine, "train.grad_accum_steps=2") for name, engine in engines.items()}
    for pair in (("ddp", "zero0"), ("zero1", "zero2")):  # two runs of 2 processes at a time
        runs = {
            name: torchrun(
                *ONE_NODE, data=newstest_small_shards, run_dir=tmp_path / name, overrides=(*ADAM, *engines[name])
            )
            for name in pair
        }
        for name, process in runs.items():
            summary = finished(process)
            assert summary["steps"] == 6 and summary["replicas_in_sync"] is True, name
    ddp = records(tmp_path / "ddp")
    assert ddp[::3] == [2, 4, 6]
    for name in ("zero0", "zero1", "zero2"):
        assert records(tmp_path / name) == pytest.approx(ddp, rel=1e-5), name


@pytest.mark.slow
def test_zero2_stops_and_resumes_exactly_from_each_replicas_partition(newstest_small_shards, tmp_path):
    common = (*ADAM, *zero(2), "log_every=1")
    straight = torchrun(*ONE_NODE, data=newstest_small_shards, run_dir=tmp_path / "straight", overrides=common)
    stopped = torchrun(*ONE_NODE, data=newstest_small_shards, run_dir=tmp_path / "stopped", steps=3, overrides=common)
    finished(straight), finished(stopped)
    saved = read_checkpoint(tmp_path / "stopped" / "checkpoints" / "step-00000003.pt")
    assert saved.training.optimizers == {}  # nothing whole: each replica holds half of Adam's moments
    parts = [r.optimizers["model"]["optimizer"]["state"][0]["exp_avg"] for r in saved.training.replicas]
    weights = sum(p.numel() for p in saved.weights["model"].values() if p.is_floating_point())
    assert len(parts) == 2 and not parts[0].equal(parts[1])
    assert weights <= sum(p.numel() for p in parts) < weights + 1024  # padded to DeepSpeed's alignment
    under_ddp = finished_with_error(torchrun(*ONE_NODE, data=newstest_small_shards, run_dir=tmp_path / "stopped",
                                             overrides=ADAM))  # fmt: skip
    assert "saved sharded by ZeRO: resume with the same parallel.engine and parallel.deepspeed_config" in under_ddp
    finished(torchrun(*ONE_NODE, data=newstest_small_shards, run_dir=tmp_path / "stopped", overrides=common))
    assert losses(tmp_path / "stopped") == losses(tmp_path / "straight")
    assert sorted(losses(tmp_path / "stopped")) == list(range(1, 7))


def finished_with_error(process) -> str:
    _, err = process.communicate(timeout=300)
    assert process.returncode != 0
    return err


@pytest.mark.slow
def test_deepspeed_engine_stops_and_resumes_exactly(newstest_small_shards, tmp_path):
    common = ("log_every=1", "threads=1", "parallel.engine=deepspeed")
    for run, steps in (("straight", 8), ("stopped", 3), ("stopped", 8)):
        result = tiny_cli(newstest_small_shards, tmp_path / run, f"max_steps={steps}", *common)
        assert result.returncode == 0, result.stderr[-2000:]
    straight, resumed = losses(tmp_path / "straight"), losses(tmp_path / "stopped")
    assert sorted(resumed) == list(range(1, 9))
    assert [resumed[s] for s in range(4, 9)] == [straight[s] for s in range(4, 9)]


@pytest.mark.slow
def test_a_job_starts_under_deepspeeds_own_launcher(newstest_small_shards, tmp_path):
    """``deepspeed --num_gpus N --module launcher.main JOB ...`` starts N processes with ``--local_rank=R``
    put before the job's name; they form one data-parallel job."""
    launcher = Path(sys.executable).with_name("deepspeed")
    command = [str(launcher), "--num_gpus", "2", "--master_port", str(free_port()), "--module", "launcher.main",
               "s2s", "--preset", "tiny", "--data", str(newstest_small_shards), "--run-dir", str(tmp_path / "run"),
               "max_steps=4", "threads=1", "metrics.port=0", "parallel.engine=deepspeed",
               "parallel.device=cpu"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ours = [line for line in result.stdout.splitlines() if line.startswith("{")]  # the launcher logs to stdout too
    assert json.loads(ours[-1])["steps"] == 4 and json.loads(ours[-1])["replicas_in_sync"] is True
    assert "s2s: 2 replica(s)" in result.stderr


def test_reshard_joins_the_partitions_and_cuts_them_anew_padding_at_the_end():
    buffer = torch.arange(1.0, 11.0)  # 10 elements, padded to 12 for 2 replicas (6 each), to 12 for 3 (4 each)
    two = [torch.cat([buffer[:6]]), torch.cat([buffer[6:], torch.zeros(2)])]
    assert reshard(two, 12, 0, 1).tolist() == [*buffer.tolist(), 0.0, 0.0]
    three = [reshard(two, 4, r, 3) for r in range(3)]
    assert torch.cat(three)[:10].equal(buffer) and reshard(three, 6, 1, 2)[:4].equal(buffer[6:])


def finished_with_stderr(process) -> tuple[str, str]:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return out, err


def moments(saved, field: str) -> torch.Tensor:
    """A ZeRO checkpoint's Adam moment ``field``, every replica's partition joined in rank order."""
    return torch.cat([r.optimizers["model"]["optimizer"]["state"][0][field] for r in saved.training.replicas])


def zero2_run(data, run_dir, replicas: int, *overrides):
    """A ZeRO-2 run on ``replicas`` processes with 64 sentences an update."""
    batch = f"data.batch_size={64 // replicas}"
    if replicas == 1:
        result = tiny_cli(data, run_dir, "parallel.device=cpu", *overrides, batch)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stderr
    _, err = finished_with_stderr(
        torchrun(*ONE_NODE, data=data, run_dir=run_dir, steps=0, overrides=(*overrides, batch))
    )
    return err


@pytest.mark.slow
@pytest.mark.parametrize("before,after", [(2, 1), (1, 2)])
def test_zero2_resumes_on_another_replica_count_with_its_moments_resharded(
    newstest_small_shards, tmp_path, before, after
):
    common = (*ADAM, *zero(2), "log_every=1", "train.num_epochs=1.3")
    zero2_run(newstest_small_shards, tmp_path / "before", before, "max_steps=3", *common)
    stopped = tmp_path / "before" / "checkpoints" / "step-00000003.pt"
    err = zero2_run(newstest_small_shards, tmp_path / "after", after, "--resume", str(stopped), "max_steps=3", *common)
    assert f"resumed on {after} replica(s) from {before} at step 3" in err
    resharded = read_checkpoint(tmp_path / "after" / "checkpoints" / "step-00000003.pt")
    for field in ("exp_avg", "exp_avg_sq"):
        old, new = moments(read_checkpoint(stopped), field), moments(resharded, field)
        size = min(len(old), len(new))  # beyond it, only padding
        assert new[:size].equal(old[:size]) and not new[size:].any() and not old[size:].any()
    zero2_run(newstest_small_shards, tmp_path / "after", after, "max_steps=6", *common)
    assert all(math.isfinite(loss) for loss in losses(tmp_path / "after").values())
