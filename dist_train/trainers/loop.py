"""What every trainer shares: the run's limits, agreement across replicas, and interval figures."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from dist_train.distributed import Topology, all_reduce_sum
from dist_train.precision import Precision


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    num_epochs: float = 7.5  # the paper's 7.5 epochs
    max_steps: int = 0  # stop after this many steps instead (0: run num_epochs)
    max_minutes: float = 0.0  # wall-clock budget: checkpoint and stop when it is spent (0: none)
    log_every: int = 20  # steps per logging interval (JSONL line, progress bar update)
    checkpoint_every_steps: int = 0
    checkpoint_every_minutes: float = 30.0
    keep_checkpoints: int = 3
    precision: Precision = "fp32"
    threads: int = 0  # intra-op threads per process (0: the node's cores ÷ processes on it)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_epochs <= 0 and self.max_steps <= 0:
            raise ValueError("set train.num_epochs or train.max_steps")
        if min(self.max_steps, self.max_minutes, self.checkpoint_every_steps, self.threads) < 0:
            raise ValueError("train.max_steps, max_minutes, checkpoint_every_steps and threads must be >= 0")
        if self.log_every < 1 or self.keep_checkpoints < 1:
            raise ValueError("train.log_every and train.keep_checkpoints must be at least 1")

    def total_steps(self, steps_per_epoch: int) -> int:
        by_epochs = math.ceil(self.num_epochs * steps_per_epoch) if self.num_epochs > 0 else math.inf
        return int(min(self.max_steps or math.inf, by_epochs))


class Deadline:
    """The wall-clock budget of this process's run (``max_minutes``), counted from its start."""

    def __init__(self, max_minutes: float) -> None:
        self.max_seconds = 60 * max_minutes
        self.start = time.monotonic()

    def passed(self) -> bool:
        return self.max_seconds > 0 and time.monotonic() - self.start >= self.max_seconds


def agree(flags: list[bool], topology: Topology) -> list[bool]:
    """Each flag true on every replica when true on any: replicas must take the same branch."""
    return [total > 0 for total in all_reduce_sum([float(f) for f in flags], topology)]


class IntervalMeter:
    """Sums per-step figures over a logging interval and turns them into rates across replicas."""

    def __init__(self, summed: tuple[str, ...]) -> None:
        self.summed = summed
        self._reset()

    def _reset(self) -> None:
        self.totals = dict.fromkeys(self.summed, 0.0)
        self.steps = 0
        self.start = time.perf_counter()

    def add(self, **figures: float) -> None:
        for name in self.summed:
            self.totals[name] += figures[name]
        self.steps += 1

    def collect(self, topology: Topology) -> tuple[dict[str, float], float]:
        """Totals over all replicas and the interval's wall time; then starts a new interval."""
        totals = dict(zip(self.summed, all_reduce_sum([self.totals[n] for n in self.summed], topology)))
        seconds = max(time.perf_counter() - self.start, 1e-9)
        self._reset()
        return totals, seconds
