"""Checkpoints (DESIGN.md §6): the files (``files``), what one holds (``schema``: the only reader of its
keys) and a run's saves and resumes (``run``)."""

from dist_train.checkpoint.files import CheckpointFolder, atomic_save, newest_in, resolve_resume
from dist_train.checkpoint.run import Checkpointable, Checkpointer
from dist_train.checkpoint.schema import FORMAT, Progress, RunCheckpoint, SavedVocab, read_checkpoint

__all__ = [
    "FORMAT",
    "CheckpointFolder",
    "Checkpointable",
    "Checkpointer",
    "Progress",
    "RunCheckpoint",
    "SavedVocab",
    "atomic_save",
    "newest_in",
    "read_checkpoint",
    "resolve_resume",
]
