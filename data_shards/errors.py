"""The one error type for bad input: it names the file and says what is wrong with it."""

from __future__ import annotations

from pathlib import Path


class DataError(Exception):
    """Bad input data. ``str(err)`` is one line: ``<file>: <problem>``."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")

    def __reduce__(self):
        return DataError, (self.path, self.problem)
