"""What every trainer shares: the loop, the run's limits, agreement across replicas, interval
figures and the run's state.

A job's trainer subclasses ``Trainer`` and supplies ``train_step`` (one update, returning figures),
``interval_figures`` (what a log line says), its own state (``job_state``) and the modules it
trains; the loop, the stopping rules, checkpoints, the readers' and RNG state, the running count of
what it has seen (words, images) and the summary are written once, here.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from data_shards.checks import at_least
from data_shards.errors import UserError
from dist_train import rng
from dist_train.checkpoint import Checkpointer
from dist_train.distributed import Topology, all_gather_objects, replicas_agree
from dist_train.metrics import Sinks, StepClock
from dist_train.metrics.clock import PHASES
from dist_train.parallel.data_parallel import allreduce_seconds
from dist_train.peers import peer_failure
from dist_train.precision import LstmPrecision, Precision, check_lstm_precision
from dist_train.preemption import StopSignals
from dist_train.trainers.meters import Deadline, IntervalMeter, agree


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    num_epochs: float = 7.5  # the paper's 7.5 epochs
    max_steps: int = 0  # stop after this many steps, if sooner than num_epochs (0: no step limit)
    max_minutes: float = 0.0  # wall-clock budget: checkpoint and stop when it is spent (0: none)
    log_every: int = 20  # steps per logging interval (JSONL line, progress bar update)
    checkpoint_every_steps: int = 0
    checkpoint_every_minutes: float = 30.0
    keep_checkpoints: int = 3
    max_skipped_in_a_row: int = 20  # updates skipped in a row (non-finite loss/gradients) before the run stops
    precision: Precision = "fp32"
    lstm_precision: LstmPrecision = "auto"  # the LSTM recurrence's (dist_train.models.numerics)
    threads: int = 0  # intra-op threads per process (0: the node's cores ÷ processes on it)
    tf32: bool = True  # GPUs: fp32 matmuls and cuDNN in TF32 (Ampere and later; false: full fp32, for parity checks)
    deterministic: bool = False  # bit-identical reruns and resumes on GPUs (slower kernels where atomics are used)
    seed: int = 0

    def __post_init__(self) -> None:
        at_least(self, "train", 0, "max_steps", "max_minutes", note="0: no limit")
        at_least(self, "train", 0, "num_epochs", "checkpoint_every_steps", "checkpoint_every_minutes", "threads")
        at_least(self, "train", 1, "max_skipped_in_a_row", "log_every", "keep_checkpoints")
        if self.num_epochs == 0 and self.max_steps == 0:
            raise ValueError(
                "train.num_epochs=0 and train.max_steps=0: set one of them (max_steps=0 means no step limit)"
            )
        check_lstm_precision(self.precision, self.lstm_precision)

    def total_steps(self, steps_per_epoch: int) -> int:
        by_epochs = math.ceil(self.num_epochs * steps_per_epoch) if self.num_epochs > 0 else math.inf
        return int(min(self.max_steps or math.inf, by_epochs))


class StepFigures(Protocol):
    def summed(self) -> dict[str, float]:
        """The figures the logging interval adds up (across steps and replicas)."""
        ...

    def values(self) -> dict[str, float]:
        """This replica's counts and latest values for the metrics (``dist_train.metrics.prometheus``)."""
        ...


class Trainer:
    """The training loop: step, log, checkpoint, evaluate, stop; every replica takes the same decisions."""

    unit = "samples"  # what ``seen`` counts, all replicas together: words for s2s, images for gan

    def __init__(
        self, cfg: TrainConfig, topology: Topology, reader, checkpointer: Checkpointer, sinks: Sinks, extra_state: dict
    ) -> None:
        self.train_cfg, self.topology, self.reader = cfg, topology, reader
        self.checkpointer, self.sinks, self.extra_state = checkpointer, sinks, extra_state
        self.total_steps = cfg.total_steps(len(reader))
        self.step, self.train_seconds, self.seen = 0, 0.0, 0
        self.meter = IntervalMeter()
        self.clock = StepClock()
        self.stop_signals = StopSignals()  # the command installs the process's (SIGTERM, SIGUSR1, Ctrl-C)
        self.stop_requested = False  # a replica got one
        self.skipped_steps, self.skipped_in_a_row = 0, 0  # updates skipped: non-finite loss or gradients
        self.corrupt_samples = 0  # planned samples the readers left out as corrupt (data.skip_corrupt), all replicas
        self.end_figures: dict = {}

    # --- what a job supplies ----------------------------------------------------------------

    def train_step(self, batch) -> StepFigures:
        raise NotImplementedError

    def interval_figures(self, totals: dict[str, float], seconds: float, last: StepFigures) -> dict:
        raise NotImplementedError

    def job_state(self) -> dict:
        raise NotImplementedError

    def load_job_state(self, state: dict) -> None:
        raise NotImplementedError

    def trained_modules(self) -> list:
        """The models this job trains (unwrapped): replicas must hold identical copies of each."""
        raise NotImplementedError

    def engines(self) -> dict:
        """Each trained network's engine by name: their optimizer states are checkpointed here."""
        raise NotImplementedError

    @property
    def horizon(self) -> int:
        """The step the run ends at."""
        return self.total_steps

    def before_log(self, deadline: Deadline) -> None:
        """Called at every logging interval, on every replica."""

    def periodic_figures(self) -> dict:
        """Figures a job computes on its own schedule (dev perplexity, sample grids), after a step."""
        return {}

    def final_figures(self) -> dict:
        """Figures computed once the run stops (a last dev evaluation)."""
        return {}

    # --- the loop ---------------------------------------------------------------------------

    def train(self) -> dict:
        """Train to the horizon, the time limit or a stop signal; a peer that dies or stops answering
        is a PeerError naming this rank and what it was doing, not a hang."""
        try:
            return self._train()
        except RuntimeError as err:
            failure = peer_failure(err, self.topology, f"{PHASES[self.clock.current]} at step {self.step + 1}")
            if failure is None:
                raise
            raise failure from err

    def _train(self) -> dict:
        deadline, started = Deadline(self.train_cfg.max_minutes, self.step), time.monotonic()
        self.meter.restart()
        stop = self.step >= self.horizon
        while not stop:
            batches = iter(self.reader)
            while not stop:
                with self.clock.phase("data_wait"):
                    batch = next(batches, None)
                if batch is None:
                    break  # the epoch is over
                with self.clock.phase("compute"):
                    result = self.train_step(batch)
                self.step += 1
                values = {**result.values(), "corrupt_samples": batch.corrupt_samples}
                self.count_skipped(bool(values.get("skipped_steps")))
                self.meter.add(**result.summed(), corrupt_samples=batch.corrupt_samples)
                stop = self.after_step(result, deadline)
                self.sinks.observe_step(self.step, values, {**self.clock.take(), **self.allreduce_seconds()})
        self.train_seconds += time.monotonic() - started
        self.end_figures = self.final_figures()
        if self.end_figures:
            self.sinks.write(self.step, self.end_figures)
        self.save()
        return self.summary()

    def after_step(self, result: StepFigures, deadline: Deadline) -> bool:
        finished = self.step >= self.horizon
        with self.clock.phase("communication"):
            due = [deadline.passed(), self.checkpointer.due(self.step), self.stop_signals.requested() is not None]
            time_up, checkpoint_due, self.stop_requested = agree(due, self.topology)
        time_up = time_up or self.stop_requested  # a signal: checkpoint and stop, as at the time limit
        if self.step % self.train_cfg.log_every == 0 or finished or time_up or checkpoint_due:
            with self.clock.phase("communication"):
                self.before_log(deadline)
                totals, seconds = self.meter.collect(self.topology)
            self.seen += int(totals[self.unit])
            self.corrupt_samples += int(totals.pop("corrupt_samples"))
            corrupt = {"corrupt_samples": self.corrupt_samples} if self.corrupt_samples else {}
            self.sinks.write(self.step, {**self.interval_figures(totals, seconds, result), **corrupt})
        if checkpoint_due and not (finished or time_up):
            with self.clock.phase("checkpoint"):
                self.save()
        if not (finished or time_up):
            with self.clock.phase("evaluation"):
                figures = self.periodic_figures()
            if figures:
                self.sinks.write(self.step, figures)
        return finished or time_up

    def count_skipped(self, skipped: bool) -> None:
        """Engines skip an update whose gradients are not finite (the same decision on every replica:
        the gradients were all-reduced); a streak of them stops the run before it saves anything."""
        if not skipped:
            self.skipped_in_a_row = 0
            return
        self.skipped_steps += 1
        self.skipped_in_a_row += 1
        if self.skipped_in_a_row >= self.train_cfg.max_skipped_in_a_row:
            newest = self.checkpointer.latest()
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

    # --- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The full state of the run; collective (every replica's reader and RNG are gathered)."""
        shared, own = {}, {}  # optimizer states: whole on every replica, or each replica's part (ZeRO)
        for name, engine in self.engines().items():
            (own if engine.optimizer_state_sharded else shared)[name] = engine.optimizer_state_dict()
        return {
            **self.job_state(),
            "optimizers": shared,
            "trainer": {
                "step": self.step,
                "train_seconds": self.train_seconds,
                f"{self.unit}_seen": self.seen,
                "skipped_steps": self.skipped_steps,
                "corrupt_samples": self.corrupt_samples,
            },
            "readers": all_gather_objects(self.reader.state_dict(), self.topology),
            "rng": all_gather_objects(rng.capture(self.topology.devices), self.topology),
            "replicas": all_gather_objects({**self.replica_state(), "optimizers": own}, self.topology),
            **self.extra_state,
        }

    def load_state_dict(self, state: dict) -> None:
        if len(state["readers"]) != self.topology.num_replicas:
            raise ValueError(
                f"the checkpoint has {len(state['readers'])} replicas, this run "
                f"{self.topology.num_replicas}: resume with the same number of processes"
            )
        self.load_job_state(state)  # the weights first: DeepSpeed refreshes its fp32 copies from them
        mine = state["replicas"][self.topology.replica_rank]
        for name, engine in self.engines().items():
            part = (mine["optimizers"] if engine.optimizer_state_sharded else state["optimizers"]).get(name)
            if part is None:
                raise UserError(
                    None,
                    f"the checkpoint's optimizer state for {name} was saved "
                    f"{'whole' if engine.optimizer_state_sharded else 'sharded by ZeRO'}: "
                    "resume with the same parallel.engine and parallel.deepspeed_config",
                )
            engine.load_optimizer_state_dict(part)
        saved = state["trainer"]
        self.step, self.train_seconds, self.seen = saved["step"], saved["train_seconds"], saved[f"{self.unit}_seen"]
        self.skipped_steps = saved.get("skipped_steps", 0)
        self.corrupt_samples = saved.get("corrupt_samples", 0)
        self.reader.load_state_dict(state["readers"][self.topology.replica_rank])
        rng.restore(state["rng"][self.topology.replica_rank], self.topology.devices)
        self.load_replica_state(mine)

    def replica_state(self) -> dict:
        """What differs between replicas beyond the reader and the global RNGs (a job's own generators)."""
        return {}

    def load_replica_state(self, state: dict) -> None:
        pass

    def checkpoint_bytes(self) -> int:
        """About how large a checkpoint is: the trained weights and up to two optimizer slots each (Adam)."""
        weights = sum(p.numel() * p.element_size() for m in self.trained_modules() for p in m.parameters())
        return 3 * weights

    def save(self) -> Path | None:
        """The main process writes; every replica learns whether that worked, so that a failed write
        (a full disk) stops them all with its error instead of leaving them waiting at a collective."""
        state, path, failure = self.state_dict(), None, None
        if self.topology.is_main:
            try:
                path = self.checkpointer.save(self.step, state)
            except UserError as err:
                failure = err
        else:
            self.checkpointer.mark_saved()
        if agree([failure is not None], self.topology)[0]:
            raise failure or UserError(None, f"step {self.step}: the main process could not write the checkpoint")
        return path

    def summary(self) -> dict:
        return {
            "replicas_in_sync": all(replicas_agree(m, self.topology) for m in self.trained_modules()),
            "steps": self.step,
            "epochs": round(self.step / len(self.reader), 4),
            "train_seconds": round(self.train_seconds, 2),
            "skipped_steps": self.skipped_steps,
            "corrupt_samples": self.corrupt_samples,
            f"{self.unit}_seen": self.seen,
            f"{self.unit}_per_s": round(self.seen / max(self.train_seconds, 1e-9), 1),
            **self.end_figures,
            **({"stopped_by_signal": self.stop_signals.requested() or "a peer's"} if self.stop_requested else {}),
        }
