"""Resuming on another number of replicas than the checkpoint was written by (DESIGN.md §6).

What each part does then:
- the data: the interrupted epoch goes on with the samples no replica has read, planned for the new
  layout, each exactly once; later epochs are planned for it (``data_shards.plan.Segment``);
- the samples per update are kept as the run started: the s2s job changes ``train.grad_accum_steps``,
  the gan job ``data.batch_size``; a count that cannot keep them is refused before anything is built,
  naming the counts that can (or, with ``train.keep_global_batch=false``, accepted as it is);
- with ``data.micro_batches``, nothing changes: the updates are planned alike for any replica
  count that divides them, the run goes on at the same update, and dropout is drawn per batch of an
  update (and the GAN's z: ``dist_train.rng.MicroBatchRng``): the uninterrupted run's trajectory, to summation order;
- the optimizer state: whole on every replica under DDP, so nothing changes; ZeRO 1/2's partitions are
  joined and cut anew for the new count (``DeepSpeedDataParallel.load_resharded_optimizer_state_dicts``);
- randomness: each replica's generators (dropout, the GAN's noise) start afresh from (seed, step,
  replica), a stream the same for any later resume at that step on that many replicas.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from data_shards.errors import UserError
from dist_train.checkpoint.schema import read_checkpoint


@dataclass(frozen=True)
class SavedLayout:
    """How the run that wrote a checkpoint was laid out."""

    num_replicas: int
    batch_size: int  # sentences or images per replica and batch (0: by max_tokens)
    max_tokens: int
    grad_accum_steps: int
    step: int
    micro_batches: int = 0  # batches an update, all replicas together, planned alike for any count (0: off)

    @property
    def per_update(self) -> int:
        """Samples (or, batched by tokens, padded tokens) per update, all replicas together."""
        batches = self.micro_batches or self.num_replicas * self.grad_accum_steps
        return batches * (self.batch_size or self.max_tokens)


def saved_layout(path: Path, job: str) -> SavedLayout:
    saved = read_checkpoint(path, job, f"resuming {job}", mmap=True)
    if saved.training is None:
        raise UserError(path, "holds a model without its training state: nothing to resume")
    reader, config = saved.training.replicas[0].reader, saved.inference.get("config", {})
    train, data = config.get("train", {}), config.get("data", {})  # readers of format 1 did not say their batch
    return SavedLayout(
        num_replicas=len(saved.training.replicas),
        batch_size=reader.get("batch_size", data.get("batch_size", 0)),
        max_tokens=reader.get("max_tokens", data.get("max_tokens", 0)),
        grad_accum_steps=train.get("grad_accum_steps", 1),
        step=saved.step,
        micro_batches=reader.get("micro_batches", 0),
    )


def keep_samples_per_update(cfg, job: str, saved: SavedLayout, num_replicas: int, path: Path):
    """``cfg`` changed so that ``num_replicas`` replicas take as many samples an update as ``saved``; the
    same ``cfg`` when the replica count did not change."""
    if saved.num_replicas == num_replicas or cfg.data.micro_batches == saved.micro_batches != 0:
        return cfg  # with micro-batches, the update is the same for any count that divides them (the reader checks)
    per_batch = cfg.data.batch_size or cfg.data.max_tokens
    if (cfg.data.micro_batches or num_replicas * cfg.train.grad_accum_steps) * per_batch == saved.per_update:
        return cfg  # kept by the settings given (a larger data.batch_size, say)
    if cfg.data.micro_batches:  # a count the user chose: theirs to change, not ours
        return cfg if not cfg.train.keep_global_batch else refuse_micro_batches(cfg, saved, per_batch, path)
    if job == "s2s":  # the same batches, more or fewer of them to an update
        accum, left = divmod(saved.per_update, num_replicas * per_batch)
        if accum and not left:
            return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, grad_accum_steps=accum))
        works = [m for m in range(1, saved.per_update + 1) if saved.per_update % (m * per_batch) == 0]
    else:  # gan: one batch an update, larger or smaller
        size, left = divmod(saved.per_update, num_replicas)
        if not left and not cfg.data.max_tokens:
            return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, batch_size=size))
        works = [m for m in range(1, saved.per_update + 1) if saved.per_update % m == 0]
    if not cfg.train.keep_global_batch:
        return cfg
    nearest = sorted(works, key=lambda m: (abs(m - num_replicas), m))[:4]
    size, left = divmod(saved.per_update, num_replicas)
    batch = f", set data.batch_size={size}" if job == "s2s" and not left and not cfg.data.max_tokens else ""
    raise UserError(
        path,
        f"was written by {saved.num_replicas} replicas taking {saved.per_update} samples an update, which "
        f"{num_replicas} replicas cannot keep with whole batches; resume on {', '.join(map(str, sorted(nearest)))} "
        f"replicas{batch}, or accept another number with train.keep_global_batch=false",
    )


def refuse_micro_batches(cfg, saved: SavedLayout, per_batch: int, path: Path):
    """The error for ``data.micro_batches`` given that take another number of samples an update than
    ``saved`` did, naming the count that keeps them when there is one."""
    batches, left = divmod(saved.per_update, per_batch)
    keep = f"set data.micro_batches={batches}, " if not left else ""
    raise UserError(
        path,
        f"was written taking {saved.per_update} samples an update; data.micro_batches={cfg.data.micro_batches} "
        f"of {per_batch} take {cfg.data.micro_batches * per_batch}: {keep}or accept the change with "
        "train.keep_global_batch=false",
    )
