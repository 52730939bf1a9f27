"""Everything that runs while training: topology, models, parallelism, trainers, checkpoints, metrics."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the checkout: cluster/, launcher/presets/, runs/
