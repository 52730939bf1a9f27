"""Metrics sinks behind one small interface: the JSONL log, the progress bar, Prometheus.

A trainer hands every sink each step's values and phase timings (``observe_step``, on every
process: what Prometheus counts) and, at every logging interval, the interval's figures summed
over the replicas (``write``: what the log and the bar show, on the main process only).
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path
from typing import Protocol

from tqdm import tqdm

from dist_train.atomic_files import atomic_write


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
    """One JSON object per logging interval, appended to ``path``.

    A run that begins at step ``begins_at`` (a resumed run: its checkpoint's step; a new one: 0) keeps the
    earlier attempts' records up to that step and drops the rest (what an interrupted attempt logged after
    its last checkpoint, which this one trains again), so the log's steps only go up; its first record
    says where it began (``attempt_began``), with ``note``."""

    def __init__(self, path: Path, *, begins_at: int = 0, note: dict | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            kept = [line for line in path.read_text().splitlines() if _step_of(line) <= begins_at]
            atomic_write(path, "".join(line + "\n" for line in kept))
        self._file = open(path, "a", encoding="utf-8")
        self.write(begins_at, {"attempt_began": True, **(note or {})})

    def write(self, step: int, figures: dict) -> None:
        self._file.write(json.dumps({"step": step, "time": round(time.time(), 3), **figures}) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _step_of(line: str) -> float:
    try:
        return json.loads(line).get("step", 0)
    except (json.JSONDecodeError, AttributeError):  # a line cut short by a killed process
        return float("inf")


class ProgressBarSink(IntervalSink):
    """A tqdm bar over the run's steps with the chosen figures as postfix; tqdm gives the ETA. A
    ``planned_steps`` figure (what a time budget affords) moves the bar's end. When stderr is not a
    terminal (a Slurm log, a pipe) the bar is printed as a plain line every ``every_s`` seconds and
    at the end, not redrawn with carriage returns, which would fill the log and interleave with
    other output."""

    def __init__(self, *, total: int, initial: int, shown: dict[str, str], desc: str, every_s: float = 30.0) -> None:
        self.shown = shown  # figure name → format, e.g. {"words_per_s": "{:,.0f}"}
        self.latest: dict = {}  # figures arrive in several records (training, dev): show the newest of each
        self.terminal, self.every_s, self.printed = sys.stderr.isatty(), every_s, time.monotonic()
        out = sys.stderr if self.terminal else io.StringIO()
        self._bar = tqdm(total=total, initial=initial, desc=desc, unit="step", file=out, dynamic_ncols=self.terminal)

    def write(self, step: int, figures: dict) -> None:
        if figures.get("planned_steps", self._bar.total) != self._bar.total:
            self._bar.total = figures["planned_steps"]
        self._bar.update(step - self._bar.n)
        self.latest.update(figures)
        shown = [f"{name}={fmt.format(self.latest[name])}" for name, fmt in self.shown.items() if name in self.latest]
        self._bar.set_postfix_str(" ".join(shown), refresh=self.terminal)
        if not self.terminal and (time.monotonic() - self.printed >= self.every_s or self._bar.n >= self._bar.total):
            self.print_line()

    def print_line(self) -> None:
        print(str(self._bar), file=sys.stderr, flush=True)
        self.printed = time.monotonic()

    def close(self) -> None:
        if not self.terminal and time.monotonic() - self.printed > 0 and self._bar.n < (self._bar.total or 0):
            self.print_line()  # where an early stop (a signal, an error) left the bar
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
