"""SIGTERM and SIGUSR1 ask a training run to checkpoint and stop cleanly (exit 0), so that a
requeued job resumes with ``--resume auto`` and loses no step. A first Ctrl-C (SIGINT) does the same,
saying so; a second one stops at once (KeyboardInterrupt, exit 130, nothing saved).

Slurm sends SIGUSR1 ahead of a preemption or the time limit (``--signal=B:USR1@120``, forwarded by
the batch script) and SIGTERM when it cancels a job; torchrun passes on the signals it is told to
handle (``--signals-to-handle SIGTERM,SIGUSR1``). The handler only records the signal; the training
loop checks it after every step and all replicas agree on it, so they stop at the same step.
"""

from __future__ import annotations

import signal
import sys

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
_received: list[str] = []


def install() -> None:
    """From now on the stop signals are recorded instead of killing the process (main thread only)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _record)
    signal.signal(signal.SIGINT, _interrupt)


def _record(signum: int, _frame) -> None:
    _received.append(signal.Signals(signum).name)


def _interrupt(signum: int, frame) -> None:
    if "SIGINT" in _received:
        raise KeyboardInterrupt
    _record(signum, frame)
    print("interrupted: checkpointing after this step, then stopping (Ctrl-C again stops at once)", file=sys.stderr)


def requested() -> str | None:
    """The first stop signal received, if any."""
    return _received[0] if _received else None
