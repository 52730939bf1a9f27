"""The s2s job: the paper's recipe (§3.3–3.4) on length-bucketed batches, data-parallel across replicas.

``train()`` advances the step and calls its collaborators; ``train_step()`` is one SGD update:
forward under the chosen precision, summed token loss divided by the batch's sentence count,
gradient clipped at norm 5, plain SGD at the schedule's learning rate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from data_shards import ReaderConfig, ShardReader, TextBatch
from dist_train import rng
from dist_train.checkpoint import Checkpointer
from dist_train.distributed import Topology, all_gather_objects, replicas_agree
from dist_train.metrics import Sinks
from dist_train.models.seq2seq import Seq2Seq, Seq2SeqConfig
from dist_train.optim import HalvingSchedule, OptimConfig, build_optimizer
from dist_train.parallel.data_parallel import unwrap
from dist_train.parallel.replica import ParallelConfig, build_engine, build_replica
from dist_train.precision import MixedPrecision
from dist_train.trainers.loop import Deadline, IntervalMeter, TrainConfig, agree
from dist_train.trainers.s2s_batch import model_inputs
from dist_train.trainers.s2s_eval import DevEvaluator, EvalConfig


@dataclass(frozen=True, kw_only=True)
class VocabConfig:
    """Train on the N most frequent entries of the data's vocabularies (0: all); the rest → <unk>."""

    src_vocab_size: int = 0
    tgt_vocab_size: int = 0


@dataclass(frozen=True, kw_only=True)
class S2SConfig:
    model: Seq2SeqConfig = field(default_factory=Seq2SeqConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: ReaderConfig = field(default_factory=ReaderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)


def vocab_sizes(cfg: VocabConfig, manifest: dict) -> tuple[int, int]:
    src, tgt = manifest["vocab"]["src"]["size"], manifest["vocab"]["tgt"]["size"]
    return (min(src, cfg.src_vocab_size or src), min(tgt, cfg.tgt_vocab_size or tgt))


@dataclass
class StepResult:
    loss_sum: float  # summed token cross-entropy (nats)
    target_tokens: int  # predicted tokens, EOS included
    words: int  # source + target words incl. EOS: the paper's words/s count
    grad_norm: float
    lr: float


class S2STrainer:
    def __init__(
        self,
        cfg: S2SConfig,
        topology: Topology,
        reader: ShardReader,
        checkpointer: Checkpointer,
        sinks: Sinks,
        extra_state: dict,
        dev_reader: ShardReader | None = None,
    ) -> None:
        self.cfg, self.topology, self.reader = cfg, topology, reader
        self.checkpointer, self.sinks, self.extra_state = checkpointer, sinks, extra_state
        self.src_vocab_size, self.tgt_vocab_size = vocab_sizes(cfg.vocab, reader.shards.manifest)
        model = Seq2Seq(cfg.model, src_vocab_size=self.src_vocab_size, tgt_vocab_size=self.tgt_vocab_size)
        replica = build_replica(model, cfg.parallel, topology)
        self.optimizer = build_optimizer(cfg.optim, replica.parameters())
        self.schedule = HalvingSchedule(cfg.optim, steps_per_epoch=len(reader))
        self.precision = MixedPrecision(cfg.train.precision, topology.device)
        self.engine = build_engine(
            cfg.parallel,
            replica,
            topology,
            self.optimizer,
            self.precision,
            batch_size=cfg.data.batch_size,
            max_grad_norm=cfg.optim.max_grad_norm,
        )
        self.model = self.engine.module
        self.total_steps = cfg.train.total_steps(len(reader))
        self.step, self.words_seen, self.train_seconds = 0, 0, 0.0
        self.meter = IntervalMeter(("loss_sum", "target_tokens", "words"))
        sizes = (self.src_vocab_size, self.tgt_vocab_size)
        self.evaluator = dev_reader and DevEvaluator(cfg.eval, dev_reader, topology, self.precision, sizes)
        self.dev_figures: dict = {}

    # --- the loop ---------------------------------------------------------------------------

    def train(self) -> dict:
        deadline, started = Deadline(self.cfg.train.max_minutes), time.monotonic()
        stop = self.step >= self.total_steps
        while not stop:
            for batch in self.reader:
                result = self.train_step(batch)
                self.step += 1
                self.meter.add(loss_sum=result.loss_sum, target_tokens=result.target_tokens, words=result.words)
                stop = self.after_step(result, deadline)
                if stop:
                    break
        self.train_seconds += time.monotonic() - started
        if self.evaluator is not None:
            self.dev_figures = self.evaluator.run(unwrap(self.model))
            self.sinks.write(self.step, self.dev_figures)
        self.save()
        return self.summary()

    def after_step(self, result: StepResult, deadline: Deadline) -> bool:
        """Log, checkpoint, stop: every replica takes the same decisions."""
        finished = self.step >= self.total_steps
        time_up, checkpoint_due = agree([deadline.passed(), self.checkpointer.due(self.step)], self.topology)
        if self.step % self.cfg.train.log_every == 0 or finished or time_up or checkpoint_due:
            self.log(result)
        if checkpoint_due and not (finished or time_up):
            self.save()
        if self.evaluator is not None and not (finished or time_up):
            figures = self.evaluator.maybe_run(self.step, unwrap(self.model))
            if figures:
                self.sinks.write(self.step, figures)
        return finished or time_up

    def train_step(self, batch: TextBatch) -> StepResult:
        inputs = model_inputs(batch, (self.src_vocab_size, self.tgt_vocab_size), self.topology.device)
        lr = self.schedule.apply(self.optimizer, self.step)
        with self.precision.autocast():
            loss_sum = self.model(*inputs.as_args()).sum()  # nats over every target token, </s> included
        # the paper divides the gradient by the batch size, then clips it at norm 5
        grad_norm = self.engine.update(loss_sum / len(batch))
        return StepResult(
            loss_sum=float(loss_sum.detach()),
            target_tokens=inputs.num_targets,
            words=int(inputs.src_lengths.sum()) + inputs.num_targets,
            grad_norm=float(grad_norm),
            lr=lr,
        )

    def log(self, result: StepResult) -> None:
        totals, seconds = self.meter.collect(self.topology)
        self.words_seen += int(totals["words"])
        loss = totals["loss_sum"] / max(totals["target_tokens"], 1)
        self.sinks.write(
            self.step,
            {
                "epoch": round(self.step / len(self.reader), 4),
                "loss": round(loss, 5),
                "ppl": round(math.exp(min(loss, 50.0)), 3),
                "lr": result.lr,
                "grad_norm": round(result.grad_norm, 4),
                "words_per_s": round(totals["words"] / seconds, 1),
            },
        )

    # --- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The full state of the run; collective (every replica's reader and RNG are gathered)."""
        return {
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "precision": self.precision.state_dict(),
            "trainer": {"step": self.step, "words_seen": self.words_seen, "train_seconds": self.train_seconds},
            "readers": all_gather_objects(self.reader.state_dict(), self.topology),
            "rng": all_gather_objects(rng.capture(), self.topology),
            **self.extra_state,
        }

    def load_state_dict(self, state: dict) -> None:
        if len(state["readers"]) != self.topology.num_replicas:
            raise ValueError(
                f"the checkpoint has {len(state['readers'])} replicas, this run "
                f"{self.topology.num_replicas}: resume with the same number of processes"
            )
        unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.precision.load_state_dict(state["precision"])
        self.step, self.words_seen = state["trainer"]["step"], state["trainer"]["words_seen"]
        self.train_seconds = state["trainer"]["train_seconds"]
        self.reader.load_state_dict(state["readers"][self.topology.replica_rank])
        rng.restore(state["rng"][self.topology.replica_rank])

    def save(self) -> Path | None:
        state = self.state_dict()
        if not self.topology.is_main:
            self.checkpointer.mark_saved()
            return None
        return self.checkpointer.save(self.step, state)

    def summary(self) -> dict:
        return {
            "replicas_in_sync": replicas_agree(unwrap(self.model), self.topology),
            "steps": self.step,
            "epochs": round(self.step / len(self.reader), 4),
            "words_seen": self.words_seen,
            "train_seconds": round(self.train_seconds, 2),
            "words_per_s": round(self.words_seen / max(self.train_seconds, 1e-9), 1),
            **self.dev_figures,
        }
