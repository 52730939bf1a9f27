"""TensorBoard event files in the run directory, beside ``train.jsonl`` and Prometheus
(``tensorboard --logdir runs/``): on when the ``tensorboard`` package is installed
(``pip install '.[tensorboard]'``; ``metrics.tensorboard=auto``).

- ``RUN_DIR/tensorboard/``: the main process writes the job-wide figures of every logging interval
  (all replicas together) and the evaluators' (dev perplexity; the GAN's sample grids as images);
- ``RUN_DIR/tensorboard/rank-N/``: with ``metrics.tensorboard_all_ranks=true``, every process writes its
  own step times and phases, step by step (a slow rank stands out beside the others);
- ``evaluate`` and ``evaluate-gan`` add their results to the run's ``tensorboard/`` at the checkpoint's step.

A resumed run purges what an interrupted attempt wrote after its checkpoint, as ``train.jsonl`` does.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from data_shards.errors import UserError
from dist_train.distributed import Topology
from dist_train.metrics.prometheus import MetricsConfig
from dist_train.metrics.sinks import IntervalSink, MetricsSink

FOLDER = "tensorboard"
GROUPS = {"loss": "train", "ppl": "train", "d_loss": "train", "g_loss": "train", "d_real": "train",
          "d_fake": "train", "epoch": "progress", "lr": "optim", "grad_norm": "optim"}  # fmt: skip
NOT_SHOWN = {"planned_steps", "attempt_began", "step"}  # bookkeeping, not curves


def tensorboard_installed() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def use_tensorboard(setting: str) -> bool:
    """Whether ``metrics.tensorboard`` (auto|on|off) writes events here; ``on`` without the package is an error."""
    if setting == "on" and not tensorboard_installed():
        raise UserError("metrics.tensorboard=on", "the tensorboard package is missing: pip install '.[tensorboard]'")
    return setting == "on" or (setting == "auto" and tensorboard_installed())


def tag_of(name: str) -> str:
    """A figure's TensorBoard tag: its group, then its name (``optim/lr``, ``dev/ppl``, ``throughput/words_per_s``)."""
    if name.startswith("dev_"):
        return f"dev/{name[4:]}"
    if name.endswith("_per_s"):
        return f"throughput/{name}"
    return f"{GROUPS.get(name, 'eval')}/{name}"


def writer(folder: Path, begins_at: int | None = None):
    """Events into ``folder``; a run that begins at step ``begins_at`` hides what was written there after
    it (an interrupted attempt's steps, which this run trains again)."""
    from torch.utils.tensorboard import SummaryWriter  # only where the package is installed

    return SummaryWriter(log_dir=str(folder), purge_step=None if begins_at is None else begins_at + 1)


def add_figures(events, step: int, figures: dict) -> None:
    """Every number of ``figures`` as a scalar; a figure naming a PNG file (the GAN's ``samples``) as an image."""
    for name, value in figures.items():
        if name in NOT_SHOWN or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            events.add_scalar(tag_of(name), value, step)
        elif isinstance(value, str) and value.endswith(".png") and Path(value).is_file():
            from PIL import Image

            events.add_image(name, np.asarray(Image.open(value).convert("RGB")), step, dataformats="HWC")


class TensorBoardSink(IntervalSink):
    """The main process's job-wide figures, ``RUN_DIR/tensorboard/``."""

    def __init__(self, run_dir: Path, *, begins_at: int = 0) -> None:
        self.events = writer(run_dir / FOLDER, begins_at)

    def write(self, step: int, figures: dict) -> None:
        add_figures(self.events, step, figures)

    def close(self) -> None:
        self.events.close()


class RankStepTimesSink:
    """One process's step times and phases, every step (``metrics.tensorboard_all_ranks``)."""

    def __init__(self, run_dir: Path, rank: int, *, begins_at: int = 0) -> None:
        self.events = writer(run_dir / FOLDER / f"rank-{rank}", begins_at)

    def observe_step(self, step: int, values: dict[str, float], phases: dict[str, float]) -> None:
        for phase, seconds in phases.items():  # "step": the whole step; the others: its phases (``clock``)
            self.events.add_scalar("step/seconds" if phase == "step" else f"step/{phase}_seconds", seconds, step)

    def write(self, step: int, figures: dict) -> None:
        pass

    def close(self) -> None:
        self.events.close()


def start_tensorboard(cfg: MetricsConfig, topology: Topology, run_dir: Path, *, begins_at: int) -> list[MetricsSink]:
    """This process's TensorBoard sinks: the job-wide one on the main process, its step times with
    ``tensorboard_all_ranks``; none where ``metrics.tensorboard`` says so or the package is missing."""
    if not use_tensorboard(cfg.tensorboard):
        return []
    sinks: list[MetricsSink] = [TensorBoardSink(run_dir, begins_at=begins_at)] if topology.is_main else []
    if cfg.tensorboard_all_ranks:
        sinks.append(RankStepTimesSink(run_dir, topology.rank, begins_at=begins_at))
    return sinks


def record_evaluation(run_dir: Path, step: int, results: dict) -> None:
    """``evaluate``'s or ``evaluate-gan``'s results, in the run's ``tensorboard/`` at the checkpoint's step
    (where the package is installed): its numbers as scalars (``eval/bleu``), a grid it drew as an image."""
    if tensorboard_installed():
        events = writer(run_dir / FOLDER)
        add_figures(events, step, results)
        events.close()
