"""Webdataset tar shards: a byte-deterministic writer and a fast, validating reader.

A sample is a group of consecutive members ``<key>.<field>`` (webdataset's convention), so any
webdataset pipeline can read our shards too. The writer fixes every header field that could vary
(mtime, owner, mode), which makes equal inputs give byte-identical shards.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from data_shards.errors import UserError

BLOCK = 512


@dataclass(frozen=True, kw_only=True)
class ShardInfo:
    name: str
    num_samples: int
    num_bytes: int
    sha256: str

    def to_json(self) -> dict:
        return {"name": self.name, "num_samples": self.num_samples, "num_bytes": self.num_bytes, "sha256": self.sha256}


class ShardWriter:
    """Writes samples into ``<prefix>-NNNNNN.tar`` files of ``shard_size`` samples each."""

    def __init__(self, out_dir: Path, shard_size: int, prefix: str = "shard") -> None:
        self.out_dir, self.shard_size, self.prefix = out_dir, shard_size, prefix
        self.shards: list[ShardInfo] = []
        self._tar: tarfile.TarFile | None = None
        self._path: Path | None = None
        self._count = 0
        self.num_samples = 0

    def write(self, fields: dict[str, bytes]) -> None:
        """Add one sample; ``fields`` maps a field name such as ``src.txt`` to its bytes."""
        if self._tar is None:
            self._open()
        key = f"{self.num_samples:09d}"
        for field, payload in fields.items():
            info = tarfile.TarInfo(f"{key}.{field}")
            info.size, info.mode, info.mtime = len(payload), 0o444, 0
            self._tar.addfile(info, io.BytesIO(payload))
        self._count += 1
        self.num_samples += 1
        if self._count == self.shard_size:
            self._close()

    def close(self) -> list[ShardInfo]:
        if self._tar is not None:
            self._close()
        return self.shards

    def _open(self) -> None:
        self._path = self.out_dir / f"{self.prefix}-{len(self.shards):06d}.tar"
        self._tar = tarfile.open(self._path, "w", format=tarfile.USTAR_FORMAT)
        self._count = 0

    def _close(self) -> None:
        self._tar.close()
        data = self._path.read_bytes()
        self.shards.append(
            ShardInfo(
                name=self._path.name,
                num_samples=self._count,
                num_bytes=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
        self._tar = None


def _octal(field: bytes) -> int:
    field = field.rstrip(b"\0 ").lstrip(b" ")
    return int(field, 8) if field else 0


def _members(data: bytes, path: str | Path) -> Iterator[tuple[str, memoryview]]:
    """(name, payload) of each regular file; a clear error on a truncated or corrupt tar."""
    view, offset, long_name = memoryview(data), 0, None
    while offset + BLOCK <= len(data):
        header = data[offset : offset + BLOCK]
        if header.count(0) == BLOCK:
            return  # the end-of-archive marker
        if _octal(header[148:156]) != sum(header[:148]) + 256 + sum(header[156:]):
            raise UserError(path, f"corrupt tar header at byte {offset}")
        size, kind = _octal(header[124:136]), header[156:157]
        start = offset + BLOCK
        offset = start + (size + BLOCK - 1) // BLOCK * BLOCK
        if offset > len(data):
            raise UserError(path, f"truncated tar: a member needs bytes up to {offset}, the file has {len(data)}")
        if kind == b"L":  # GNU long name for the next member
            long_name = bytes(view[start : start + size]).rstrip(b"\0").decode()
        elif kind in (b"0", b"\0"):
            prefix, base = header[345:500].rstrip(b"\0"), header[:100].rstrip(b"\0")
            name = long_name or (prefix + b"/" + base if prefix else base).decode()
            long_name = None
            yield name, view[start : start + size]
    raise UserError(path, f"truncated tar: it ends at byte {len(data)} without the end-of-archive marker")


def read_samples(data: bytes, path: str | Path) -> list[dict[str, memoryview]]:
    """Group a shard's members into samples: ``{field: payload}`` in file order."""
    samples: list[dict[str, memoryview]] = []
    current_key = None
    for name, payload in _members(data, path):
        folder, _, base = name.rpartition("/")
        stem, _, field = base.partition(".")
        key = f"{folder}/{stem}"
        if key != current_key:
            samples.append({})
            current_key = key
        samples[-1][field] = payload
    return samples
