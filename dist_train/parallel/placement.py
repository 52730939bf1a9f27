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
from torch import nn

from dist_train.models.seq2seq import Seq2Seq
from dist_train.parallel.vocab_parallel import VocabParallelOutput


@dataclass(frozen=True)
class Layout:
    layers: list[torch.device]  # layer i of the encoder and of the decoder
    softmax: list[torch.device]  # one per vocabulary shard


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
    """Move every parameter and buffer of the model onto the layout's devices (in place) and split its
    softmax. Attention, the copy gate and the copy map go with the top layer, where the decoder's
    output is read, so a forward never moves them."""
    first, top = layout.layers[0], layout.layers[-1]
    model.src_embed.to(first)
    model.tgt_embed.to(first)
    for i, device in enumerate(layout.layers):
        model.encoder[i].to(device)
        model.decoder[i].to(device)
    for part in ("attention_score", "attention_combine", "copy_gate"):
        if hasattr(model, part):
            getattr(model, part).to(top)
    if hasattr(model, "source_to_target"):
        model.source_to_target = model.source_to_target.to(top)
    if len(layout.softmax) > 1:
        model.output = VocabParallelOutput(model.output, layout.softmax)
    else:
        model.output.to(layout.softmax[0])
    if stray := left_behind(model, layout):
        raise ValueError(f"placement left {', '.join(stray)} off the layout's devices: place() must name every part")
    return model


def left_behind(model: nn.Module, layout: Layout) -> list[str]:
    """Parameters and buffers on no device of the layout (a part that ``place`` does not know)."""
    devices = {torch.device(d) for d in [*layout.layers, *layout.softmax]}
    tensors = [*model.named_parameters(), *model.named_buffers()]
    return [f"{name} ({tensor.device})" for name, tensor in tensors if tensor.device not in devices]
