"""Files written whole or not at all: a reader (Prometheus, a resumed run, a study's scheduler) never
sees half of one."""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: Path, data: str | bytes) -> Path:
    """``data`` into ``path`` through a temporary file beside it and a rename: a reader sees the old file or
    all of the new one (logs, targets, records; checkpoints go through ``dist_train.checkpoint.files.atomic_save``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(temporary, path)
    return path
