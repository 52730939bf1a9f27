"""Where a step's wall time goes: ``data_wait`` (blocked on the reader), ``compute`` (forward,
backward, optimizer step), ``communication`` (the loop's own collectives: agreeing on stopping and
checkpointing, summing an interval's figures), ``checkpoint`` and ``evaluation`` (on the steps that
have them); ``step`` is their sum. Beside them, ``gradient_allreduce``: DDP's bucket all-reduces
from launch to completion, summed. They run on gloo's/NCCL's threads while backward computes, so
that time overlaps ``compute`` and is not part of the step's sum."""

from __future__ import annotations

import contextlib
import time

PHASES = {  # each phase and what it does, as an error that happens in it says
    "data_wait": "reading the next batch",
    "compute": "the training step (forward, backward, gradient all-reduce)",
    "communication": "the replicas' agreement on logging, stopping and checkpointing",
    "checkpoint": "gathering and writing a checkpoint",
    "evaluation": "the periodic evaluation",
}


class StepClock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.current = "data_wait"  # the phase entered last: the one an error came from

    @contextlib.contextmanager
    def phase(self, name: str):
        start, self.current = time.perf_counter(), name
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def take(self) -> dict[str, float]:
        """This step's seconds per phase and in all (``step``); the clock restarts."""
        taken = {**self.seconds, "step": sum(self.seconds.values())}
        self.seconds = dict.fromkeys(PHASES, 0.0)
        return taken
