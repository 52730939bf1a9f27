"""Checkpoint files: atomic writes, newest-complete discovery, ``weights_only`` reads (DESIGN.md §6).

A checkpoint is written under a temporary name and renamed into place, so a crash mid-write
leaves the previous one intact and never a half file under a checkpoint's name. A failed write
(a full disk) removes its temporary file and is a one-line error naming the intact checkpoint; the
temporary file of a process killed mid-write is removed by the next run (``remove_incomplete``).
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import zipfile
from pathlib import Path

import torch

from data_shards.errors import UserError

_NAME = re.compile(r"^step-(\d{8,})\.pt$")
_INCOMPLETE = re.compile(r"^\.step-(\d{8,})\.pt\.tmp-\d+$")


class CheckpointFolder:
    """A run's checkpoint files: ``step-NNNNNNNN.pt``, written atomically, the newest ``keep`` kept."""

    def __init__(self, folder: Path, *, keep: int = 3) -> None:
        self.folder, self.keep = Path(folder), keep

    def path_for(self, step: int) -> Path:
        return self.folder / f"step-{step:08d}.pt"

    def save(self, step: int, state: dict) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            final = atomic_save(state, self.path_for(step))
        except OSError as err:
            raise UserError(
                self.path_for(step),
                f"could not be written ({err.strerror or err}); the newest complete checkpoint, "
                f"{self.latest() or 'none yet'}, is intact and is the one --resume auto takes",
            ) from None
        for old in self.complete()[: -self.keep] if self.keep > 0 else []:
            old.unlink(missing_ok=True)
        return final

    def check_room(self, checkpoint_bytes: int) -> None:
        """Before the first step, not at the first save: the folder can be made and written, and its disk
        has room for one more checkpoint of about ``checkpoint_bytes``."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe = self.folder / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise UserError(
                err.filename or self.folder, f"cannot be written ({err.strerror or err}): checkpoints go here"
            ) from None
        free = shutil.disk_usage(self.folder).free
        if free < checkpoint_bytes:
            raise UserError(
                self.folder,
                f"its disk has {free / 1e9:.2f} GB free and one checkpoint takes about {checkpoint_bytes / 1e9:.2f} GB",
            )

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
    """``torch.save`` to a temporary file beside ``final``, synced, then renamed over it (text and small
    records: ``dist_train.atomic_files.atomic_write``): a reader
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


def read_file(path: Path, *, mmap: bool = False) -> dict:
    """A checkpoint file's dict, tensors and plain values only: ``weights_only=True`` refuses anything
    that could run code. What the dict holds is read by ``dist_train.checkpoint.schema``. With ``mmap``,
    tensors are mapped, not read: a glance at a large checkpoint's plain values costs little."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        if "unsupported global" in str(err).lower():  # a class or function: unpickling it could run code
            raise UserError(
                path, "holds objects other than tensors and plain values: refused, loading it could run code"
            ) from None
        raise UserError(path, "is not a checkpoint (not a pickle this program wrote)") from None
    except (RuntimeError, EOFError, ValueError, IndexError, KeyError, UnicodeDecodeError, zipfile.BadZipFile) as err:
        raise UserError(path, f"is not a checkpoint, or is truncated ({_first_line(err)})") from None
    if not isinstance(state, dict):
        raise UserError(path, f"is not a checkpoint of this project (it holds a {type(state).__name__})")
    return state


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def newest_in(path: Path) -> Path:
    """A checkpoint file as given; for a run directory, its newest complete checkpoint."""
    if path.is_file():
        return path
    if path.is_dir():
        latest = CheckpointFolder(path / "checkpoints").latest() or CheckpointFolder(path).latest()
        if latest is not None:
            return latest
        raise UserError(path, "holds no complete checkpoint")
    raise UserError(path, "no such checkpoint")


def resolve_resume(resume: str, folder: CheckpointFolder) -> Path | None:
    """``auto`` → the newest complete checkpoint (or none); ``never`` → none; else that path."""
    if resume == "never":
        return None
    if resume == "auto":
        return folder.latest()
    path = Path(resume)
    if not path.is_file():
        raise UserError(path, "no such checkpoint (--resume takes auto, never or a checkpoint file)")
    return path
