"""``preflight``: measure every process of a job before a long run, and name the ones that lag.

Each process measures itself (``dist_train.preflight_probes``): its devices and their software, matmul
peaks per precision, copies between its replica's devices, the reader's speed on the job's shards and
the disk's room for checkpoints; then all of them measure the all-reduce together (bus bandwidth at a
few message sizes, as nccl-tests defines it, and small-message latency). A measurement that fails is
recorded as a failure of that process and the others go on. Rank 0 gathers every ``ProcessReport``;
``dist_train.preflight_report`` compares them.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from dist_train.distributed import Topology, all_gather_objects
from dist_train.preflight_probes import (
    CheckpointSize,
    copy_bandwidths,
    device_info,
    disk_room,
    matmul_peaks,
    reader_speed,
)
from dist_train.timing import time_calls

MiB = 1024**2
ALLREDUCE_SIZES = {"cpu": (1 * MiB, 8 * MiB, 32 * MiB), "cuda": (8 * MiB, 64 * MiB, 256 * MiB)}  # bytes


@dataclass(frozen=True, kw_only=True)
class PreflightConfig:
    """What to measure, and for how long (``seconds`` per measurement)."""

    data: str | Path | None = None  # shards to read (a folder or a URL) (None: the reader is not measured)
    run_dir: Path = Path("runs")  # where the job will write its checkpoints
    precisions: tuple[str, ...] = ("fp32", "bf16")
    seconds: float = 2.0
    reader_workers: int = 2
    keep_checkpoints: int = 3

    def __post_init__(self) -> None:
        if self.seconds <= 0 or self.reader_workers < 0 or self.keep_checkpoints < 1:
            raise ValueError("--seconds must be positive, --reader-workers >= 0, --keep-checkpoints >= 1")


@dataclass(kw_only=True)
class ProcessReport:
    """One process's measurements. ``figures`` are the numbers compared across processes (name →
    value; higher is better except for latencies), ``details`` what explains them, ``failures`` the
    measurements that failed (name → the error)."""

    rank: int
    local_rank: int
    node_rank: int
    node_name: str
    devices: tuple[str, ...]
    info: dict = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def measure(self, name: str, probe: Callable[[], object]) -> object:
        """``probe()``'s result, or None with the error recorded under ``name``."""
        try:
            return probe()
        except Exception as err:  # noqa: BLE001 - one measurement failing must not stop the others
            where = traceback.extract_tb(err.__traceback__)[-1]
            self.failures[name] = f"{type(err).__name__}: {' '.join(str(err).split())[:300]} ({where.name})"
            return None


def run_preflight(
    cfg: PreflightConfig, topology: Topology, checkpoint: Callable[[], CheckpointSize]
) -> list[ProcessReport] | None:
    """Measure this process, then the all-reduce with every other; every report on rank 0, None
    elsewhere. ``checkpoint`` says how large one of the job's checkpoints is (it may fail)."""
    started = time.monotonic()
    report = ProcessReport(
        rank=topology.rank,
        local_rank=topology.local_rank,
        node_rank=topology.node_rank,
        node_name=topology.node_name,
        devices=topology.devices,
    )
    report.info = report.measure("device_info", lambda: device_info(topology.devices)) or {}
    measure_local(cfg, topology, report, checkpoint)
    if topology.distributed:
        allreduce = report.measure("allreduce", lambda: allreduce_figures(topology, cfg.seconds))
        report.figures.update(allreduce or {})
    report.seconds = round(time.monotonic() - started, 2)
    reports = all_gather_objects(report, topology)
    return reports if topology.is_main else None


def measure_local(
    cfg: PreflightConfig, topology: Topology, report: ProcessReport, checkpoint: Callable[[], CheckpointSize]
) -> None:
    """The measurements a process takes alone, each recorded or failed on its own."""
    precisions = [p for p in cfg.precisions if p != "fp16" or topology.device.type == "cuda"]  # fp16: GPU only
    peaks = report.measure("matmul", lambda: matmul_peaks(topology.devices, precisions, cfg.seconds / 2))
    for precision, per_device in (peaks or {}).items():
        for device, peak in per_device.items():
            report.figures[f"matmul_flops.{precision}.{device}"] = peak["flops_per_s"]
    report.details["matmul"] = peaks
    copies = report.measure("copy", lambda: copy_bandwidths(topology.devices, cfg.seconds / 2))
    report.figures.update({f"copy_bytes_per_s.{name}": rate for name, rate in (copies or {}).items()})
    if cfg.data is not None:
        read = lambda: reader_speed(  # noqa: E731
            cfg.data, rank=topology.rank, world_size=topology.world_size, workers=cfg.reader_workers,
            seconds=cfg.seconds,
        )  # fmt: skip
        speed = report.measure("reader", read)
        if speed:
            report.figures.update({f"reader_{k}": v for k, v in speed.items() if k.endswith("_per_s")})
            report.details["reader"] = {"data": str(cfg.data), **speed}
    disk = report.measure("disk", lambda: disk_room(cfg.run_dir, checkpoint(), cfg.keep_checkpoints))
    if disk:
        report.details["disk"] = disk


def allreduce_figures(topology: Topology, seconds: float) -> dict[str, float]:
    """Bus bandwidth (bytes/s) of an all-reduce of each of ALLREDUCE_SIZES over every process, on the
    replica's first device (NCCL on GPUs, gloo on CPU), and the latency (µs) of a 4-byte one.
    busbw = algbw × 2(n − 1)/n, algbw = message bytes / time (nccl-tests): comparable with the links'
    speed whatever the number of processes."""
    device = topology.device if topology.device.type == "cuda" else torch.device("cpu")
    n = topology.world_size
    sizes = ALLREDUCE_SIZES["cuda" if device.type == "cuda" else "cpu"]
    figures = {}
    for size in sizes:
        buffer = torch.ones(size // 4, device=device)
        per_call = timed_allreduce(buffer, seconds / (len(sizes) + 1))
        figures[f"allreduce_busbw.{size // MiB}MiB"] = size / per_call * 2 * (n - 1) / n
    latency = timed_allreduce(torch.ones(1, device=device), seconds / (len(sizes) + 1))
    figures["allreduce_latency_us"] = latency * 1e6
    return figures


def timed_allreduce(buffer: torch.Tensor, seconds: float, windows: int = 3) -> float:
    """Seconds per all-reduce of ``buffer``: the best of ``windows`` windows. Every process must call
    the collective equally often, so the calls per window come from the slowest process's warm-up."""
    reduce = lambda: dist.all_reduce(buffer)  # noqa: E731
    once = torch.tensor([time_calls(reduce, buffer.device, 1)], dtype=torch.float64)  # warm-up, timed
    dist.all_reduce(once, op=dist.ReduceOp.MAX)  # a CPU tensor: over gloo on GPUs too
    calls = max(1, min(10_000, round(seconds / windows / max(once.item(), 1e-9))))  # the MAX also lines all up
    return min(time_calls(reduce, buffer.device, calls) / calls for _ in range(windows))
