"""A reader worker's samples, batch by batch, and what it does with corrupt ones.

Each shard is loaded when a batch first needs it and dropped after its last use. A shard that
cannot be read, is truncated or does not match its sha256, and a sample that does not decode, are
an error naming the shard (and the sample), or, with ``skip_corrupt``, reported and left out.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np

from data_shards.batches import DECODE
from data_shards.errors import UserError

if TYPE_CHECKING:
    from data_shards.shard_set import ShardSet


class SampleSource:
    """The decoded samples of a worker's batches, in order (``take(k)`` for the k-th)."""

    REPORTED = 20  # corrupt shards and samples reported on stderr per worker; the rest are counted only

    def __init__(self, shards: ShardSet, skip_corrupt: bool, batches: list[np.ndarray]) -> None:
        self.shards, self.skip_corrupt, self.batches = shards, skip_corrupt, batches
        self.decode = DECODE[shards.kind]
        self.loaded: dict[int, list[dict] | None] = {}  # None: corrupt, skipped
        self.last_use = {int(s): k for k, ids in enumerate(batches) for s in np.unique(shards.shard_of(ids))}
        self.reported = 0

    def take(self, k: int) -> tuple[list, np.ndarray]:
        """Batch ``k``'s sound samples decoded, and their ids."""
        ids = self.batches[k]
        items, kept = [], []
        for shard, sample_id in zip(self.shards.shard_of(ids).tolist(), ids.tolist()):
            samples = self._shard(shard)
            if samples is None:
                continue
            index = sample_id - int(self.shards.starts[shard])
            try:
                items.append(self.decode(samples[index]))
            except Exception as err:  # anything a malformed payload raises (json, PIL, a missing key)
                path = self.shards.where(self.shards.shards[shard]["name"])
                self._corrupt(UserError(path, f"sample {index} does not decode: {type(err).__name__}: {err}"))
                continue
            kept.append(sample_id)
        for shard in [s for s, last in self.last_use.items() if last == k]:
            self.loaded.pop(shard, None)
        return items, np.asarray(kept, dtype=np.int64)

    def _shard(self, index: int) -> list[dict] | None:
        if index not in self.loaded:
            try:
                self.loaded[index] = self.shards.load(index)
            except UserError as err:
                self._corrupt(err)
                self.loaded[index] = None
        return self.loaded[index]

    def _corrupt(self, err: UserError) -> None:
        if not self.skip_corrupt:
            raise err
        self.reported += 1
        if self.reported <= self.REPORTED:
            more = " (further ones are counted, not reported)" if self.reported == self.REPORTED else ""
            print(f"reader: skipping corrupt data (skip_corrupt): {err}{more}", file=sys.stderr, flush=True)
