"""Where the project looks for the shared real data by default (overridable everywhere)."""

from __future__ import annotations

import os
from pathlib import Path

from dist_train import PROJECT_ROOT


def shared_data() -> Path:
    """``$DIST_TRAIN_DATA`` if set, else ``../shared/data`` beside the project."""
    return Path(os.environ.get("DIST_TRAIN_DATA", PROJECT_ROOT.parent / "shared" / "data"))


def shards_home() -> Path:
    """Where jobs keep the shards they make themselves: ``$DIST_TRAIN_SHARDS`` or ``runs/shards``."""
    return Path(os.environ.get("DIST_TRAIN_SHARDS", PROJECT_ROOT / "runs" / "shards"))
