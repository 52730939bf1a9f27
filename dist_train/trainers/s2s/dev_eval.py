"""Dev-set perplexity during training: every replica scores its share; the sums are all-reduced."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from data_shards import ShardReader
from dist_train.distributed import Topology, all_reduce_sum
from dist_train.models.seq2seq import Seq2Seq
from dist_train.precision import MixedPrecision
from dist_train.trainers.s2s.batch import model_inputs


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    every_steps: int = 0  # dev perplexity every N steps and at the end (0: only at the end, if there is a dev set)

    def __post_init__(self) -> None:
        if self.every_steps < 0:
            raise ValueError("eval.every_steps must be >= 0")


class DevEvaluator:
    """``maybe_run(step)`` returns dev figures when due, ``final(step)`` at the end (collectives: every
    replica calls them)."""

    def __init__(
        self,
        cfg: EvalConfig,
        reader: ShardReader,
        topology: Topology,
        precision: MixedPrecision,
        vocab_sizes: tuple[int, int],
        model: Seq2Seq,
    ) -> None:
        self.cfg, self.reader, self.topology, self.precision = cfg, reader, topology, precision
        self.vocab_sizes, self.model = vocab_sizes, model

    def maybe_run(self, step: int) -> dict:
        if self.cfg.every_steps and step % self.cfg.every_steps == 0:
            return self.final(step)
        return {}

    @torch.no_grad()
    def final(self, step: int) -> dict:
        model = self.model
        was_training = model.training
        model.eval()
        nll, tokens = torch.zeros((), dtype=torch.float64, device=self.topology.device), 0
        for batch in self.reader:
            inputs = model_inputs(batch, self.vocab_sizes, self.topology.device)
            with self.precision.autocast():
                nll += model(*inputs.as_args()).sum().to(nll.device)  # summed on the device: no wait per batch
            tokens += inputs.num_targets
        model.train(was_training)
        nll, tokens = all_reduce_sum([float(nll), tokens], self.topology)
        loss = nll / max(tokens, 1)
        return {"dev_loss": round(loss, 5), "dev_ppl": round(math.exp(min(loss, 50.0)), 3)}
