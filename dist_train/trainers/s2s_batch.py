"""A text batch turned into the seq2seq model's inputs: the one place training and evaluation share."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from data_shards import TextBatch
from data_shards.vocab import PAD_ID, clamp_vocab
from dist_train.models.seq2seq import teacher_forcing


@dataclass
class ModelInputs:
    src_tokens: torch.Tensor  # (batch, src_len), ids past the kept vocabulary → <unk>
    src_lengths: torch.Tensor  # (batch,)
    decoder_in: torch.Tensor  # (batch, tgt_len + 1): <s> y1..yn
    targets: torch.Tensor  # (tokens,): the real target tokens y1..yn </s>, flattened
    target_mask: torch.Tensor  # (batch, tgt_len + 1): where the targets are

    @property
    def num_targets(self) -> int:
        return len(self.targets)

    def as_args(self) -> tuple[torch.Tensor, ...]:
        """The model's forward arguments: it returns the targets' per-token losses."""
        return self.src_tokens, self.src_lengths, self.decoder_in, self.target_mask, self.targets


def model_inputs(batch: TextBatch, vocab_sizes: tuple[int, int], device: torch.device) -> ModelInputs:
    batch = batch.to(device)
    decoder_in, targets = teacher_forcing(clamp_vocab(batch.tgt_tokens, vocab_sizes[1]), batch.tgt_lengths)
    mask = targets != PAD_ID
    return ModelInputs(
        src_tokens=clamp_vocab(batch.src_tokens, vocab_sizes[0]),
        src_lengths=batch.src_lengths,
        decoder_in=decoder_in,
        targets=targets[mask],
        target_mask=mask,
    )
