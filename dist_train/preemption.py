"""SIGTERM and SIGUSR1 ask a training run to checkpoint and stop cleanly (exit 0), so that a
requeued job resumes with ``--resume auto`` and loses no step. A first Ctrl-C (SIGINT) does the same,
saying so; a second one stops at once (KeyboardInterrupt, exit 130, nothing saved).

Slurm sends SIGUSR1 ahead of a preemption or the time limit (``--signal=B:USR1@120``, forwarded by
the batch script) and SIGTERM when it cancels a job; torchrun passes on the signals it is told to
handle (``--signals-to-handle SIGTERM,SIGUSR1``). The handlers only record the signal in a
``StopSignals`` the trainer holds; the loop checks it after every step and all replicas agree on it,
so they stop at the same step.
"""

from __future__ import annotations

import signal
import sys

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopSignals:
    """The stop signals this process received; ``install()`` routes them here (main thread only). One
    that is not installed never reports a signal (a benchmark's trainer, a test's)."""

    def __init__(self) -> None:
        self.received: list[str] = []

    def install(self) -> StopSignals:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._record)
        signal.signal(signal.SIGINT, self._interrupt)
        return self

    def requested(self) -> str | None:
        """The first stop signal received, if any."""
        return self.received[0] if self.received else None

    def _record(self, signum: int, _frame) -> None:
        self.received.append(signal.Signals(signum).name)

    def _interrupt(self, signum: int, frame) -> None:
        if "SIGINT" in self.received:
            raise KeyboardInterrupt
        self._record(signum, frame)
        print("interrupted: checkpointing after this step, then stopping (Ctrl-C again stops at once)", file=sys.stderr)
