"""``preflight`` under real torchrun (2 processes on one node, and 2 nodes on localhost meeting at a
c10d rendezvous), its analysis (a slow figure, a high latency, a failure and a full disk are named),
the device-version collection against a faked CUDA, the checkpoint size it checks the disk against,
and ``submit preflight``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import free_port

from dist_train import preflight_probes
from dist_train.models.seq2seq import Seq2Seq, Seq2SeqConfig
from dist_train.preflight import ProcessReport
from dist_train.preflight_probes import CheckpointSize, device_info, disk_room, estimated_checkpoint
from dist_train.preflight_report import find_problems, summary, table
from launcher.paths import PROJECT_ROOT

FAST = ("--seconds", "0.3", "--reader-workers", "0", "--preset", "tiny")
SIZES = ("1MiB", "8MiB", "32MiB")


def preflight(*torchrun_args: str, job_args: tuple[str, ...]) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", *torchrun_args, "-m", "launcher.main", "preflight"]
    return subprocess.Popen(
        [*command, *FAST, *job_args], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def summary_of(process: subprocess.Popen) -> tuple[dict, str]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-3000:]
    return (json.loads(out.strip().splitlines()[-1]) if out.strip() else {}), err


def assert_measured(process: dict, *, reader: bool) -> None:
    """Every figure of one process is there and positive."""
    figures = process["figures"]
    for name in ("matmul_flops.fp32.device0", "matmul_flops.bf16.device0", "copy_bytes_per_s.memcpy"):
        assert figures[name] > 0, name
    assert all(figures[f"allreduce_busbw.{size}"] > 0 for size in SIZES)
    assert figures["allreduce_latency_us"] > 0
    assert (figures.get("reader_tokens_per_s", 0) > 0) is reader
    assert process["info"]["kind"] == "cpu" and process["info"]["collectives"] == "gloo"
    assert process["details"]["disk"]["free_bytes"] > 0 and process["details"]["disk"]["checkpoint_bytes"] > 0


@pytest.mark.slow
def test_two_processes_under_torchrun_each_report_every_figure(newstest_small_shards, tmp_path):
    job = preflight("--standalone", "--nproc_per_node", "2", job_args=("--data", str(newstest_small_shards),
                    "--run-dir", str(tmp_path / "run")))  # fmt: skip
    result, err = summary_of(job)
    assert result["job"] == "preflight" and result["world_size"] == 2 and result["num_nodes"] == 1
    assert [p["rank"] for p in result["processes"]] == [0, 1]
    for process in result["processes"]:
        assert_measured(process, reader=True)
        assert process["failures"] == {}
    assert not [p for p in result["problems"] if "failed" in p["what"]]
    assert "all-reduce busbw 32MiB" in err and "problem(s)" in err  # the table, on stderr


@pytest.mark.slow
def test_two_nodes_on_localhost_name_the_node_whose_data_is_missing(newstest_small_shards, tmp_path):
    rendezvous = ("--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d",
                  "--rdzv_endpoint", f"127.0.0.1:{free_port()}", "--rdzv_id", "preflight")  # fmt: skip
    run_dir = ("--run-dir", str(tmp_path / "run"))
    nodes = [
        preflight(*rendezvous, "--node_rank", "0", job_args=("--data", str(newstest_small_shards), *run_dir)),
        preflight(*rendezvous, "--node_rank", "1", job_args=("--data", str(tmp_path / "not-mounted"), *run_dir)),
    ]
    try:
        (result, _), (silent, _) = [summary_of(node) for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    assert silent == {}  # only rank 0 prints the JSON line
    assert result["world_size"] == 2 and result["num_nodes"] == 2
    by_node = {p["node_rank"]: p for p in result["processes"]}
    assert_measured(by_node[0], reader=True)
    assert_measured(by_node[1], reader=False)  # its reader failed; every other figure was measured
    assert set(by_node[1]["failures"]) == {"reader"} and "not-mounted" in by_node[1]["failures"]["reader"]
    (missing,) = [p for p in result["problems"] if "failed" in p["what"]]
    assert (missing["node_rank"], missing["rank"]) == (1, by_node[1]["rank"])
    assert missing["what"].startswith("reader failed") and result["ok"] is False


def report(rank: int, node_rank: int, figures: dict[str, float]) -> ProcessReport:
    return ProcessReport(rank=rank, local_rank=0, node_rank=node_rank, node_name=f"n{node_rank}", devices=("cpu",),
                         figures=dict(figures))  # fmt: skip


def test_a_figure_below_half_its_peers_median_a_high_latency_a_failure_and_a_full_disk_are_named():
    healthy = {"matmul_flops.bf16.device0": 100e9, "allreduce_busbw.8MiB": 10e9, "allreduce_latency_us": 50.0}
    reports = [report(r, r // 2, healthy) for r in range(6)]
    reports[3].figures["matmul_flops.bf16.device0"] = 40e9  # injected: one slow GPU (below 50, half the median of 100)
    reports[4].figures["allreduce_latency_us"] = 120.0  # injected: a slow link (above 2 × 50)
    reports[5].figures["allreduce_busbw.8MiB"] = 6e9  # slower, but not below half: not named
    reports[1].failures["copy"] = "RuntimeError: CUDA error: an illegal memory access"
    reports[2].details["disk"] = disk_room(Path("/"), CheckpointSize(2**62, "estimated: a huge one"), keep=3)
    problems = find_problems(reports)
    named = {(p.rank, p.node_rank, p.what.split()[0]) for p in problems}
    assert named == {
        (3, 1, "matmul_flops.bf16.device0"),
        (4, 2, "allreduce_latency_us"),
        (1, 0, "copy"),
        (2, 1, "disk:"),
    }
    (slow,) = [p for p in problems if p.rank == 3]
    assert slow.node == "n1" and slow.what.endswith("40.0 GFLOP/s is below half its peers' median (100.0 GFLOP/s)")
    assert summary(reports, problems)["ok"] is False and summary(reports[:1], [])["ok"] is True
    assert "rank 3" in table(reports, problems)


def test_one_process_alone_is_compared_with_nobody():
    assert find_problems([report(0, 0, {"matmul_flops.fp32.device0": 1.0})]) == []


def test_device_versions_are_collected_from_a_faked_cuda_without_crashing(monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("no driver here")

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_properties", broken)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cuda.nccl, "version", lambda: (2, 21, 5))
    monkeypatch.setattr(preflight_probes, "nvidia_driver", broken)
    info = device_info(("cuda:0", "cuda:1"))
    assert info["kind"] == "cuda" and [g["name"] for g in info["gpus"]] == ["NVIDIA H200"] * 2
    assert info["gpus"][0]["capability"] == "9.0" and info["gpus"][0]["memory_gib"] is None  # properties failed
    assert info["nccl"] == "2.21.5" and info["bf16"] is True and info["driver"] is None
    monkeypatch.setattr(torch.cuda.nccl, "version", broken)
    assert device_info(("cuda:0",))["nccl"] is None
    on_cpu = device_info(("cpu",))
    assert on_cpu["kind"] == "cpu" and on_cpu["collectives"] == "gloo" and isinstance(on_cpu["bf16_matrix_units"], bool)


def test_the_checkpoint_estimate_counts_the_models_weights_and_adams_moments(tmp_path):
    cfg = Seq2SeqConfig(embed_dim=32, hidden_dim=32, num_layers=2)
    parameters = sum(p.numel() for p in Seq2Seq(cfg, src_vocab_size=500, tgt_vocab_size=400).parameters())
    sgd = estimated_checkpoint(cfg, src_vocab_size=500, tgt_vocab_size=400, optimizer="sgd", label="tiny")
    adam = estimated_checkpoint(cfg, src_vocab_size=500, tgt_vocab_size=400, optimizer="adam", label="tiny")
    assert sgd.bytes == 4 * parameters and adam.bytes == 3 * sgd.bytes and f"{parameters:,}" in sgd.source
    room = disk_room(tmp_path / "not-yet" / "run", sgd, keep=3)  # a run directory not created yet
    assert room["enough"] and room["checkpoints_needed"] == 4 and room["checkpoints_that_fit"] >= 4


def test_an_existing_checkpoint_in_the_run_directory_is_measured_rather_than_estimated(tmp_path):
    from launcher.main import build_parser

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "step-00000007.pt").write_bytes(b"x" * 12345)
    args = build_parser().parse_args(["preflight", "--run-dir", str(tmp_path), "--preset", "tiny"])
    from launcher.commands.preflight import checkpoint_size

    found = checkpoint_size(args)
    assert found.bytes == 12345 and found.source.startswith("existing checkpoint")
    estimated = checkpoint_size(build_parser().parse_args(["preflight", "--run-dir", str(tmp_path / "new")]))
    assert estimated.source.startswith("estimated: preset paper with the paper's 160k/80k vocabularies")


def test_submit_preflight_renders_its_batch_script_without_resume_or_requeue():
    render = [sys.executable, "-m", "launcher.main", "submit", "preflight", "--nodes", "16", "--gpus-per-node", "8",
              "--devices-per-replica", "8", "--dry-run", "--", "--data", "/shards"]  # fmt: skip
    result = subprocess.run(render, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    script, command = result.stdout.rsplit("# sbatch", 1)
    assert "#SBATCH --nodes=16" in script and "#SBATCH --gpus-per-node=8" in script
    assert "DEVICES_PER_REPLICA=${DEVICES_PER_REPLICA:-8}" in script and "JOB=preflight" in script
    assert "--requeue" not in script and command.split()[-2:] == ["--data", "/shards"]
    step = (PROJECT_ROOT / "cluster" / "slurm" / "torchrun-step.sh").read_text()
    assert 'job_flags=(--run-dir "$run_dir" --devices-per-replica "$DEVICES_PER_REPLICA")' in step


@pytest.mark.parametrize("bad", [["--seconds", "0"], ["--preset", "no-such-preset"]])
def test_bad_flags_are_usage_errors(bad):
    result = subprocess.run([sys.executable, "-m", "launcher.main", "preflight", *bad], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2 and "error:" in result.stderr
