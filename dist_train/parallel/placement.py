"""Which device holds which part of a replica: the paper's 8-GPU layout, or one packed onto fewer.

``paper`` with 8 devices and 4 layers: encoder and decoder layer i on device i (i < 4), the output
softmax split by vocabulary over devices 4–7. With fewer devices the layers are packed in order
(layer i on device ⌊i·D/L⌋) and the softmax shards go round-robin over every device. The
embeddings sit with the first layer, attention with the top one. On CPU every device is ``cpu``,
so the same code runs in tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dist_train.models.seq2seq import Seq2Seq
from dist_train.parallel.vocab_parallel import VocabParallelOutput


@dataclass(frozen=True)
class Layout:
    layers: list[torch.device]  # layer i of the encoder and of the decoder
    softmax: list[torch.device]  # one per vocabulary shard

    def describe(self) -> str:
        layers = " ".join(f"L{i}:{d}" for i, d in enumerate(self.layers))
        return f"layers {layers}; softmax shards on {', '.join(map(str, self.softmax))}"


def plan_layout(num_layers: int, devices: list[torch.device], softmax_shards: int) -> Layout:
    count = len(devices)
    if count > num_layers:  # the paper: a device per layer, the rest share the softmax
        layers = devices[:num_layers]
        spare = devices[num_layers:]
    else:
        layers = [devices[i * count // num_layers] for i in range(num_layers)]
        spare = devices
    return Layout(layers, [spare[s % len(spare)] for s in range(softmax_shards)])


def place(model: Seq2Seq, layout: Layout) -> Seq2Seq:
    """Move the model's parts onto the layout's devices (in place) and split its softmax."""
    first, top = layout.layers[0], layout.layers[-1]
    model.src_embed.to(first)
    model.tgt_embed.to(first)
    for i, device in enumerate(layout.layers):
        model.encoder[i].to(device)
        model.decoder[i].to(device)
    if model.cfg.attention:
        model.attention_score.to(top)
        model.attention_combine.to(top)
    if len(layout.softmax) > 1:
        model.output = VocabParallelOutput(model.output, layout.softmax)
    else:
        model.output.to(layout.softmax[0])
    return model
