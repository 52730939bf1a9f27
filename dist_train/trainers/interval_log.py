"""The training loop's logging collaborator: it sums each step's figures and, every ``log_every``
steps (or when the loop says now: the last step, a checkpoint), turns the interval's sums across
replicas into one log record for the sinks (JSONL, progress bar, Prometheus)."""

from __future__ import annotations

from collections.abc import Callable

from dist_train.checkpoint import Progress
from dist_train.distributed import Topology
from dist_train.metrics import Sinks
from dist_train.trainers.meters import IntervalMeter


class IntervalLog:
    def __init__(
        self,
        every: int,
        topology: Topology,
        sinks: Sinks,
        progress: Progress,
        *,
        unit: str,
        figures: Callable[[dict, float, object], dict],
        before: Callable[[], None] = lambda: None,
    ) -> None:
        """``figures(totals, seconds, last_step_result)`` is the job's record; ``before()`` runs on every
        replica before an interval's sums are gathered (a job's own agreement, such as planning a decay)."""
        self.every, self.topology, self.sinks, self.progress, self.unit = every, topology, sinks, progress, unit
        self.figures, self.before = figures, before
        self.meter = IntervalMeter()

    def restart(self) -> None:
        self.meter.restart()

    def add(self, summed: dict, corrupt_samples: int) -> None:
        """One step's figures that the interval adds up (across steps and replicas)."""
        self.meter.add(**summed, corrupt_samples=corrupt_samples)

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def maybe_log(self, step: int, last, *, now: bool = False) -> None:
        """A collective when due: every replica calls it with the same ``step`` and ``now``."""
        if not (now or self.due(step)):
            return
        self.before()
        totals, seconds = self.meter.collect(self.topology)
        self.progress.seen += int(totals[self.unit])
        self.progress.corrupt_samples += int(totals.pop("corrupt_samples"))
        corrupt = {"corrupt_samples": self.progress.corrupt_samples} if self.progress.corrupt_samples else {}
        self.sinks.write(step, {**self.figures(totals, seconds, last), **corrupt})
