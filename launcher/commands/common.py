"""Helpers the job modules share: building a typed config from flags, the summary line, and the
machine that measured a figure."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from dist_train.metrics import tensorboard


def make_config(parser: argparse.ArgumentParser, config_type, **values):
    """``config_type(**values)``; a validation error becomes a usage error naming the problem."""
    try:
        return config_type(**values)
    except ValueError as err:
        parser.error(str(err))


def print_summary(summary: dict) -> None:
    """The job's last stdout line: one JSON object."""
    sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
    sys.stdout.flush()


def record_evaluation(checkpoint: Path, summary: dict) -> None:
    """Append an evaluation's summary, with the checkpoint's step, to its run's evaluations.jsonl
    (``checkpoint`` is ``<run dir>/checkpoints/step-N.pt``), which ``report`` plots, and to its TensorBoard
    events."""
    run_dir = checkpoint.parent.parent
    if checkpoint.parent.name != "checkpoints" or not run_dir.is_dir():
        return
    step = int(checkpoint.stem.split("-")[-1]) if checkpoint.stem.startswith("step-") else None
    with open(run_dir / "evaluations.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": step, "time": round(time.time(), 3), **summary}, sort_keys=True) + "\n")
    if step is not None:
        tensorboard.record_evaluation(run_dir, step, summary)


def add_threads_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="intra-op threads (0: the cores this process may use: its CPU affinity, at most SLURM_CPUS_ON_NODE)",
    )


def use_threads(args: argparse.Namespace) -> None:
    """``--threads`` when given; else the default that ``launcher.main`` fitted to the cores."""
    if args.threads < 0:
        args.parser.error(f"--threads {args.threads}: give 0 (the cores this process may use) or more")
    if args.threads:
        torch.set_num_threads(args.threads)


def say(message: str) -> None:
    print(message, file=sys.stderr)


def machine() -> dict:
    """The machine the figures were measured on."""
    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), None)
    return {
        "machine": platform.machine(),
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []
