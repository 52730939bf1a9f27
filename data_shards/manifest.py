"""``manifest.json``: what a shard folder holds, and the safe way to (re)write such a folder.

A sharding job writes everything into a staging folder beside the output and swaps it in only
when complete, so a failure or a crash never leaves the output half-written, and an existing
shard set is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from data_shards.errors import UserError

MANIFEST = "manifest.json"
FORMAT_VERSION = "dist-train-shards/1"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: Path, **extra) -> dict:
    return {"path": str(path), "sha256": sha256_file(path), **extra}


def write_manifest(folder: Path, manifest: dict) -> None:
    (folder / MANIFEST).write_text(json.dumps({"format": FORMAT_VERSION, **manifest}, indent=1) + "\n")


def load_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise UserError(path, "missing: is this a folder written by shard-text or shard-images?")
    return parse_manifest(path.read_bytes(), path)


def parse_manifest(data: bytes, where: str | Path) -> dict:
    """A manifest's content (read from ``where``, a file or a URL), checked to be one this reader understands."""
    try:
        manifest = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(where, f"not valid JSON: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise UserError(where, f"format {found!r}, this reader understands {FORMAT_VERSION!r}")
    return manifest


def holds_shards(folder: Path) -> bool:
    return folder.is_dir() and ((folder / MANIFEST).exists() or any(folder.glob("*.tar")))


class StagedOutput:
    """A context manager: yields a staging folder, and on success puts its files at ``out``.

    On an exception the staging folder is removed and ``out`` is untouched.
    """

    def __init__(self, out: Path, overwrite: bool) -> None:
        self.out = Path(out)
        if holds_shards(self.out) and not overwrite:
            raise UserError(self.out, "already holds shards; pass --overwrite to replace them")
        if self.out.exists() and not self.out.is_dir():
            raise UserError(self.out, "exists and is not a folder")
        self.staging = self.out.parent / f".{self.out.name}.staging-{os.getpid()}"

    def __enter__(self) -> Path:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir()
        return self.staging

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            return
        self._swap_in()

    def _swap_in(self) -> None:
        """Old shards go only once the new set is complete; the manifest moves last."""
        if not self.out.exists() or not any(self.out.iterdir()):
            if self.out.exists():
                self.out.rmdir()
            self.staging.rename(self.out)
            return
        retired = self.out.parent / f".{self.out.name}.retired-{os.getpid()}"
        retired.mkdir()
        for old in [self.out / MANIFEST, *self.out.glob("*.tar"), *self.out.glob("vocab.*"), *self.out.glob("*.npy")]:
            if old.exists():
                old.rename(retired / old.name)
        new_files = sorted(self.staging.iterdir(), key=lambda p: p.name == MANIFEST)
        for new in new_files:
            new.rename(self.out / new.name)
        self.staging.rmdir()
        shutil.rmtree(retired)
