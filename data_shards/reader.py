"""The rank-aware, resumable reader that training consumes.

``ShardReader`` yields one replica's batches of one epoch per iteration, through a DataLoader
whose workers each read their own stream of the epoch plan (see ``plan.py``; with
``micro_batches``, each batch says how many samples its update takes, ``update_samples``). Its
``state_dict()`` is (epoch, batches consumed, the layout that read them): after ``load_state_dict``
in the same layout the reader yields exactly the batches the uninterrupted run would have yielded
next; in another one (more or fewer replicas or workers, other batch limits) it yields the samples
of the epoch that no replica has read yet, planned for the new layout, each exactly once.

Corrupt data (a shard unreadable, truncated or not matching its sha256, a sample that does not
decode) is an error naming the shard; with ``skip_corrupt`` it is left out, reported once on stderr
and counted in each batch's ``corrupt_samples``. A batch left with no sound sample is replaced by
the worker's next sound batch (its previous one at the end of the epoch), so every replica still
takes the same number of steps and DDP cannot wait forever on one that ran out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import signal
from pathlib import Path

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from data_shards.batches import COLLATE, as_torch
from data_shards.errors import UserError
from data_shards.plan import EpochPlan, ReaderConfig, Segment, check_micro_batches, plan_epoch
from data_shards.samples import SampleSource
from data_shards.shard_set import ShardSet


def _as_sent(item):
    """The DataLoader's per-item hook: keep the worker's numpy arrays as they are."""
    return item


class _WorkerStream(IterableDataset):
    """Runs in a DataLoader worker: yields (position, batch) for its share of the plan.

    Workers persist across epochs; ``cursor`` (epoch, first position), in shared memory, tells
    each new iteration where to start, and every worker derives the epoch's plan itself.
    """

    def __init__(self, shards: ShardSet, cfg: ReaderConfig, replica: int, num_replicas: int) -> None:
        self.shards, self.cfg, self.lengths = shards, cfg, shards.bucket_lengths()
        self.replica, self.num_replicas = replica, num_replicas
        self.cursor = torch.zeros(2, dtype=torch.int64).share_memory_()
        self.resumed: tuple[int, tuple[Segment, ...]] = (-1, ())  # (epoch, its segments read by other layouts)
        self._plan: tuple[int, EpochPlan] | None = None

    def plan(self, epoch: int) -> EpochPlan:
        if self._plan is None or self._plan[0] != epoch:
            before = self.resumed[1] if self.resumed[0] == epoch else ()
            plan = plan_epoch(self.shards.sizes, self.lengths, self.cfg, epoch=epoch, num_replicas=self.num_replicas,
                              before=before)  # fmt: skip
            self._plan = (epoch, plan)
        return self._plan[1]

    def __iter__(self):
        """A bad shard is sent as an item: the DataLoader would turn the UserError into a RuntimeError."""
        try:
            yield from self._batches(*self.cursor.tolist())
        except UserError as err:
            yield -1, err

    def _batches(self, epoch: int, start: int):
        info = get_worker_info()
        worker = info.id if info is not None else None
        shards = self.shards
        collate, plan = COLLATE[shards.kind], self.plan(epoch)
        mine = [
            (pos, w, j)
            for pos, (w, j) in enumerate(plan.order(self.replica))
            if pos >= start and (worker is None or w == worker)
        ]
        batches = plan.batches[self.replica]
        samples = SampleSource(shards, self.cfg.skip_corrupt, [batches[w][j] for _, w, j in mine])
        waiting, last = [], None  # positions whose batch held no sound sample, and their count
        for k, (pos, w, j) in enumerate(mine):
            items, kept = samples.take(k)
            corrupt = len(batches[w][j]) - len(kept)
            if not items:
                waiting.append((pos, corrupt))
                continue
            last = dataclasses.replace(collate(items, kept, self.cfg.with_text), corrupt_samples=corrupt)
            for stand_in_for, lost in waiting:
                yield stand_in_for, dataclasses.replace(last, corrupt_samples=lost)
            waiting = []
            yield pos, last
        if waiting and last is None:
            raise UserError(shards.location, f"replica {self.replica} has no sound batch left in epoch {epoch}")
        for stand_in_for, lost in waiting:
            yield stand_in_for, dataclasses.replace(last, corrupt_samples=lost)


def should_pin_memory(device: torch.device | str) -> bool:
    """Whether a reader whose batches go to ``device`` should pin them: only for a GPU, where
    pinned batches copy asynchronously (on a CPU-only machine pinning fails or wastes time)."""
    return torch.device(device).type == "cuda"


class ShardReader:
    """One replica's view of a shard set: iterate it once per epoch.

    ``shards``: a local folder, a URL (read as ``cfg``'s ``url_command``, ``max_retries``, ... say:
    ``data_shards.fetch``), or a ``ShardSet`` already open.

    ``pin_memory`` (set it with ``should_pin_memory(device)``): the DataLoader pins each batch in a
    background thread, so that ``batch.to(device)`` copies it without blocking the host.
    """

    def __init__(
        self,
        shards: str | Path | ShardSet,
        cfg: ReaderConfig,
        *,
        replica_rank: int = 0,
        num_replicas: int = 1,
        pin_memory: bool = False,
    ) -> None:
        if not 0 <= replica_rank < num_replicas:
            raise ValueError(f"replica_rank {replica_rank} is outside 0..{num_replicas - 1}")
        check_micro_batches(cfg.micro_batches, num_replicas)
        self.cfg = cfg
        self.replica_rank, self.num_replicas = replica_rank, num_replicas
        self.pin_memory = pin_memory
        self.shards = shards if isinstance(shards, ShardSet) else ShardSet(shards, cfg.verify_sha256, cfg)
        self.epoch, self.position = 0, 0
        self._stream = _WorkerStream(self.shards, cfg, replica_rank, num_replicas)
        self._loader: DataLoader | None = None

    @property
    def kind(self) -> str:
        return self.shards.kind

    def plan(self) -> EpochPlan:
        return self._stream.plan(self.epoch)

    def __len__(self) -> int:
        """Batches per epoch for this replica: the same on every replica."""
        return self.plan().num_batches(self.replica_rank)

    @property
    def batches_per_update(self) -> int:
        """With ``micro_batches``, this replica's share of an update's batches (1 otherwise: the trainer decides)."""
        return self.cfg.micro_batches // self.num_replicas if self.cfg.micro_batches else 1

    def _batches(self):
        """(position, batch) from the workers, which stay alive from one epoch to the next."""
        self._stream.cursor.copy_(torch.tensor([self.epoch, self.position]))
        if self._loader is None:
            workers = self.cfg.num_workers
            self._loader = DataLoader(
                self._stream,
                batch_size=None,
                collate_fn=_as_sent,
                num_workers=workers,
                prefetch_factor=4 if workers else None,
                persistent_workers=workers > 0,
                pin_memory=self.pin_memory,
                worker_init_fn=_leave_stopping_to_parent,
                # its own generator: each new iterator draws a seed, which would otherwise come from the
                # global RNG and shift dropout and noise after a resume (the plan fixes the batches anyway)
                generator=torch.Generator().manual_seed(self.cfg.seed),
            )
        return iter(self._loader)

    def __iter__(self):
        """The rest of the current epoch, in plan order; then the epoch advances."""
        waiting, update_samples = {}, self.plan().update_samples
        for position, batch in self._batches():
            if isinstance(batch, UserError):
                raise batch
            waiting[position] = batch
            while self.position in waiting:
                batch = waiting.pop(self.position)
                if update_samples is not None:
                    batch.update_samples = int(update_samples[self.position // self.batches_per_update])
                self.position += 1
                yield as_torch(batch)
        if self.position != len(self):
            raise RuntimeError(f"reader stopped at batch {self.position} of {len(self)}")
        self.epoch, self.position = self.epoch + 1, 0

    def close(self) -> None:
        """Stop the worker processes now (they otherwise live as long as the reader): a process that goes on
        to start other readers' workers would have them inherit these, and warn when they are collected."""
        if self._loader is not None and getattr(self._loader, "_iterator", None) is not None:
            self._loader._iterator._shutdown_workers()
        self._loader = None

    @property
    def segments(self) -> tuple[Segment, ...]:
        """What other layouts read of the current epoch before this one took over."""
        epoch, segments = self._stream.resumed
        return segments if epoch == self.epoch else ()

    def layout(self, batches_taken: int = 0) -> Segment:
        cfg = self.cfg
        return Segment(
            self.num_replicas, cfg.num_workers, cfg.batch_size, cfg.max_tokens, batches_taken, cfg.micro_batches
        )

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "replica_rank": self.replica_rank,
            **{k: v for k, v in vars(self.layout()).items() if k != "batches_taken"},
            "order": self._order(),
            "shards_sha256": self._fingerprint(),
            "segments": [vars(s) for s in self.segments],
        }

    def load_state_dict(self, state: dict) -> None:
        """Any replica's state of the same run: they differ only in ``replica_rank``. Mid-epoch, the samples'
        order (seed, shuffling, bucketing) and the shards must be the ones that state was read with."""
        epoch, position = int(state["epoch"]), int(state["position"])
        earlier = tuple(Segment(**s) for s in state.get("segments", ()))
        if position or earlier:
            for key, mine in (("order", self._order()), ("shards_sha256", self._fingerprint())):
                theirs = state.get(key, mine) if key == "order" else state[key]
                if theirs != mine:
                    raise ValueError(f"cannot resume mid-epoch: reader {key} was {theirs!r}, now {mine!r}")
        fields = {**vars(self.layout()), "micro_batches": 0}  # a state without it was read without it
        theirs = Segment(
            **{k: state.get(k, v) for k, v in fields.items() if k != "batches_taken"}, batches_taken=position
        )
        mine = self.layout()
        if theirs.same_updates(mine):  # the same updates: go on at the same one, this replica's share of it
            position = position // (theirs.micro_batches // theirs.num_replicas) * self.batches_per_update
        elif theirs.layout() != mine.layout() and position:
            earlier, position = (*earlier, theirs), 0  # the rest of the epoch, planned for this layout
        self.epoch, self.position = epoch, position
        self._stream.resumed, self._stream._plan = (epoch, earlier), None

    def _order(self) -> dict:
        """What decides which samples go together and in what order, beside the layout."""
        cfg = self.cfg
        return {"seed": cfg.seed, "shuffle": cfg.shuffle, "shuffle_buffer": cfg.shuffle_buffer,
                "bucket_pool": cfg.bucket_pool}  # fmt: skip

    def _fingerprint(self) -> str:
        return hashlib.sha256("".join(s["sha256"] for s in self.shards.shards).encode()).hexdigest()[:16]


__all__ = ["ReaderConfig", "ShardReader", "ShardSet", "should_pin_memory"]


def _leave_stopping_to_parent(_worker_id: int) -> None:
    """A worker ignores SIGUSR1, which asks a run to checkpoint and stop (``scancel --full
    --signal=USR1`` sends it to every process) and would kill it, and SIGINT, which Ctrl-C sends to the
    whole foreground process group: the trainer stops, then shuts its workers down. SIGTERM keeps its
    default: Python's exit terminates leftover workers with it."""
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
