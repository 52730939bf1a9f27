"""Metrics sinks behind one small interface: the JSONL log, the progress bar, Prometheus.

A trainer hands every sink each step's values and phase timings (``observe_step``, on every
process: what Prometheus counts) and, at every logging interval, the interval's figures summed
over the replicas (``write``: what the log and the bar show, on the main process only).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Protocol

from tqdm import tqdm


class MetricsSink(Protocol):
    def observe_step(self, step: int, values: dict[str, float], phases: dict[str, float]) -> None:
        """One step of this process: counts and gauges (``values``), seconds per phase."""
        ...

    def write(self, step: int, figures: dict) -> None:
        """One logging interval's figures (all replicas together)."""
        ...

    def close(self) -> None: ...


class IntervalSink:
    """A sink that shows logging intervals only."""

    def observe_step(self, step: int, values: dict[str, float], phases: dict[str, float]) -> None:
        pass


class JsonlSink(IntervalSink):
    """One JSON object per logging interval, appended to ``path`` (a resumed run continues it)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")

    def write(self, step: int, figures: dict) -> None:
        self._file.write(json.dumps({"step": step, "time": round(time.time(), 3), **figures}) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class ProgressBarSink(IntervalSink):
    """A tqdm bar over the run's steps with the chosen figures as postfix; tqdm gives the ETA. A
    ``planned_steps`` figure (what a time budget affords) moves the bar's end."""

    def __init__(self, *, total: int, initial: int, shown: dict[str, str], desc: str) -> None:
        self.shown = shown  # figure name → format, e.g. {"words_per_s": "{:,.0f}"}
        self.latest: dict = {}  # figures arrive in several records (training, dev): show the newest of each
        self._bar = tqdm(total=total, initial=initial, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True)

    def write(self, step: int, figures: dict) -> None:
        if figures.get("planned_steps", self._bar.total) != self._bar.total:
            self._bar.total = figures["planned_steps"]
        self._bar.update(step - self._bar.n)
        self.latest.update(figures)
        shown = [f"{name}={fmt.format(self.latest[name])}" for name, fmt in self.shown.items() if name in self.latest]
        self._bar.set_postfix_str(" ".join(shown), refresh=True)

    def close(self) -> None:
        self._bar.close()


class Sinks:
    """Fan-out to several sinks."""

    def __init__(self, sinks: list[MetricsSink]) -> None:
        self.sinks = sinks

    def observe_step(self, step: int, values: dict[str, float], phases: dict[str, float]) -> None:
        for sink in self.sinks:
            sink.observe_step(step, values, phases)

    def write(self, step: int, figures: dict) -> None:
        for sink in self.sinks:
            sink.write(step, figures)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
