"""A shard folder as the reader sees it: its manifest, per-sample lengths, and verified loading of
one shard (a clear error on a missing, truncated or altered one)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from data_shards.errors import UserError
from data_shards.manifest import load_manifest
from data_shards.tario import read_samples
from data_shards.vocab import Vocab

SHARD_KINDS = {"text-pairs": "sentence-pair (shard-text)", "images": "image (shard-images)"}


class ShardSet:
    """A shard folder: its manifest, per-sample lengths, and verified loading of one shard."""

    def __init__(self, folder: str | Path, verify_sha256: bool = True) -> None:
        self.folder = Path(folder)
        self.manifest = load_manifest(self.folder)
        self.kind = self.manifest["kind"]
        self.verify_sha256 = verify_sha256
        self.shards = self.manifest["shards"]
        self.sizes = [s["num_samples"] for s in self.shards]
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.num_samples = int(self.starts[-1])

    def expect(self, kind: str, purpose: str) -> None:
        """A one-line error unless these are ``kind`` shards (text-pairs|images): ``purpose`` needs them."""
        if self.kind != kind:
            raise UserError(
                self.folder,
                f"holds {SHARD_KINDS.get(self.kind, repr(self.kind))} shards; {purpose} needs "
                f"{SHARD_KINDS.get(kind, kind)} shards",
            )

    def expect_same_vocabulary(self, other: ShardSet, purpose: str) -> None:
        """A one-line error unless ``other`` was sharded with this set's vocabularies (``--vocab-from``):
        ids of another vocabulary mean other words."""
        for side in ("src", "tgt"):
            if self.manifest["vocab"][side]["sha256"] != other.manifest["vocab"][side]["sha256"]:
                raise UserError(
                    self.folder,
                    f"has its own {side} vocabulary, not that of {other.folder}: {purpose} would read its ids as "
                    f"other words (shard it with shard-text --vocab-from {other.folder})",
                )

    def vocab(self, side: str, size: int = 0) -> Vocab:
        """A text shard set's ``src`` or ``tgt`` vocabulary, cut to its ``size`` most frequent entries (0: all)."""
        tokens = Vocab.load(self.folder / self.manifest["vocab"][side]["file"]).tokens
        return Vocab(tokens[:size] if size else tokens)

    def bucket_lengths(self) -> np.ndarray:
        """Each sample's lengths for bucketing (samples, sides): (source, target) tokens for text,
        (1,) for an image."""
        if self.kind != "text-pairs":
            return np.ones((self.num_samples, 1), dtype=np.int64)
        path = self.folder / self.manifest["lengths"]["file"]
        try:
            lengths = np.load(path)
        except (OSError, ValueError) as err:
            raise UserError(path, f"cannot read the length index: {err}") from err
        if lengths.shape != (self.num_samples, 2):
            raise UserError(path, f"holds {lengths.shape[0]} lengths, the manifest lists {self.num_samples} samples")
        return lengths

    def shard_of(self, sample_ids: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.starts, sample_ids, side="right") - 1

    def load(self, index: int) -> list[dict]:
        """One shard's samples; a clear error on a missing, truncated or altered shard."""
        entry = self.shards[index]
        path = self.folder / entry["name"]
        try:
            data = path.read_bytes()
        except OSError as err:
            raise UserError(path, f"cannot read shard: {err.strerror}") from err
        if len(data) != entry["num_bytes"]:
            raise UserError(path, f"truncated or altered: {len(data)} bytes, the manifest says {entry['num_bytes']}")
        if self.verify_sha256 and hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise UserError(path, "sha256 does not match the manifest: the shard is corrupt or was replaced")
        samples = read_samples(data, path)
        if len(samples) != entry["num_samples"]:
            raise UserError(path, f"holds {len(samples)} samples, the manifest says {entry['num_samples']}")
        return samples
