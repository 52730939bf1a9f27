"""Checkpoints: atomic writes, newest-complete discovery, ``weights_only`` loads (DESIGN.md §6).

A checkpoint is written under a temporary name and renamed into place, so a crash mid-write
leaves the previous one intact and never a half file under a checkpoint's name. A failed write
(a full disk) removes its temporary file and is a one-line error naming the intact checkpoint; the
temporary file of a process killed mid-write is removed by the next run (``remove_incomplete``).
"""

from __future__ import annotations

import os
import pickle
import re
import time
from pathlib import Path

import torch

from data_shards.errors import DataError

_NAME = re.compile(r"^step-(\d{8,})\.pt$")
_INCOMPLETE = re.compile(r"^\.step-(\d{8,})\.pt\.tmp-\d+$")


class Checkpointer:
    """Saves every ``every_steps`` steps and/or ``every_minutes`` minutes; keeps the newest ``keep``."""

    def __init__(self, folder: Path, *, every_steps: int = 0, every_minutes: float = 0.0, keep: int = 3) -> None:
        self.folder = Path(folder)
        self.every_steps, self.every_minutes, self.keep = every_steps, every_minutes, keep
        self._last_save = time.monotonic()

    def due(self, step: int) -> bool:
        """This process's view; the trainer agrees on it across replicas before saving."""
        by_steps = self.every_steps > 0 and step % self.every_steps == 0
        by_time = self.every_minutes > 0 and time.monotonic() - self._last_save >= 60 * self.every_minutes
        return by_steps or by_time

    def path_for(self, step: int) -> Path:
        return self.folder / f"step-{step:08d}.pt"

    def save(self, step: int, state: dict) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            final = atomic_save(state, self.path_for(step))
        except OSError as err:
            raise DataError(
                self.path_for(step),
                f"could not be written ({err.strerror or err}); the newest complete checkpoint, "
                f"{self.latest() or 'none yet'}, is intact and is the one --resume auto takes",
            ) from None
        self._last_save = time.monotonic()
        for old in self.complete()[: -self.keep] if self.keep > 0 else []:
            old.unlink(missing_ok=True)
        return final

    def mark_saved(self) -> None:
        """Replicas that did not write still restart their clock."""
        self._last_save = time.monotonic()

    def complete(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := _NAME.match(p.name))]
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        complete = self.complete()
        return complete[-1] if complete else None

    def remove_incomplete(self) -> list[Path]:
        """Delete the temporary files of writes that never finished (a process killed mid-save).
        Only while no process of this run is saving: at start, before resuming."""
        if not self.folder.is_dir():
            return []
        left = [p for p in self.folder.iterdir() if _INCOMPLETE.match(p.name)]
        for path in left:
            path.unlink(missing_ok=True)
        return left


def atomic_save(state: dict, final: Path) -> Path:
    """``torch.save`` to a temporary file beside ``final``, synced, then renamed over it: a reader
    sees the old file or the whole new one, never a partial one."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as f:
            writer = _Writer(f)
            try:
                torch.save(state, writer)
            except RuntimeError as err:  # torch's zip writer hides the OSError of a failed write
                if writer.failure is None:
                    raise
                raise writer.failure from err
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return final


class _Writer:
    """A file for ``torch.save`` that remembers the OSError (ENOSPC, EIO) a write raised."""

    def __init__(self, file) -> None:
        self.file, self.failure = file, None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as err:
            self.failure = err
            raise

    def flush(self) -> None:
        self.file.flush()


def load_checkpoint(path: Path) -> dict:
    """Tensors and plain values only: ``weights_only=True`` refuses anything that could run code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:  # not a checkpoint, truncated, or unsafe
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(path, f"is not a loadable checkpoint: {first_line}") from err


def newest_in(path: Path) -> Path:
    """A checkpoint file as given; for a run directory, its newest complete checkpoint."""
    if path.is_file():
        return path
    if path.is_dir():
        latest = Checkpointer(path / "checkpoints").latest() or Checkpointer(path).latest()
        if latest is not None:
            return latest
        raise DataError(path, "holds no complete checkpoint")
    raise DataError(path, "no such checkpoint")


def resolve_resume(resume: str, checkpointer: Checkpointer) -> Path | None:
    """``auto`` → the newest complete checkpoint (or none); ``never`` → none; else that path."""
    if resume == "never":
        return None
    if resume == "auto":
        return checkpointer.latest()
    path = Path(resume)
    if not path.is_file():
        raise DataError(path, "no such checkpoint (--resume takes auto, never or a checkpoint file)")
    return path
