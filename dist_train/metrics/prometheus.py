"""Every process serves Prometheus metrics on ``metrics.port`` + its local rank, and the main
process writes the job's scrape endpoints in Prometheus' ``file_sd`` format to
``<run dir>/prometheus-targets.json`` and, the same, to ``prometheus-targets/<run name>.json`` beside
the run directory (Prometheus' file globs only reach into one folder: ``runs/prometheus-targets/*.json``
finds every run under ``runs/``), so a running job is scraped without editing Prometheus' config.
When the job ends, both list nothing.

Metric names (labels ``job``, ``node``, ``rank``, ``replica``, ``run`` on all):

- counters ``dist_train_{source_words,target_words,samples,images,steps,skipped_steps,corrupt_samples}_total``:
  throughput is their rate (``rate(dist_train_source_words_total[1m])``);
- gauges ``dist_train_{loss,d_loss,g_loss,d_real,d_fake,learning_rate,grad_norm}`` (the latest
  step's) and ``dist_train_memory_bytes{kind=rss|device_allocated|device_peak}``;
- histograms ``dist_train_step_seconds`` and ``dist_train_step_phase_seconds{phase=...}``
  (``data_wait``, ``compute``, ``communication``, ``gradient_allreduce``: see ``clock``).
"""

from __future__ import annotations

import errno
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import torch
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from data_shards.errors import UserError
from dist_train.atomic_files import atomic_write
from dist_train.distributed import Topology, all_gather_objects

PREFIX = "dist_train_"
COUNTERS = {
    "source_words": "source words trained on, </s> included",
    "target_words": "target words trained on, </s> included",
    "samples": "training examples: sentence pairs (s2s), real images (gan)",
    "images": "real images the discriminator was trained on (gan)",
    "skipped_steps": "steps whose update was skipped (fp16 overflow, non-finite gradients)",
    "corrupt_samples": "planned samples the reader left out as corrupt (data.skip_corrupt)",
}
GAUGES = {  # the losses and norms are read off the device once a logging interval: no step waits for them
    "loss": "training loss over the latest logging interval (nats per target word), all replicas",
    "d_loss": "discriminator loss over the latest logging interval, all replicas",
    "g_loss": "generator loss over the latest logging interval, all replicas",
    "d_real": "mean D(x) on real images over the latest logging interval",
    "d_fake": "mean D(G(z)) on generated images over the latest logging interval",
    "learning_rate": "the latest step's learning rate",
    "grad_norm": "gradient norm before clipping at the latest logging interval's last step",
}
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
TARGETS_FILE = "prometheus-targets.json"
WILDCARDS = ("", "0.0.0.0", "::")


@dataclass(frozen=True, kw_only=True)
class MetricsConfig:
    port: int = 9400  # each process serves /metrics on port + its local rank; 0: no Prometheus metrics
    bind: str = "0.0.0.0"  # the address to listen on: every interface, so Prometheus can scrape a node
    on_port_taken: str = "next"  # next: the next free port (logged) | error: stop with an error
    advertise_host: str = ""  # the host name written to the targets file ("": this node's name)
    tensorboard: str = "auto"  # event files in RUN_DIR/tensorboard: auto (where the package is installed) | on | off
    tensorboard_all_ranks: bool = False  # also every process's step times, RUN_DIR/tensorboard/rank-N

    def __post_init__(self) -> None:
        if self.tensorboard not in ("auto", "on", "off"):
            raise ValueError(f"metrics.tensorboard must be auto, on or off, not {self.tensorboard!r}")
        if not 0 <= self.port < 65536:
            raise ValueError(f"metrics.port must be in 0..65535 (0: off), not {self.port}")
        if self.on_port_taken not in ("next", "error"):
            raise ValueError(f"metrics.on_port_taken must be next or error, not {self.on_port_taken!r}")


class PrometheusSink:
    """This process's metrics: counted every step, served over HTTP by prometheus-client's thread."""

    def __init__(self, labels: dict[str, str], device: torch.device) -> None:
        self.registry, self.device = CollectorRegistry(), device
        names = list(labels)

        def labelled(kind, name, doc, extra=(), **kw):
            return kind(PREFIX + name, doc, [*names, *extra], registry=self.registry, **kw)

        self.counters = {n: labelled(Counter, n, doc).labels(**labels) for n, doc in COUNTERS.items()}
        self.steps = labelled(Counter, "steps", "optimizer steps taken").labels(**labels)
        self.gauges = {n: labelled(Gauge, n, doc) for n, doc in GAUGES.items()}
        self.labels = labels
        self.memory = labelled(Gauge, "memory_bytes", "resident memory and device memory", ("kind",))
        self.step_time = labelled(Histogram, "step_seconds", "wall time per step", buckets=STEP_BUCKETS)
        self.phase_time = labelled(
            Histogram, "step_phase_seconds", "wall time per step and phase", ("phase",), buckets=STEP_BUCKETS
        )
        self.server = None
        self.port = 0

    def observe_step(self, step: int, values: dict[str, float], phases: dict[str, float]) -> None:
        self.steps.inc()
        for name, value in values.items():
            if name in self.counters:
                self.counters[name].inc(value)
            elif name in self.gauges:
                self.gauges[name].labels(**self.labels).set(value)
        for phase, seconds in phases.items():
            if phase == "step":
                self.step_time.labels(**self.labels).observe(seconds)
            else:
                self.phase_time.labels(**self.labels, phase=phase).observe(seconds)
        self.memory.labels(**self.labels, kind="rss").set(resident_bytes())
        if self.device.type == "cuda":
            self.memory.labels(**self.labels, kind="device_allocated").set(torch.cuda.memory_allocated(self.device))
            self.memory.labels(**self.labels, kind="device_peak").set(torch.cuda.max_memory_allocated(self.device))

    def note_resume(self, from_replicas: int, on_replicas: int, at_step: int) -> None:
        """A resumed run says so, and how: ``dist_train_resumed{..., from_replicas, on_replicas, at_step} 1``."""
        extra = {"from_replicas": str(from_replicas), "on_replicas": str(on_replicas), "at_step": str(at_step)}
        doc = "1 when this run resumed a checkpoint: written by from_replicas replicas, at at_step"
        gauge = Gauge(PREFIX + "resumed", doc, [*self.labels, *extra], registry=self.registry)
        gauge.labels(**self.labels, **extra).set(1)

    def write(self, step: int, figures: dict) -> None:
        """The interval's figures that are gauges (losses, norms), as every process received them."""
        for name, value in figures.items():
            if name in self.gauges and isinstance(value, (int, float)):
                self.gauges[name].labels(**self.labels).set(value)

    def serve(self, cfg: MetricsConfig, topology: Topology) -> tuple[int, str]:
        """Listen on ``cfg.port`` + local rank, or (``on_port_taken=next``) the first free port after
        it in steps of the processes per node; the port and what happened, for the log."""
        wanted = port = cfg.port + topology.local_rank
        for _ in range(64):
            try:
                self.server, _thread = start_http_server(port, addr=cfg.bind, registry=self.registry)
                self.port = port
                return port, "" if port == wanted else f"port {wanted} was taken, serving on {port}"
            except OSError as err:
                if err.errno != errno.EADDRINUSE:
                    raise UserError(None, f"metrics: cannot listen on {cfg.bind}:{port}: {err.strerror}") from None
                if cfg.on_port_taken == "error":
                    raise UserError(
                        None,
                        f"metrics port {port} on {cfg.bind} is taken (another job on this node?): set metrics.port "
                        "to a free one, metrics.on_port_taken=next, or metrics.port=0 to switch metrics off",
                    ) from None
                port += topology.local_world_size
        raise UserError(None, f"metrics: no free port from {wanted} on ({cfg.bind}); set metrics.port")

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def start_prometheus(cfg: MetricsConfig, topology: Topology, *, job: str, run_dir: Path, say) -> PrometheusSink | None:
    """Every process's sink, serving; the main process writes the targets file (collective)."""
    if not cfg.port:
        return None
    node = socket.gethostname()
    labels = {
        "job": job,
        "node": node,
        "rank": str(topology.rank),
        "replica": str(topology.replica_rank),
        "run": run_dir.name,
    }
    sink = PrometheusSink(labels, topology.device)
    port, note = sink.serve(cfg, topology)
    if note:
        say(f"metrics (rank {topology.rank}): {note}")
    host = cfg.advertise_host or (node if cfg.bind in WILDCARDS else cfg.bind)
    endpoints = all_gather_objects({"targets": [f"{host}:{port}"], "labels": labels}, topology)
    if topology.is_main:
        write_targets(run_dir, endpoints)
        say(f"metrics: {len(endpoints)} endpoint(s) from {host}:{port}, listed in {run_dir / TARGETS_FILE}")
    return sink


def targets_files(run_dir: Path) -> tuple[Path, Path]:
    return run_dir / TARGETS_FILE, run_dir.parent / "prometheus-targets" / f"{run_dir.name}.json"


def write_targets(run_dir: Path, endpoints: list[dict]) -> None:
    """Prometheus reads file_sd files whenever they change: each written whole, then renamed."""
    for path in targets_files(run_dir):
        atomic_write(path, json.dumps(endpoints, indent=1) + "\n")
