"""The one user-facing error: the user's input or environment is at fault, not the program.

Raised for bad files and folders (missing, unreadable, read-only, full), bad config values, checkpoints
and shards of another kind, and a cluster that cannot run what was asked. ``launcher.main`` catches it
once and prints ``error: <what>: <problem>`` (exit 2); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """``str(err)`` is one line: ``<what>: <problem>``, where ``what`` is the file, folder or setting at
    fault (omitted when there is none to name)."""

    def __init__(self, what: str | Path | None, problem: str) -> None:
        self.path = None if what is None else str(what)
        self.problem = " ".join(problem.split())
        super().__init__(self.problem if what is None else f"{what}: {self.problem}")

    def __reduce__(self):
        return UserError, (self.path, self.problem)

    @classmethod
    def from_os_error(cls, err: OSError, doing: str = "") -> UserError:
        """An OSError on the user's own path (read-only, full, missing parent) as one line."""
        reason = err.strerror or str(err)
        return cls(err.filename, f"{doing + ': ' if doing else ''}{reason}")
