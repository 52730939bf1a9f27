"""A run's checkpoints as the training loop's collaborator: when to save, what a save holds (assembled
from the trainer's parts), writing it on the main process, and resuming from one.

The trainer names its parts (``Checkpointable``); every resumable part offers ``state_dict()`` and
``load_state_dict()``. Saving is collective: every replica's reader, RNGs and optimizer partitions
are gathered to the main process, which writes; every replica learns whether that worked.

With ``background`` (``train.async_checkpoints``), the step waits only for a copy of the state into
host memory; a thread writes it (temporary name, fsync, rename, as ever), at most one write in
flight. Whether it worked is agreed at the next save, and the run's last save, at the end or on a
stop signal, is written before the run returns. A process killed mid-write leaves the previous
checkpoint the newest complete one.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Protocol

import torch

from data_shards.errors import UserError
from dist_train.checkpoint.files import CheckpointFolder
from dist_train.checkpoint.schema import Progress, ReplicaState, RunCheckpoint, TrainingState, read_checkpoint
from dist_train.distributed import Topology, all_gather_objects, all_reduce_sum


class Checkpointable(Protocol):
    """What a trainer tells its checkpointer."""

    job: str  # s2s | gan: what the checkpoint says it is
    progress: Progress

    def inference_state(self) -> dict:
        """What using the model needs without the run: config, data folder, vocabularies or image shape."""
        ...

    def modules(self) -> dict:
        """The trained networks (unwrapped) by name; replicas hold identical copies."""
        ...

    def engines(self) -> dict:
        """Each trained network's engine by name: its optimizer state is saved whole or, under ZeRO, by replica."""
        ...

    def resumables(self) -> dict:
        """Other state the same on every replica (a schedule, a loss scaler), by name."""
        ...

    def replica_resumables(self) -> dict:
        """State each replica has its own of (``reader`` and ``rng`` always; a job's own generators). Each
        but the reader also offers ``restart(step)``: a fresh state, for a resume on another replica count."""
        ...


class Checkpointer:
    """Saves every ``every_steps`` steps and/or ``every_minutes`` minutes, at the end and on a stop; resumes."""

    def __init__(
        self,
        folder: CheckpointFolder,
        topology: Topology,
        run: Checkpointable,
        *,
        every_steps: int = 0,
        every_minutes: float = 0.0,
        background: bool = False,
    ) -> None:
        self.folder, self.topology, self.run = folder, topology, run
        self.every_steps, self.every_minutes = every_steps, every_minutes
        self.writer = BackgroundWriter(folder) if background and topology.is_main else None
        self.background = background
        self._last_save = time.monotonic()

    def due(self, step: int) -> bool:
        """This process's view; the loop agrees on it across replicas (``maybe_save`` takes the agreement)."""
        by_steps = self.every_steps > 0 and step % self.every_steps == 0
        by_time = self.every_minutes > 0 and time.monotonic() - self._last_save >= 60 * self.every_minutes
        return by_steps or by_time

    def maybe_save(self, agreed_due: bool) -> Path | None:
        return self.save() if agreed_due else None

    # --- saving -----------------------------------------------------------------------------

    def assemble(self) -> RunCheckpoint:
        """The run's whole state; collective (every replica's own state is gathered)."""
        run, shared, own = self.run, {}, {}
        for name, engine in run.engines().items():  # whole on every replica, or each replica's part (ZeRO)
            (own if engine.optimizer_state_sharded else shared)[name] = engine.optimizer_state_dict()
        replica = {name: part.state_dict() for name, part in run.replica_resumables().items()}
        mine = {"reader": replica.pop("reader"), "rng": replica.pop("rng"), "optimizers": own, "job": replica}
        training = TrainingState(
            progress=Progress(**vars(run.progress)),
            job={name: part.state_dict() for name, part in run.resumables().items()},
            optimizers=shared,
            replicas=[ReplicaState(**r) for r in all_gather_objects(mine, self.topology)],
        )
        weights = {name: module.state_dict() for name, module in run.modules().items()}
        return RunCheckpoint(job=run.job, weights=weights, inference=run.inference_state(), training=training)

    def save(self, *, last: bool = False) -> Path | None:
        """Collective. The main process writes, in the background unless ``last`` or not ``background``;
        every replica learns whether the write before worked (and this one, when it is not in the
        background), so that a failed write (a full disk) stops them all with its error instead of
        leaving them waiting at a collective."""
        self.settle()
        saved, path, failure = self.assemble(), None, None
        if self.writer is not None and not last:
            path = self.writer.start(saved.step, on_host(saved.to_state()))  # the step waits for this copy only
        elif self.topology.is_main:
            try:
                path = self.folder.save(saved.step, saved.to_state())
            except UserError as err:
                failure = err
        self._last_save = time.monotonic()
        if not self.background or last:
            agree_on_failure(failure, self.topology, saved.step)
        return path

    def settle(self) -> None:
        """Wait for the write in flight, if any; every replica raises its failure (collective when saving
        in the background)."""
        if self.background:
            failure = self.writer.wait() if self.writer is not None else None
            agree_on_failure(failure, self.topology, None)

    def estimated_bytes(self) -> int:
        """About how large a checkpoint is: the trained weights and up to two optimizer slots each (Adam)."""
        modules = self.run.modules().values()
        return 3 * sum(p.numel() * p.element_size() for m in modules for p in m.parameters())

    # --- resuming ---------------------------------------------------------------------------

    def resume(self, path: Path) -> None:
        """Load a checkpoint into the run; one of another job, model, vocabulary or layout is a one-line
        error naming it (nothing is written before this)."""
        job = self.run.job
        saved = read_checkpoint(path, job, f"resuming {job}")
        try:
            self.restore(saved)
        except KeyError as err:
            raise UserError(
                path, f"lacks {err}, which a {job} checkpoint holds: written by another version of this program?"
            ) from None
        except (RuntimeError, ValueError, IndexError) as err:
            detail = " ".join(str(err).split())  # torch's size mismatches come one per line
            detail = detail if len(detail) < 400 else detail[:400] + " ..."
            raise UserError(path, f"does not fit this run (another model, vocabulary or layout?): {detail}") from None

    def restore(self, saved: RunCheckpoint) -> None:
        """The run's state from ``saved``; written by another number of replicas, each part as
        ``dist_train.checkpoint.elastic`` says."""
        run, training = self.run, saved.training
        if training is None:
            raise KeyError("training")
        for name, module in run.modules().items():  # the weights first: DeepSpeed refreshes its fp32 copies
            module.load_state_dict(saved.module_weights(name))
        for name, part in run.resumables().items():
            part.load_state_dict(training.job[name])
        elastic = len(training.replicas) != self.topology.num_replicas
        mine = training.replicas[0 if elastic else self.topology.replica_rank]
        for name, engine in run.engines().items():
            part = (mine.optimizers if engine.optimizer_state_sharded else training.optimizers).get(name)
            if part is None:
                raise UserError(
                    None,
                    f"the checkpoint's optimizer state for {name} was saved "
                    f"{'whole' if engine.optimizer_state_sharded else 'sharded by ZeRO'}: "
                    "resume with the same parallel.engine and parallel.deepspeed_config",
                )
            if elastic and engine.optimizer_state_sharded:  # ZeRO: every old partition, cut anew for this count
                parts = [replica.optimizers[name] for replica in training.replicas]
                engine.load_resharded_optimizer_state_dicts(
                    parts, self.topology.replica_rank, self.topology.num_replicas
                )
            else:
                engine.load_optimizer_state_dict(part)
        vars(run.progress).update(vars(training.progress))
        own = {"reader": mine.reader, "rng": mine.rng, **mine.job}
        for name, part in run.replica_resumables().items():
            if elastic and name != "reader":  # a replica's own generators: afresh from (seed, step, replica)
                part.restart(run.progress.step)
            else:  # every replica's reader state says the same: how far the epoch got, and by which layout
                part.load_state_dict(own[name])


def agree_on_failure(failure: BaseException | None, topology: Topology, step: int | None) -> None:
    """Every replica raises the main process's write failure (collective)."""
    if all_reduce_sum([float(failure is not None)], topology)[0] > 0:
        at = f"step {step}" if step is not None else "a checkpoint"
        raise failure or UserError(None, f"{at}: the main process could not write the checkpoint")


def on_host(state):
    """A copy of ``state`` whose tensors are the host's own: training goes on changing the originals
    (weights, optimizer moments) in place, and a GPU's are copied out once, here."""
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {k: on_host(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(on_host(v) for v in state)
    return state


class BackgroundWriter:
    """The main process's checkpoint writes in a thread, one at a time. The thread is not a daemon: a
    process that ends (or fails) while it writes finishes the write first."""

    def __init__(self, folder: CheckpointFolder) -> None:
        self.folder = folder
        self._thread: threading.Thread | None = None
        self._outcome: BaseException | None = None

    def start(self, step: int, state: dict) -> Path:
        self.wait()
        self._thread = threading.Thread(target=self._write, args=(step, state), name=f"checkpoint-{step}")
        self._thread.start()
        return self.folder.path_for(step)

    def _write(self, step: int, state: dict) -> None:
        try:
            self.folder.save(step, state)
        except BaseException as err:  # handed to the training thread at the next save
            self._outcome = err

    def wait(self) -> BaseException | None:
        """The write in flight's failure, once it has ended (None: it worked, or there was none)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        outcome, self._outcome = self._outcome, None
        return outcome
