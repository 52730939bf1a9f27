"""The epoch plan: which samples form which batch, on which replica and DataLoader worker.

Computed from the manifest and the per-sample length index alone, identically in every process,
so every replica knows every other's batch count without communicating. That is what makes three
guarantees cheap:
  * every sample lands in exactly one batch of one replica per epoch;
  * every replica has the same number of batches (short ones split a few large batches);
  * resuming is skipping to a batch index: no data is re-read.

The steps, all seeded by (seed, epoch):
  1. shuffle the shard order; concatenate the shards' samples in that order;
  2. cut that sequence into ``num_replicas × num_workers`` contiguous, near-equal streams, so a
     stream reads only a few whole shards (a shard at a boundary is shared by two streams);
  3. shuffle each stream within blocks of ``shuffle_buffer`` samples;
  4. bucket: sort each pool of ``bucket_pool`` samples by source length, then target length (so a
     batch's sources are nearly equal: the encoder runs one segment per distinct source length),
     cut it into batches (by sentence count or padded-token budget on the longer side), shuffle
     the batches of the pool;
  5. equalize the batch count across replicas.

With ``micro_batches`` G, step 2 cuts the sequence into G *logical streams* whatever the layout, step 5
equalizes the streams, and the epoch is a sequence of updates, update t taking batch t of every stream.
Of M replicas (M divides G), replica r reads streams r·G/M … (r+1)·G/M − 1, their batch t in turn for
update t, its DataLoader worker w every W-th batch of that order. An update's batches are thus the same
for any M and W: 2 replicas × 1 batch and 1 replica × 2 accumulated batches see the same sentences, and
a run resumed on another replica count continues the epoch at the same update, with nothing re-planned.

An epoch may be read in segments under different layouts: a run stopped mid-epoch on N replicas
and resumed on M. ``Segment`` records what the earlier layouts consumed; the rest of the epoch is
planned for the new layout from the samples none of them consumed, in the epoch's shard order
(steps 2–5 again, seeded by (seed, epoch, segment)), so every sample is still read exactly once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from data_shards.checks import at_least
from data_shards.errors import UserError
from data_shards.fetch import FetchConfig


@dataclass(frozen=True, kw_only=True)
class ReaderConfig(FetchConfig):
    """How a reader forms batches: at most ``batch_size`` sentences and ``max_tokens`` padded tokens; and,
    for shards behind a URL, how their files are fetched (``FetchConfig``'s keys)."""

    batch_size: int = 128  # sentences (or images) per batch, the paper's; 0: no limit
    max_tokens: int = 0  # padded tokens per batch: num_sentences × longest side ≤ max_tokens; 0: no limit
    shuffle: bool = True
    seed: int = 0
    shuffle_buffer: int = 10_000
    bucket_pool: int = 12_800  # samples sorted by length together (0: no length bucketing)
    num_workers: int = 2  # DataLoader worker processes per replica (0: read in the training process)
    micro_batches: int = 0  # batches per update, all replicas together, planned alike for any replica count (0: off)
    verify_sha256: bool = True  # check each shard against the manifest when it is loaded
    skip_corrupt: bool = False  # leave out (and count) corrupt shards and samples instead of stopping
    with_text: bool = False  # also deliver each pair's text (TextBatch.src_text/tgt_text); training needs ids only

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least(self, "data", 0, "batch_size", "max_tokens", note="0: no limit")
        at_least(self, "data", 0, "bucket_pool", "num_workers", "micro_batches")
        at_least(self, "data", 1, "shuffle_buffer")
        if self.batch_size == 0 and self.max_tokens == 0:
            raise ValueError("data.batch_size=0 and data.max_tokens=0: set one of them, or both (0 means no limit)")


@dataclass(frozen=True)
class Segment:
    """A stretch of an epoch read under one layout: ``batches_taken`` batches by each of ``num_replicas``
    replicas (all take the same number), formed with these worker and batch settings."""

    num_replicas: int
    num_workers: int
    batch_size: int
    max_tokens: int
    batches_taken: int
    micro_batches: int = 0

    def layout(self) -> tuple[int, ...]:
        return self.num_replicas, self.num_workers, self.batch_size, self.max_tokens, self.micro_batches

    def same_updates(self, other: Segment) -> bool:
        """Whether ``other`` plans the same updates (the same logical streams): only the replica or worker
        count differs, and the epoch goes on at the same update."""
        keep = (self.batch_size, self.max_tokens, self.micro_batches)
        return self.micro_batches > 0 and keep == (other.batch_size, other.max_tokens, other.micro_batches)

    def config(self, cfg: ReaderConfig) -> ReaderConfig:
        return dataclasses.replace(cfg, num_workers=self.num_workers, batch_size=self.batch_size,
                                   max_tokens=self.max_tokens, micro_batches=self.micro_batches)  # fmt: skip


@dataclass(frozen=True)
class EpochPlan:
    """``batches[replica][worker]`` is a list of arrays of global sample ids, in yield order. With logical
    streams, ``update_samples[t]`` is the number of samples update t takes, all replicas together."""

    batches: list[list[list[np.ndarray]]]
    update_samples: np.ndarray | None = None

    def order(self, replica: int) -> list[tuple[int, int]]:
        """The (worker, batch index) sequence a DataLoader yields: round-robin, skipping empty ones."""
        counts = [len(b) for b in self.batches[replica]]
        return [(w, j) for j in range(max(counts, default=0)) for w in range(len(counts)) if j < counts[w]]

    def num_batches(self, replica: int) -> int:
        return sum(len(b) for b in self.batches[replica])

    def taken(self, batches_taken: int) -> np.ndarray:
        """The sample ids of each replica's first ``batches_taken`` batches, all replicas together."""
        taken = [self.batches[r][w][j] for r in range(len(self.batches)) for w, j in self.order(r)[:batches_taken]]
        return np.concatenate(taken) if taken else np.zeros(0, dtype=np.int64)


def plan_epoch(
    shard_sizes: list[int],
    lengths: np.ndarray,
    cfg: ReaderConfig,
    *,
    epoch: int,
    num_replicas: int,
    before: tuple[Segment, ...] = (),
) -> EpochPlan:
    """``lengths[i]`` is sample i's length: (source, target) tokens for text, (1,) for an image. With
    ``before``, the plan of what is left of the epoch after those segments, for this layout."""
    rng = np.random.default_rng([cfg.seed, epoch])
    starts = np.concatenate([[0], np.cumsum(shard_sizes)[:-1]]).astype(np.int64)
    shard_order = rng.permutation(len(shard_sizes)) if cfg.shuffle else np.arange(len(shard_sizes))
    sequence = np.concatenate([np.arange(starts[s], starts[s] + shard_sizes[s]) for s in shard_order])
    for index, segment in enumerate(before):
        plan = _plan_sequence(sequence, lengths, segment.config(cfg), (cfg.seed, epoch, *_key(index)),
                              segment.num_replicas)  # fmt: skip
        sequence = sequence[~np.isin(sequence, plan.taken(segment.batches_taken))]
    return _plan_sequence(sequence, lengths, cfg, (cfg.seed, epoch, *_key(len(before))), num_replicas)


def _key(segment: int) -> tuple[int, ...]:
    """The seed words of an epoch's ``segment``: none for the first (the plan of an uninterrupted epoch)."""
    return (2**32 + segment,) if segment else ()


def check_micro_batches(micro_batches: int, num_replicas: int) -> None:
    """``num_replicas`` must divide ``data.micro_batches``: a one-line error naming the counts that do."""
    if micro_batches and micro_batches % num_replicas:
        works = [m for m in range(1, micro_batches + 1) if micro_batches % m == 0]
        nearest = sorted(sorted(works, key=lambda m: (abs(m - num_replicas), m))[:4])
        raise UserError(
            None,
            f"data.micro_batches={micro_batches} batches an update cannot be shared by {num_replicas} replicas; "
            f"run on {', '.join(map(str, nearest))} replicas, or change data.micro_batches (a new run)",
        )


def _plan_sequence(sequence: np.ndarray, lengths: np.ndarray, cfg: ReaderConfig, key: tuple, num_replicas: int):
    """Steps 2–5 on ``sequence`` (sample ids in the epoch's shard order)."""
    num_workers = max(cfg.num_workers, 1)
    num_streams = cfg.micro_batches or num_replicas * num_workers
    if 0 < len(sequence) < num_streams:
        raise ValueError(f"{len(sequence)} samples cannot feed {num_streams} streams ({num_replicas} replicas)")
    check_micro_batches(cfg.micro_batches, num_replicas)
    bounds = np.linspace(0, len(sequence), num_streams + 1).round().astype(np.int64)
    streams = []
    for k in range(num_streams):
        stream_rng = np.random.default_rng([*key, k])
        stream = _block_shuffle(sequence[bounds[k] : bounds[k + 1]], cfg, stream_rng)
        streams.append(_bucket(stream, lengths, cfg, stream_rng))
    if cfg.micro_batches:
        return _updates(streams, num_replicas, num_workers)
    per_replica = [streams[r * num_workers : (r + 1) * num_workers] for r in range(num_replicas)]
    _equalize(per_replica)
    return EpochPlan(per_replica)


def _updates(streams: list[list[np.ndarray]], num_replicas: int, num_workers: int) -> EpochPlan:
    """Logical streams as updates: equal in length, replica r's share of update t (batch t of each of its
    streams) at positions t·L … t·L + L − 1 of its order, worker w taking every ``num_workers``-th."""
    _equalize([[stream] for stream in streams])
    per_replica, share = [], len(streams) // num_replicas
    for r in range(num_replicas):
        mine = streams[r * share : (r + 1) * share]
        order = [stream[t] for t in range(len(mine[0])) for stream in mine]
        per_replica.append([order[w::num_workers] for w in range(num_workers)])
    update_samples = np.array([sum(len(stream[t]) for stream in streams) for t in range(len(streams[0]))])
    return EpochPlan(per_replica, update_samples)


def _block_shuffle(stream: np.ndarray, cfg: ReaderConfig, rng: np.random.Generator) -> np.ndarray:
    if not cfg.shuffle:
        return stream
    blocks = [rng.permutation(stream[i : i + cfg.shuffle_buffer]) for i in range(0, len(stream), cfg.shuffle_buffer)]
    return np.concatenate(blocks) if blocks else stream


def _bucket(stream: np.ndarray, lengths: np.ndarray, cfg: ReaderConfig, rng: np.random.Generator) -> list[np.ndarray]:
    pool_size = cfg.bucket_pool or len(stream) or 1
    batches = []
    for i in range(0, len(stream), pool_size):
        pool = stream[i : i + pool_size]
        if cfg.bucket_pool:  # by source length, then target length: a batch's sources are nearly equal
            pool = pool[np.lexsort(lengths[pool].T[::-1])]
        pool_batches = _cut(pool, lengths[pool].max(axis=1), cfg)  # budgets count the longer side
        if cfg.shuffle:
            pool_batches = [pool_batches[j] for j in rng.permutation(len(pool_batches))]
        batches += pool_batches
    return batches


def _cut(pool: np.ndarray, pool_lengths: np.ndarray, cfg: ReaderConfig) -> list[np.ndarray]:
    if not cfg.max_tokens:
        return [pool[i : i + cfg.batch_size] for i in range(0, len(pool), cfg.batch_size)]
    max_sentences = cfg.batch_size or len(pool)
    batches, start, lengths = [], 0, pool_lengths.tolist()
    while start < len(pool):
        end, longest = start + 1, lengths[start]
        while (
            end < len(pool)
            and end - start < max_sentences
            and (end + 1 - start) * max(longest, lengths[end]) <= cfg.max_tokens
        ):
            longest = max(longest, lengths[end])
            end += 1
        batches.append(pool[start:end])
        start = end
    return batches


def _equalize(per_replica: list[list[list[np.ndarray]]]) -> None:
    """Split the largest batches of short replicas until every replica has the most batches."""
    target = max(sum(len(s) for s in streams) for streams in per_replica)
    for streams in per_replica:
        for _ in range(target - sum(len(s) for s in streams)):
            w, j = max(
                ((w, j) for w, s in enumerate(streams) for j in range(len(s))),
                key=lambda wj: (len(streams[wj[0]][wj[1]]), -wj[0], -wj[1]),
            )
            batch = streams[w][j]
            if len(batch) < 2:
                raise ValueError(
                    "too few samples to give every replica the same number of batches; "
                    "use fewer replicas or workers, or smaller batches"
                )
            half = len(batch) // 2
            streams[w][j : j + 1] = [batch[:half], batch[half:]]
