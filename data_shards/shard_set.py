"""A shard set as the reader sees it: its manifest, per-sample lengths, and verified loading of one
shard (a clear error on a missing, truncated or altered one), from a local folder or from a URL
(``data_shards.fetch``: http(s), ``pipe:``, s3/gs through ``data.url_command``)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from data_shards.errors import UserError
from data_shards.fetch import FetchConfig, fetch, file_url, is_remote
from data_shards.manifest import MANIFEST, load_manifest, parse_manifest
from data_shards.tario import read_samples
from data_shards.vocab import Vocab

SHARD_KINDS = {"text-pairs": "sentence-pair (shard-text)", "images": "image (shard-images)"}


def shard_location(text: str | Path) -> str | Path:
    """Where a shard set is, as ``--data`` and ``--dev`` take it: a URL stays a ``str``, a folder is a ``Path``
    (``Path`` would fold the ``//`` of ``http://``)."""
    return str(text) if is_remote(text) else Path(text)


class ShardSet:
    """A shard set: its manifest, per-sample lengths, and verified loading of one shard.

    ``location``: a local folder (a ``Path``) or a URL (a ``str``) whose files are read with ``how``."""

    def __init__(self, location: str | Path, verify_sha256: bool = True, how: FetchConfig | None = None) -> None:
        self.location = shard_location(location)
        self.how, self.verify_sha256 = how or FetchConfig(), verify_sha256
        if isinstance(self.location, Path):
            self.manifest = load_manifest(self.location)
        else:
            self.manifest = parse_manifest(self.read(MANIFEST), self.where(MANIFEST))
        self.kind = self.manifest["kind"]
        self.shards = self.manifest["shards"]
        self.sizes = [s["num_samples"] for s in self.shards]
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.num_samples = int(self.starts[-1])

    def where(self, name: str) -> str | Path:
        """Where file ``name`` of the set is: for errors, and for reading."""
        return self.location / name if isinstance(self.location, Path) else file_url(self.location, name)

    def read(self, name: str, size: int | None = None, sha256: str | None = None) -> bytes:
        """File ``name``'s bytes, checked against ``size`` and ``sha256`` when given (a URL's read is
        retried first); a one-line error naming the file otherwise."""
        where = self.where(name)
        if not isinstance(where, Path):
            return fetch(where, self.how, size, sha256)
        try:
            data = where.read_bytes()
        except OSError as err:
            raise UserError(where, f"cannot be read: {err.strerror}") from err
        if size is not None and len(data) != size:
            raise UserError(where, f"truncated or altered: {len(data)} bytes, the manifest says {size}")
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise UserError(where, "sha256 does not match the manifest: the file is corrupt or was replaced")
        return data

    def expect(self, kind: str, purpose: str) -> None:
        """A one-line error unless these are ``kind`` shards (text-pairs|images): ``purpose`` needs them."""
        if self.kind != kind:
            raise UserError(
                self.location,
                f"holds {SHARD_KINDS.get(self.kind, repr(self.kind))} shards; {purpose} needs "
                f"{SHARD_KINDS.get(kind, kind)} shards",
            )

    def expect_same_vocabulary(self, other: ShardSet, purpose: str) -> None:
        """A one-line error unless ``other`` was sharded with this set's vocabularies (``--vocab-from``):
        ids of another vocabulary mean other words."""
        for side in ("src", "tgt"):
            if self.manifest["vocab"][side]["sha256"] != other.manifest["vocab"][side]["sha256"]:
                raise UserError(
                    self.location,
                    f"has its own {side} vocabulary, not that of {other.location}: {purpose} would read its ids as "
                    f"other words (shard it with shard-text --vocab-from {other.location})",
                )

    def vocab(self, side: str, size: int = 0) -> Vocab:
        """A text shard set's ``src`` or ``tgt`` vocabulary, cut to its ``size`` most frequent entries (0: all)."""
        entry = self.manifest["vocab"][side]
        tokens = Vocab.from_text(self.read(entry["file"], sha256=self._sha256(entry)).decode("utf-8")).tokens
        return Vocab(tokens[:size] if size else tokens)

    def bucket_lengths(self) -> np.ndarray:
        """Each sample's lengths for bucketing (samples, sides): (source, target) tokens for text,
        (1,) for an image."""
        if self.kind != "text-pairs":
            return np.ones((self.num_samples, 1), dtype=np.int64)
        entry = self.manifest["lengths"]
        data = self.read(entry["file"], sha256=self._sha256(entry))
        where = self.where(entry["file"])
        try:
            lengths = np.load(io.BytesIO(data))
        except (OSError, ValueError) as err:
            raise UserError(where, f"cannot read the length index: {err}") from err
        if lengths.shape != (self.num_samples, 2):
            raise UserError(where, f"holds {lengths.shape[0]} lengths, the manifest lists {self.num_samples} samples")
        return lengths

    def shard_of(self, sample_ids: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.starts, sample_ids, side="right") - 1

    def load(self, index: int) -> list[dict]:
        """One shard's samples; a clear error on a missing, truncated or altered shard."""
        entry = self.shards[index]
        data = self.read(entry["name"], entry["num_bytes"], self._sha256(entry))
        where = self.where(entry["name"])
        samples = read_samples(data, where)
        if len(samples) != entry["num_samples"]:
            raise UserError(where, f"holds {len(samples)} samples, the manifest says {entry['num_samples']}")
        return samples

    def _sha256(self, entry: dict) -> str | None:
        """What a file of the set is checked against: its manifest sha256 (not with ``verify_sha256=False``)."""
        return entry.get("sha256") if self.verify_sha256 else None
