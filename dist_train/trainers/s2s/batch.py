"""A text batch turned into the seq2seq model's inputs: the one place training and evaluation share.

Everything is built on the host, from the batch as the reader gives it, and then moved to the device
without blocking: masks become index tensors there, and the lengths stay on the CPU, where the model
sorts by them, so no step ever waits on the device to learn a shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from data_shards import TextBatch
from data_shards.vocab import PAD_ID, clamp_vocab
from dist_train.models.seq2seq import teacher_forcing


@dataclass
class ModelInputs:
    src_tokens: torch.Tensor  # (batch, src_len) on the device, ids past the kept vocabulary → <unk>
    src_lengths: torch.Tensor  # (batch,) on the CPU
    decoder_in: torch.Tensor  # (batch, tgt_len + 1) on the device: <s> y1..yn
    targets: torch.Tensor  # (tokens,) on the device: the real target tokens y1..yn </s>, flattened
    target_positions: torch.Tensor  # (tokens,) on the device: each target's index in the flattened (batch, time)

    @property
    def num_targets(self) -> int:
        return len(self.targets)

    def as_args(self) -> tuple[torch.Tensor, ...]:
        """The model's forward arguments: it returns the targets' per-token losses."""
        return self.src_tokens, self.src_lengths, self.decoder_in, self.target_positions, self.targets


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on ``device`` without blocking the host: pinned first when the copy goes to a GPU
    (a copy from pageable memory is staged synchronously)."""
    if device.type == "cuda" and not tensor.is_pinned():
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def model_inputs(batch: TextBatch, vocab_sizes: tuple[int, int], device: torch.device) -> ModelInputs:
    src_tokens, src_lengths = batch.src_tokens.cpu(), batch.src_lengths.cpu()
    tgt_tokens, tgt_lengths = batch.tgt_tokens.cpu(), batch.tgt_lengths.cpu()
    decoder_in, targets = teacher_forcing(clamp_vocab(tgt_tokens, vocab_sizes[1]), tgt_lengths)
    positions = (targets != PAD_ID).flatten().nonzero().squeeze(1)  # on the host: no device round trip
    return ModelInputs(
        src_tokens=to_device(clamp_vocab(src_tokens, vocab_sizes[0]), device),
        src_lengths=src_lengths,
        decoder_in=to_device(decoder_in, device),
        targets=to_device(targets.flatten()[positions], device),
        target_positions=to_device(positions, device),
    )
