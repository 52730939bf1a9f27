"""What every trainer shares: the loop and its stopping rules, agreed across replicas.

``train()`` advances the step and calls collaborators that decide their own timing: the interval
log (``IntervalLog.maybe_log``), the checkpointer (``Checkpointer.maybe_save``, which also assembles
what a checkpoint holds) and the job's evaluator (``maybe_run``). A job's trainer subclasses
``Trainer`` and supplies ``train_step`` (one update, returning figures), ``interval_figures`` (what a
log record says) and its parts (``dist_train.checkpoint.Checkpointable``).
"""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path
from typing import Protocol

import torch

from data_shards import ReaderConfig, ShardReader
from data_shards.errors import UserError
from data_shards.reader import should_pin_memory
from dist_train.checkpoint import Checkpointer, CheckpointFolder, Progress
from dist_train.distributed import Topology, replicas_agree
from dist_train.metrics import Sinks, StepClock
from dist_train.metrics.clock import PHASES
from dist_train.parallel.data_parallel import allreduce_seconds
from dist_train.peers import peer_failure
from dist_train.preemption import StopSignals
from dist_train.profiling import out_of_memory
from dist_train.rng import MicroBatchRng, ProcessRng
from dist_train.trainers.interval_log import IntervalLog
from dist_train.trainers.meters import Deadline, agree
from dist_train.trainers.samples_seen import SamplesSeen
from dist_train.trainers.train_config import TrainConfig


def replica_reader(folder: Path, cfg: ReaderConfig, topology: Topology) -> ShardReader:
    """This replica's reader of the shards in ``folder``: its share of every epoch, its batches pinned
    when they go to a GPU."""
    return ShardReader(
        folder,
        cfg,
        replica_rank=topology.replica_rank,
        num_replicas=topology.num_replicas,
        pin_memory=should_pin_memory(topology.device),
    )


class StepFigures(Protocol):
    def summed(self) -> dict[str, float]:
        """The figures the logging interval adds up (across steps and replicas)."""
        ...

    def values(self) -> dict[str, float]:
        """This replica's counts and latest values for the metrics (``dist_train.metrics.prometheus``)."""
        ...


class NoEvaluation:
    """The evaluator of a job without one: ``maybe_run(step)`` after a step, ``final(step)`` at the end."""

    def maybe_run(self, step: int) -> dict:
        return {}

    def final(self, step: int) -> dict:
        return {}


class Trainer:
    """The training loop: step, log, checkpoint, evaluate, stop; every replica takes the same decisions."""

    job = ""  # s2s | gan: what its checkpoints say they are
    unit = "samples"  # what ``progress.seen`` counts, all replicas together: words for s2s, images for gan
    shown: dict[str, str] = {}  # the log figures the progress bar shows, with their formats

    def __init__(self, cfg: TrainConfig, topology: Topology, reader: ShardReader, run_dir: Path) -> None:
        """``run_dir`` holds the run's checkpoints; the command adds the run's sinks (JSONL, progress,
        Prometheus) to ``sinks`` once it knows where the run starts."""
        self.train_cfg, self.topology, self.reader, self.run_dir = cfg, topology, reader, run_dir
        if reader.cfg.micro_batches and cfg.grad_accum_steps != 1:
            raise UserError(
                None, "data.micro_batches decides the batches an update takes: leave train.grad_accum_steps=1"
            )
        self.sinks = Sinks([])
        self.micro_batch_rng = MicroBatchRng(
            cfg.seed, topology.replica_rank, reader.batches_per_update, enabled=reader.cfg.micro_batches > 0
        )
        self.total_steps = cfg.total_steps(self.steps_per_epoch)
        self.progress = Progress()
        self.clock = StepClock()
        self.deadline = Deadline(cfg.max_minutes)
        self.stop_signals = StopSignals()  # the command installs the process's (SIGTERM, SIGUSR1, Ctrl-C)
        self.stop_requested = False  # a replica got one
        self.skipped_in_a_row = 0  # updates skipped in a row: non-finite loss or gradients
        self.evaluator = NoEvaluation()
        self.checkpointer = Checkpointer(
            CheckpointFolder(run_dir / "checkpoints", keep=cfg.keep_checkpoints),
            topology,
            self,
            every_steps=cfg.checkpoint_every_steps,
            every_minutes=cfg.checkpoint_every_minutes,
            background=cfg.async_checkpoints,
        )
        self.log = IntervalLog(
            cfg.log_every,
            topology,
            self.sinks,
            self.progress,
            unit=self.unit,
            figures=self.interval_figures,
            before=self.before_log,
        )
        self.samples_seen = SamplesSeen(run_dir, topology.replica_rank, cfg.record_samples)
        self.end_figures: dict = {}

    @property
    def step(self) -> int:
        return self.progress.step

    @property
    def batches_per_update(self) -> int:
        """This replica's batches an update: ``train.grad_accum_steps``, or its share of ``data.micro_batches``."""
        return self.reader.batches_per_update * self.train_cfg.grad_accum_steps

    @property
    def steps_per_epoch(self) -> int:
        """Updates per epoch: the reader's batches, ``batches_per_update`` to an update (the last may have fewer)."""
        return math.ceil(len(self.reader) / self.batches_per_update)

    # --- what a job supplies ----------------------------------------------------------------

    def train_step(self, batches: list) -> StepFigures:
        """One update from ``batches`` (``batches_per_update`` of them, fewer at an epoch's end)."""
        raise NotImplementedError

    def interval_figures(self, totals: dict[str, float], seconds: float, last: StepFigures) -> dict:
        raise NotImplementedError

    @property
    def horizon(self) -> int:
        """The step the run ends at."""
        return self.total_steps

    def before_log(self) -> None:
        """Called at every logging interval, on every replica."""

    def about(self) -> str:
        """What the start-up line says of this job's model and data."""
        return ""

    def inference_state(self) -> dict:
        raise NotImplementedError

    def modules(self) -> dict:
        raise NotImplementedError

    def engines(self) -> dict:
        raise NotImplementedError

    def resumables(self) -> dict:
        return {}

    def replica_resumables(self) -> dict:
        """This replica's own state: its reader's position and its RNGs (a job adds its own generators)."""
        rng = ProcessRng(self.topology.devices, self.train_cfg.seed, self.topology.replica_rank)
        return {"reader": self.reader, "rng": rng}

    # --- the loop ---------------------------------------------------------------------------

    def train(self) -> dict:
        """Train to the horizon, the time limit or a stop signal; a peer that dies or stops answering
        is a PeerError naming this rank and what it was doing, not a hang; CUDA running out of memory is
        one line naming the memory snapshot it wrote."""
        try:
            return self._train()
        except torch.OutOfMemoryError as err:
            if self.topology.device.type != "cuda":
                raise
            raise out_of_memory(err, self.run_dir, self.topology.rank, self.step + 1) from err
        except RuntimeError as err:
            failure = peer_failure(err, self.topology, f"{PHASES[self.clock.current]} at step {self.step + 1}")
            if failure is None:
                raise
            raise failure from err

    def _train(self) -> dict:
        self.deadline, started = Deadline(self.train_cfg.max_minutes, self.step), time.monotonic()
        self.log.restart()
        stop = self.step >= self.horizon
        while not stop:
            batches, epoch = iter(self.reader), self.reader.epoch
            while not stop:
                with self.clock.phase("data_wait"):
                    group = list(itertools.islice(batches, self.batches_per_update))
                if not group:
                    break  # the epoch is over
                with self.clock.phase("compute"):
                    result = self.train_step(group)
                self.progress.step += 1
                self.samples_seen.record(epoch, self.step, group)
                corrupt = sum(batch.corrupt_samples for batch in group)
                values = {**result.values(), "corrupt_samples": corrupt}
                self.count_skipped(bool(values.get("skipped_steps")))
                self.log.add(result.summed(), corrupt)
                stop = self.after_step(result)
                self.sinks.observe_step(self.step, values, {**self.clock.take(), **self.allreduce_seconds()})
        self.progress.train_seconds += time.monotonic() - started
        self.end_figures = self.evaluator.final(self.step)
        if self.end_figures:
            self.sinks.write(self.step, self.end_figures)
        self.checkpointer.save(last=True)
        return self.summary()

    def after_step(self, result: StepFigures) -> bool:
        """The collaborators, each on its own schedule; True when the run stops here."""
        with self.clock.phase("communication"):
            due = [self.deadline.passed(), self.checkpointer.due(self.step), self.stop_signals.requested() is not None]
            time_up, checkpoint_due, self.stop_requested = agree(due, self.topology)
            ending = self.step >= self.horizon or time_up or self.stop_requested  # a signal: save and stop
            self.log.maybe_log(self.step, result, now=ending or checkpoint_due)
        if ending:
            return True
        with self.clock.phase("checkpoint"):
            self.checkpointer.maybe_save(checkpoint_due)
        with self.clock.phase("evaluation"):
            figures = self.evaluator.maybe_run(self.step)
        if figures:
            self.sinks.write(self.step, figures)
        return False

    def count_skipped(self, skipped: bool) -> None:
        """Engines skip an update whose gradients are not finite (the same decision on every replica:
        the gradients were all-reduced); a streak of them stops the run before it saves anything."""
        if not skipped:
            self.skipped_in_a_row = 0
            return
        self.progress.skipped_steps += 1
        self.skipped_in_a_row += 1
        if self.skipped_in_a_row >= self.train_cfg.max_skipped_in_a_row:
            newest = self.checkpointer.folder.latest()
            raise UserError(
                None,
                f"{self.skipped_in_a_row} updates in a row were skipped at step {self.step} (non-finite loss or "
                f"gradients: lower the learning rate, check the data); the newest checkpoint, "
                f"{newest or 'none yet'}, holds the weights from before them (train.max_skipped_in_a_row)",
            )

    def allreduce_seconds(self) -> dict[str, float]:
        """The DDP engines' gradient all-reduce time this step (none under DeepSpeed or alone)."""
        timed = [allreduce_seconds(engine.module) for engine in self.engines().values()]
        timed = [seconds for seconds in timed if seconds is not None]
        return {"gradient_allreduce": sum(timed)} if timed else {}

    def summary(self) -> dict:
        progress, unit = self.progress, self.unit
        return {
            "replicas_in_sync": all(replicas_agree(m, self.topology) for m in self.modules().values()),
            "steps": self.step,
            "epochs": round(self.step / self.steps_per_epoch, 4),
            "train_seconds": round(progress.train_seconds, 2),
            "skipped_steps": progress.skipped_steps,
            "corrupt_samples": progress.corrupt_samples,
            f"{unit}_seen": progress.seen,
            f"{unit}_per_s": round(progress.seen / max(progress.train_seconds, 1e-9), 1),
            **self.end_figures,
            **({"stopped_by_signal": self.stop_signals.requested() or "a peer's"} if self.stop_requested else {}),
        }
