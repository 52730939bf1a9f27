"""The s2s job's trainer: the paper's recipe (§3.3–3.4) on length-bucketed batches, data-parallel
across replicas, and ``build_trainer``, the one path from a resolved config to it.

The loop is the shared one (``dist_train.trainers.loop.Trainer.train``); ``train_step()`` here is one
update: forward under the chosen precision, summed token loss divided by the batch's sentence count,
gradient clipped at ``optim.max_grad_norm`` (the paper: 5), then the optimizer (``optim.name``: the
paper's plain SGD by default, Adam in the demo presets) at the schedule's learning rate.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from data_shards import ReaderConfig, ShardReader, TextBatch
from data_shards.shard_set import ShardSet
from data_shards.vocab import SPECIALS
from dist_train.checkpoint import SavedVocab
from dist_train.checkpoint.schema import plain_config, vocab_state
from dist_train.distributed import Topology
from dist_train.metrics import MetricsConfig
from dist_train.models.copying import source_to_target
from dist_train.models.seq2seq import Seq2Seq, Seq2SeqConfig
from dist_train.optim import LearningRateSchedule, OptimConfig, build_optimizer
from dist_train.parallel.data_parallel import unwrap
from dist_train.parallel.replica import LayoutConfig, build_engine, build_replica
from dist_train.precision import MixedPrecision
from dist_train.profiling import ProfileConfig
from dist_train.trainers.loop import Trainer, replica_reader
from dist_train.trainers.meters import agree, mean_over_replicas
from dist_train.trainers.s2s.batch import model_inputs
from dist_train.trainers.s2s.dev_eval import DevEvaluator, EvalConfig
from dist_train.trainers.train_config import TrainConfig


@dataclass(frozen=True, kw_only=True)
class VocabConfig:
    """Train on the N most frequent entries of the data's vocabularies (0: all); the rest → <unk>."""

    src_vocab_size: int = 0
    tgt_vocab_size: int = 0

    def __post_init__(self) -> None:
        for name in ("src_vocab_size", "tgt_vocab_size"):
            if 0 < getattr(self, name) <= len(SPECIALS) or getattr(self, name) < 0:
                raise ValueError(
                    f"vocab.{name}={getattr(self, name)}: must be 0 (the whole vocabulary) or more than the "
                    f"{len(SPECIALS)} special tokens ({', '.join(SPECIALS)}), or nothing but them is left"
                )


@dataclass(frozen=True, kw_only=True)
class S2SConfig:
    model: Seq2SeqConfig = field(default_factory=Seq2SeqConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: ReaderConfig = field(default_factory=ReaderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    parallel: LayoutConfig = field(default_factory=LayoutConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)


def vocab_sizes(cfg: VocabConfig, manifest: dict) -> tuple[int, int]:
    src, tgt = manifest["vocab"]["src"]["size"], manifest["vocab"]["tgt"]["size"]
    return (min(src, cfg.src_vocab_size or src), min(tgt, cfg.tgt_vocab_size or tgt))


@dataclass
class StepResult:
    """One step's figures; the loss and the norm stay on the device until a logging interval reads them."""

    loss_sum: torch.Tensor  # summed token cross-entropy (nats), on the device
    target_tokens: int  # predicted tokens, EOS included
    source_words: int  # EOS included
    sentences: int
    grad_norm: torch.Tensor  # on the device
    lr: float
    applied: bool  # False when the update was skipped (non-finite gradients, fp16 overflow)

    @property
    def words(self) -> int:
        """Source + target words incl. EOS: the paper's words/s count."""
        return self.source_words + self.target_tokens

    def summed(self) -> dict[str, float]:
        return {"loss_sum": self.loss_sum, "target_tokens": self.target_tokens, "words": self.words}

    def values(self) -> dict[str, float]:
        return {
            "source_words": self.source_words,
            "target_words": self.target_tokens,
            "samples": self.sentences,
            "skipped_steps": int(not self.applied),
            "learning_rate": self.lr,
        }


def saved_vocab(shards: ShardSet, sizes: tuple[int, int]) -> SavedVocab:
    """What decoding needs, stored in every checkpoint so that one file is enough to translate."""
    tokens = {side: shards.vocab(side, size).tokens for side, size in zip(("src", "tgt"), sizes)}
    tokenizer = shards.manifest["tokenizer"]
    spm = {side: torch.frombuffer(bytearray(shards.read(name)), dtype=torch.uint8)
           for side, name in tokenizer.get("models", {}).items()}  # fmt: skip
    return SavedVocab(tokens=tokens, tokenizer=tokenizer, spm_models=spm)


class S2STrainer(Trainer):
    job = "s2s"
    unit = "words"  # source + target words incl. </s>: the paper's count
    shown = {"words_per_s": "{:,.0f}", "loss": "{:.3f}", "lr": "{:.3g}", "dev_ppl": "{:.1f}"}

    def __init__(
        self,
        cfg: S2SConfig,
        topology: Topology,
        reader: ShardReader,
        run_dir: Path,
        dev_reader: ShardReader | None = None,
    ) -> None:
        super().__init__(cfg.train, topology, reader, run_dir)
        self.cfg = cfg
        self.src_vocab_size, self.tgt_vocab_size = vocab_sizes(cfg.vocab, reader.shards.manifest)
        self.vocab = saved_vocab(reader.shards, (self.src_vocab_size, self.tgt_vocab_size))
        replica = build_replica(self.build_model(), cfg.parallel, topology)
        self.optimizer = build_optimizer(cfg.optim, replica.parameters())
        self.schedule = LearningRateSchedule(
            cfg.optim, steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps
        )
        self.precision = MixedPrecision(cfg.train.precision, topology.device, cfg.train.lstm_precision)
        self.engine = build_engine(
            cfg.parallel,
            replica,
            topology,
            self.optimizer,
            self.precision,
            batch_size=cfg.data.batch_size,
            max_grad_norm=cfg.optim.max_grad_norm,
            grad_accum_steps=self.batches_per_update,
        )
        self.model = self.engine.module
        if dev_reader is not None:
            sizes = (self.src_vocab_size, self.tgt_vocab_size)
            self.evaluator = DevEvaluator(cfg.eval, dev_reader, topology, self.precision, sizes, unwrap(self.model))

    def build_model(self) -> Seq2Seq:
        cfg, sizes = self.cfg, (self.src_vocab_size, self.tgt_vocab_size)
        model = Seq2Seq(cfg.model, src_vocab_size=sizes[0], tgt_vocab_size=sizes[1])
        if cfg.model.copy:
            shards = self.reader.shards
            src, tgt = shards.vocab("src", sizes[0]), shards.vocab("tgt", sizes[1])
            model.source_to_target.copy_(source_to_target(src.tokens, tgt.tokens))
        return model

    # --- the step ---------------------------------------------------------------------------

    @property
    def horizon(self) -> int:
        return self.schedule.horizon

    def train_step(self, batches: list[TextBatch]) -> StepResult:
        """One update from ``batches`` (``train.grad_accum_steps`` of them): their gradients add up as one
        batch of all their sentences would give them."""
        lr = self.schedule.apply(self.optimizer, self.step)
        sentences = self.sentences_per_replica(batches)
        loss_sum, target_tokens, source_words = 0.0, 0, 0
        for i, batch in enumerate(batches):
            inputs = model_inputs(batch, (self.src_vocab_size, self.tgt_vocab_size), self.topology.device)
            self.micro_batch_rng.seed_batch(self.step + 1, i)
            last = i == len(batches) - 1
            with self.engine.batch(last):
                with self.precision.autocast():
                    batch_loss = self.model(*inputs.as_args()).sum()  # nats over every target token, </s> included
                # the paper divides the gradient by the batch size, then clips it at norm 5
                if last:
                    grad_norm = self.engine.update(batch_loss / sentences)
                else:
                    self.engine.accumulate(batch_loss / sentences)
            loss_sum = loss_sum + batch_loss.detach()
            target_tokens += inputs.num_targets
            source_words += int(inputs.src_lengths.sum())  # on the host
        return StepResult(
            loss_sum=loss_sum,
            target_tokens=target_tokens,
            source_words=source_words,
            sentences=sum(len(batch) for batch in batches),
            grad_norm=grad_norm,
            lr=lr,
            applied=self.engine.applied,
        )

    def sentences_per_replica(self, batches: list[TextBatch]) -> float:
        """What the update's summed loss is divided by: this replica's sentences; with ``data.micro_batches``,
        the update's sentences over the replicas, the same for any replica count (DDP averages the rest)."""
        if batches[0].update_samples:
            return batches[0].update_samples / self.topology.num_replicas
        return sum(len(batch) for batch in batches)

    def before_log(self) -> None:
        """With a time budget, the learning rate's decay starts when its share of the budget is left
        and ends with the budget: the run stops at a low learning rate, wherever that falls."""
        fraction, deadline = self.cfg.optim.decay_fraction, self.deadline
        if not (fraction and deadline.max_seconds) or self.schedule.decaying(self.step):
            return
        if agree([deadline.fraction_spent() >= 1.0 - fraction], self.topology)[0]:
            affordable = mean_over_replicas(deadline.steps_affordable(self.step), self.topology)
            self.schedule.begin_decay(self.step, affordable)

    def interval_figures(self, totals: dict[str, float], seconds: float, last: StepResult) -> dict:
        loss = totals["loss_sum"] / max(totals["target_tokens"], 1)
        return {
            "epoch": round(self.step / self.steps_per_epoch, 4),
            "loss": round(loss, 5),
            "ppl": round(math.exp(min(loss, 50.0)), 3),
            "lr": last.lr,
            "grad_norm": round(float(last.grad_norm), 4),
            "words_per_s": round(totals["words"] / seconds, 1),
            "planned_steps": self.schedule.horizon,
        }

    # --- state ------------------------------------------------------------------------------

    def about(self) -> str:
        return f"vocab {self.src_vocab_size}/{self.tgt_vocab_size}"

    def inference_state(self) -> dict:
        return {
            "config": plain_config(self.cfg),
            "data": str(self.reader.shards.location),
            "vocab": vocab_state(self.vocab),
        }

    def modules(self) -> dict:
        return {"model": unwrap(self.model)}

    def resumables(self) -> dict:
        return {"schedule": self.schedule, "precision": self.precision}

    def engines(self) -> dict:
        return {"model": self.engine}


def build_trainer(cfg: S2SConfig, topology: Topology, run_dir: Path, data: Path, dev: Path | None = None) -> S2STrainer:
    """This replica's s2s trainer on its share of the sentence-pair shards in ``data``, with dev perplexity
    on ``dev`` (sharded with the training vocabularies); every input checked before anything is built."""
    reader = replica_reader(data, cfg.data, topology)
    reader.shards.expect("text-pairs", "the s2s job's --data")
    dev_reader = None
    if dev is not None:
        dev_reader = replica_reader(dev, dataclasses.replace(cfg.data, shuffle=False, num_workers=0), topology)
        dev_reader.shards.expect("text-pairs", "the s2s job's --dev")
        dev_reader.shards.expect_same_vocabulary(reader.shards, "the dev perplexity")
    return S2STrainer(cfg, topology, reader, run_dir, dev_reader)
