"""The benchmark commands print their measurements: bench s2s, bench pipeline, the plain-PyTorch loop."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from conftest import run_cli

from dist_train.flops import MatmulShape, matmul_peak, s2s_matmul_shapes, square_shapes
from dist_train.models.seq2seq import Seq2SeqConfig
from dist_train.trainers.s2s.bench import pipeline_devices, profiler_activities
from launcher.paths import PROJECT_ROOT


@pytest.mark.slow
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
    assert 0 < figures["mfu"] <= 1  # the peak sweeps the model's own shapes: above 1, the peak is wrong
    peak = figures["gemm_peak_per_device"]
    assert figures["gemm_peak_shape"] == peak["shape"] and peak["device"] == "cpu"
    assert figures["gemm_peak_flops"] == peak["flops_per_s"] == max(peak["sweep"].values())
    assert any(
        label.startswith("lstm_gates.layer0 32x64x128 fp32") for label in peak["sweep"]
    )  # tiny: 32 × (32+32) × 128
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


@pytest.mark.slow
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
    assert figures["physical_devices"] == ["cpu"]
    assert figures["overhead"] == pytest.approx(figures["pipelined_step_s"] / figures["plain_step_s"] - 1, abs=2e-3)


@pytest.mark.slow
def test_plain_pytorch_reference_loop_prints_its_throughput(newstest_small_shards):
    script = PROJECT_ROOT / "benchmarks" / "plain_s2s.py"
    args = ["--preset", "tiny", "--data", str(newstest_small_shards), "--steps", "2", "--warmup", "1"]
    result = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["words_per_s"] > 0 and figures["step_time_s"] > 0 and math.isfinite(figures["loss"])
    assert figures["device"] == "cpu"
    refused = subprocess.run(
        [sys.executable, script, *args, "model.attention=true"], capture_output=True, text=True, cwd=PROJECT_ROOT
    )
    assert refused.returncode == 2 and "without attention" in refused.stderr


def test_plain_pytorch_gan_loop_prints_its_throughput(mnist_5k_shards):
    script = PROJECT_ROOT / "benchmarks" / "plain_gan.py"
    args = ["--data", str(mnist_5k_shards), "--steps", "3", "--warmup", "1"]
    result = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["images_per_s"] > 0 and figures["steps"] == 3 and math.isfinite(figures["d_loss"])
    assert figures["images_per_s"] == pytest.approx(100 / figures["step_time_s"], rel=1e-3)  # the preset's batch


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["joint", "alternating"])
def test_bench_gan_prints_images_per_second(mnist_5k_shards, mode):
    result = run_cli("bench", "gan", "--preset", "tiny", "--data", mnist_5k_shards, "--steps", "4", "--warmup", "1",
                     "threads=1", f"update.mode={mode}")  # fmt: skip
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "gan" and figures["preset"] == "tiny" and figures["update_mode"] == mode
    assert figures["images_per_s"] == pytest.approx(figures["batch_size"] / figures["step_time_s"], rel=1e-3)
    assert figures["steps"] == 4 and figures["losses_finite"] is True and figures["cpus"] >= 1


@pytest.mark.slow
def test_bench_checkpoint_prints_the_stall_of_a_save_each_way(newstest_small_shards):
    result = run_cli("bench", "checkpoint", "--preset", "tiny", "--data", newstest_small_shards, "threads=1")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "checkpoint" and figures["saves"] == 3 and figures["checkpoint_bytes"] > 10**5
    assert 0 < figures["background_stall_s"] and 0 < figures["foreground_stall_s"] and figures["host_copy_s"] > 0
    assert figures["stall_ratio"] > 0 and figures["step_time_s"] > 0


TINY = Seq2SeqConfig(embed_dim=32, hidden_dim=32, num_layers=2, attention=True)


def test_the_peak_sweep_holds_the_models_own_matmuls_forward_and_backward():
    shapes = s2s_matmul_shapes(TINY, batch_size=16, tgt_vocab_size=500, precision="bf16", device_type="cpu")
    dims = {shape.name: (shape.m, shape.k, shape.n, shape.precision) for shape in shapes}
    rows = 16 * 30
    assert dims["lstm_gates.layer0"] == (16, 64, 128, "fp32")  # the CPU's recurrence runs in fp32 by default
    assert dims["lstm_gates.upper"] == (16, 64, 128, "fp32")  # k = 2 × hidden
    assert dims["lstm_recurrent"] == (16, 32, 128, "fp32")
    assert dims["lstm_input_projection.layer0"] == (rows, 32, 128, "fp32")  # the batch × time input projection
    assert dims["attention_projection"] == (rows, 32, 32, "bf16")
    assert dims["output_projection"] == (rows, 32, 500, "bf16")
    assert dims["output_projection.grad_weight"] == (32, rows, 500, "bf16")
    assert dims["output_projection.grad_input"] == (rows, 500, 32, "bf16")
    on_gpu = s2s_matmul_shapes(
        TINY, batch_size=16, tgt_vocab_size=500, precision="bf16", device_type="cuda", lstm_precision="bf16"
    )
    assert {shape.precision for shape in on_gpu} == {"bf16"}
    asked = s2s_matmul_shapes(TINY, batch_size=16, tgt_vocab_size=500, precision="bf16", device_type="cpu",
                              lstm_precision="bf16")  # fmt: skip
    assert {s.precision for s in asked if s.name.startswith("lstm")} == {"bf16"}  # timed as the recurrence runs
    assert [s.m for s in square_shapes("cuda", "bf16")] == [4096, 8192]


def test_a_shape_too_large_for_a_call_is_trimmed_by_halving_its_largest_side():
    paper_softmax = MatmulShape("output_projection", 3840, 1000, 80_000)
    trimmed = paper_softmax.trimmed(4e9)
    assert trimmed.flops <= 4e9 < trimmed.flops * 2.1 and trimmed.k == 1000 and trimmed.name.endswith("(trimmed)")
    assert MatmulShape("small", 8, 8, 8).trimmed(4e9) == MatmulShape("small", 8, 8, 8)


def test_the_peak_is_the_best_shape_of_the_sweep_and_names_it():
    shapes = [MatmulShape("thin", 4, 8, 8), MatmulShape("square", 256, 256, 256)]
    peak = matmul_peak(shapes, "cpu", seconds=0.2, windows=2)
    assert set(peak.sweep) == {"thin 4x8x8 fp32", "square 256x256x256 fp32"}
    assert peak.flops_per_s == max(peak.sweep.values()) and peak.shape.name == "square"


def test_the_pipeline_layout_wraps_eight_logical_devices_onto_the_visible_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert [str(d) for d in pipeline_devices(8, "auto")] == [f"cuda:{i % 3}" for i in range(8)]
    assert {str(d) for d in pipeline_devices(8, "cpu")} == {"cpu"}
    assert profiler_activities(("cuda:0", "cuda:1")) == [
        torch.profiler.ProfilerActivity.CPU,
        torch.profiler.ProfilerActivity.CUDA,
    ]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert {str(d) for d in pipeline_devices(8, "auto")} == {"cpu"}
    assert profiler_activities(("cpu",)) == [torch.profiler.ProfilerActivity.CPU]


def test_the_plain_loop_runs_where_ours_does(monkeypatch):
    sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
    from plain_s2s import plain_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert str(plain_device("auto")) == "cuda:0" and str(plain_device("cpu")) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert str(plain_device("auto")) == "cpu"
