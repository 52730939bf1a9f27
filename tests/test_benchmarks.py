"""The benchmark commands print their measurements: bench s2s, bench pipeline, the plain-PyTorch loop."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from conftest import run_cli

from launcher.paths import PROJECT_ROOT


def test_bench_s2s_prints_throughput_flops_and_mfu(newstest_small_shards):
    result = run_cli(
        "bench",
        "s2s",
        "--preset",
        "tiny",
        "--data",
        newstest_small_shards,
        "--steps",
        "3",
        "--warmup",
        "1",
        "--profile",
        "threads=1",
        "model.attention=true",
        "--placement",
        "paper",
        "--chunk-len",
        "3",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    figures = json.loads(lines[0])
    for key in ("words_per_s", "achieved_flops", "gemm_peak_flops", "mfu", "step_time_s"):
        assert figures[key] > 0, key
    assert figures["mfu"] == pytest.approx(figures["achieved_flops"] / figures["gemm_peak_flops"], rel=1e-3)
    assert figures["threads"] == 1 and figures["preset"] == "tiny"
    assert figures["placement"] == "paper" and figures["devices_per_replica"] == 8 and figures["chunk_len"] == 3
    pipeline = figures["pipeline"]  # tiny: 2 layers
    assert pipeline["bubble_fraction"] == pytest.approx(1 / (pipeline["chunks_per_step"] + 1), rel=0.2)
    assert set(pipeline["forward_busy_s_per_step"]) == {"layer_0", "layer_1"}
    assert all(seconds > 0 for seconds in pipeline["forward_busy_s_per_step"].values())
    breakdown = figures["time_breakdown_ms_per_step"]
    for category in ("lstm", "softmax_and_loss", "matmuls_outside_lstm", "embedding", "optimizer"):
        assert breakdown[category] > 0, category
    assert sum(breakdown.values()) < 10 * 1000 * figures["step_time_s"]


def test_bench_pipeline_compares_the_layout_with_the_plain_model(newstest_small_shards):
    args = [
        "bench",
        "pipeline",
        "--preset",
        "tiny",
        "--data",
        newstest_small_shards,
        "--steps",
        "2",
        "--chunk-len",
        "3",
    ]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["plain_step_s"] > 0 and figures["pipelined_step_s"] > 0 and figures["chunk_len"] == 3
    assert figures["overhead"] == pytest.approx(figures["pipelined_step_s"] / figures["plain_step_s"] - 1, abs=2e-3)


def test_plain_pytorch_reference_loop_prints_its_throughput(newstest_small_shards):
    script = PROJECT_ROOT / "benchmarks" / "plain_s2s.py"
    args = ["--preset", "tiny", "--data", str(newstest_small_shards), "--steps", "2", "--warmup", "1"]
    result = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["words_per_s"] > 0 and figures["step_time_s"] > 0 and math.isfinite(figures["loss"])
    refused = subprocess.run(
        [sys.executable, script, *args, "model.attention=true"], capture_output=True, text=True, cwd=PROJECT_ROOT
    )
    assert refused.returncode == 2 and "without attention" in refused.stderr


@pytest.mark.parametrize("mode", ["joint", "alternating"])
def test_bench_gan_prints_images_per_second(mnist_5k_shards, mode):
    result = run_cli("bench", "gan", "--preset", "tiny", "--data", mnist_5k_shards, "--steps", "4", "--warmup", "1",
                     "threads=1", f"update.mode={mode}")  # fmt: skip
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "gan" and figures["preset"] == "tiny" and figures["update_mode"] == mode
    assert figures["images_per_s"] == pytest.approx(figures["batch_size"] / figures["step_time_s"], rel=1e-3)
    assert figures["steps"] == 4 and figures["losses_finite"] is True and figures["cpus"] >= 1
