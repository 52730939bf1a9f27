"""What the training loop measures and agrees on: the run's time budget (``Deadline``), the
logging interval's sums across replicas (``IntervalMeter``), and decisions every replica takes alike."""

from __future__ import annotations

import math
import time

import torch

from dist_train.distributed import Topology, all_reduce_sum


class Deadline:
    """The wall-clock budget of this process's run (``max_minutes``), counted from its start, and
    how many more steps it affords at the speed measured since then."""

    def __init__(self, max_minutes: float, start_step: int = 0) -> None:
        self.max_seconds = 60 * max_minutes
        self.start, self.start_step = time.monotonic(), start_step

    def passed(self) -> bool:
        return self.max_seconds > 0 and time.monotonic() - self.start >= self.max_seconds

    def fraction_spent(self) -> float:
        return (time.monotonic() - self.start) / self.max_seconds if self.max_seconds else 0.0

    def steps_affordable(self, step: int) -> float:
        """Steps that fit in the time left at this run's mean speed so far."""
        elapsed = time.monotonic() - self.start
        if step <= self.start_step or not self.max_seconds:
            return math.inf
        return max(0.0, self.max_seconds - elapsed) * (step - self.start_step) / elapsed


def mean_over_replicas(value: float, topology: Topology) -> float:
    """The replicas' mean of ``value``: the same float on every replica."""
    return all_reduce_sum([value], topology)[0] / topology.num_replicas


def agree(flags: list[bool], topology: Topology) -> list[bool]:
    """Each flag true on every replica when true on any: replicas must take the same branch."""
    return [total > 0 for total in all_reduce_sum([float(f) for f in flags], topology)]


class IntervalMeter:
    """Sums per-step figures over a logging interval and turns them into rates across replicas.
    Every replica must add the same figure names."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.totals: dict[str, float] = {}
        self.steps = 0
        self.start = time.perf_counter()

    def add(self, **figures: float | torch.Tensor) -> None:
        """One step's figures: numbers, or tensors left on the device (summed there, read at ``collect``)."""
        for name, value in figures.items():
            if isinstance(value, torch.Tensor):
                value = value.detach()
            self.totals[name] = self.totals.get(name, 0.0) + value
        self.steps += 1

    def collect(self, topology: Topology) -> tuple[dict[str, float], float]:
        """Totals over all replicas and the interval's wall time; then starts a new interval. The device
        sums are read here, once an interval."""
        names = sorted(self.totals)
        totals = dict(zip(names, all_reduce_sum([float(self.totals[n]) for n in names], topology)))
        seconds = max(time.perf_counter() - self.start, 1e-9)
        self.restart()
        return totals, seconds
