"""The wavefront pipeline: deep LSTM layers on their own devices, working at once on different times.

The time axis (the source, then the target) is cut into chunks of ``chunk_len`` steps. At wave w,
layer l computes chunk w − l on its own device, continuing from its (h, c) carried from chunk
w − l − 1, with the fused LSTM kernel over the chunk; its output moves to layer l + 1's device
without blocking. The decoder's layer l continues from the encoder's layer l on the same device
(the first decoder chunk of layer l comes right after its last encoder chunk). Every layer call is
issued in wave order from one Python thread, so with one device per layer the devices overlap:
while layer 1 computes chunk 0, layer 0 already computes chunk 1. Within a wave the layers are
issued top-down: layer l + 1 takes (copies) chunk j from layer l's device before layer l is given
chunk j + 1, so the copy is not queued behind the producer's next chunk on its stream. Nothing in
the wave loop waits for a device: the lengths that cut the windows are on the host. Backward overlaps the same way
through autograd's per-device worker threads (each device's backward work runs on its own thread
as soon as its gradients arrive).

With C chunks over the source and target and L layers, the pipeline runs C + L − 1 waves, of
which each layer idles in L − 1: a bubble fraction of (L − 1) / (C + L − 1). Shorter chunks mean
more chunks and a smaller bubble but smaller kernels (a chunk of T steps is one input matmul of
batch·T rows and T recurrent steps); ``chunk_len`` trades the two. The paper's 4 layers with
sentences of ~30 + 30 tokens: chunk_len 8 gives C = 8 and a bubble of 3/11 ≈ 27%; 4 gives 16
chunks and 3/19 ≈ 16%.

The softmax and loss of each decoder chunk are issued as soon as the top layer has produced it, so
the softmax devices (4–7 in the paper's layout) work while the layers run the rest of the wavefront
rather than after it. Expected idle fractions of the forward, with S source and T target chunks
(C = S + T): a layer device idles (L − 1)/(C + L − 1); the softmax devices have work only in the last
T waves, idling (S + L − 1)/(C + L − 1) (7/11 for 30 + 30 tokens at chunk_len 8), but per target token
each of the 4 softmax shards of the paper's 80k vocabulary does 2·1000·20k = 40 MFLOP against a layer's
16 MFLOP, so in those waves they, not the layers, set the pace. Measured figures wait for a GPU.

The arithmetic is the plain model's (``Seq2Seq.encode``/``decode``): the same layer windows, cut
at chunk boundaries as well as at sentence ends, so losses and gradients match it to fp32 rounding.
Dropout draws its masks per chunk, so with dropout the two agree in distribution only.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from data_shards.vocab import PAD_ID
from dist_train.models.lstm_windows import Memory, inverse, run_lstm, run_window, unsort_state
from dist_train.models.seq2seq import Seq2Seq


def bubble_fraction(num_chunks: int, num_layers: int) -> float:
    return (num_layers - 1) / (num_chunks + num_layers - 1)


class BusyClock:
    """Forward time each layer's device spends in its layer calls: CUDA events on a GPU (so the
    devices' overlap is not counted as busy), wall time on CPU. And the chunks of each step."""

    def __init__(self) -> None:
        self.cpu_seconds: dict[str, float] = defaultdict(float)
        self.events: dict[str, list] = defaultdict(list)
        self.chunks: list[int] = []

    @contextmanager
    def busy(self, name: str, device: torch.device):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(torch.cuda.current_stream(device))
            yield
            end.record(torch.cuda.current_stream(device))
            self.events[name].append((start, end))
        else:
            started = time.perf_counter()
            yield
            self.cpu_seconds[name] += time.perf_counter() - started

    def seconds(self) -> dict[str, float]:
        totals = dict(self.cpu_seconds)
        for name, pairs in self.events.items():
            torch.cuda.synchronize()
            totals[name] = totals.get(name, 0.0) + sum(s.elapsed_time(e) for s, e in pairs) / 1000
        return totals


class Wavefront(nn.Module):
    """A (placed) ``Seq2Seq`` whose training forward runs as a wavefront; ``module`` is the model."""

    wraps_module = True  # ``unwrap`` peels it

    def __init__(self, model: Seq2Seq, chunk_len: int) -> None:
        super().__init__()
        if chunk_len < 1:
            raise ValueError("the wavefront pipeline needs chunk_len >= 1")
        self.module, self.chunk_len = model, chunk_len
        self.clock: BusyClock | None = None  # set one to measure (bench s2s)

    def forward(self, src_tokens, src_lengths, decoder_in, target_positions, targets) -> torch.Tensor:
        """As ``Seq2Seq.forward``: the real targets' per-token cross-entropy (tokens,).

        Each decoder chunk's softmax and loss are issued as soon as the top layer has produced that chunk,
        over every position of the chunk (zero at padding), so the softmax's devices work while the
        layers still run the rest of the wavefront; the real targets' losses are picked at the end.
        """
        model = self.module
        batch, time = decoder_in.shape
        grid = torch.full((batch * time,), PAD_ID, dtype=targets.dtype, device=targets.device)
        grid = grid.index_put((target_positions.to(grid.device),), targets).view(batch, time)  # PAD where none
        chunks = []

        def score(hidden: torch.Tensor, start: int, memory: Memory | None) -> None:
            chunk_targets = grid[:, start : start + hidden.shape[1]].flatten()
            losses = model.target_losses(model.readout(hidden, memory), None, chunk_targets)
            chunks.append(losses.view(batch, -1))

        self.run(src_tokens, src_lengths, decoder_in, score)
        losses = torch.cat([x.to(chunks[0].device, non_blocking=True) for x in chunks], dim=1).flatten()
        return losses[target_positions.to(losses.device, non_blocking=True)]

    def run(self, src_tokens, src_lengths, decoder_in, score: Callable[[torch.Tensor, int, Memory | None], None]):
        """The wavefront over the source, then the decoder inputs; ``score(hidden, start, memory)`` gets each
        top-layer decoder chunk (batch, T, hidden) that starts at decoder step ``start`` as soon as it is
        issued, with attention's memory (None without attention)."""
        model, size = self.module, self.chunk_len
        lengths = src_lengths.cpu()
        order = torch.argsort(lengths, descending=True, stable=True)
        restore, lengths = inverse(order), lengths[order]  # the encoder works longest first
        source = model.embed_source(src_tokens, src_lengths)
        source = source[order.to(source.device, non_blocking=True)]
        target = model.tgt_embed(decoder_in.to(model.tgt_embed.weight.device, non_blocking=True))
        num_source = math.ceil(source.shape[1] / size)
        num_layers, num_chunks = model.cfg.num_layers, num_source + math.ceil(target.shape[1] / size)
        # chunk inputs per layer: inputs[l][j] feeds layer l at chunk j; inputs[L] are the top's outputs
        inputs: list[list[torch.Tensor | None]] = [[None] * num_chunks for _ in range(num_layers + 1)]
        for j in range(num_source):
            start = j * size
            inputs[0][j] = source[: int((lengths > start).sum()), start : start + size]
        for j in range(num_chunks - num_source):
            inputs[0][num_source + j] = target[:, j * size : (j + 1) * size]
        states, finals, memory = [None] * num_layers, [[] for _ in range(num_layers)], None
        top_layer = num_layers - 1
        for wave in range(num_chunks + num_layers - 1):
            for layer in reversed(range(num_layers)):  # top-down: see the module's docstring
                j = wave - layer
                if not 0 <= j < num_chunks:
                    continue
                with self._busy(layer):
                    if j < num_source:
                        encoder = model.encoder[layer]
                        window = run_window(encoder, inputs[layer][j], states[layer], lengths, j * size)
                        states[layer], out = window.state, window.outputs
                        finals[layer].extend(window.finals)
                    else:
                        if j == num_source:  # this layer's encoder is done: its decoder starts from it
                            states[layer] = unsort_state(finals[layer], restore)
                        out, states[layer] = run_lstm(model.decoder[layer], inputs[layer][j], states[layer])
                inputs[layer + 1][j] = model.between_layers(out, layer)
                if layer == top_layer and j >= num_source:
                    if j == num_source and model.cfg.attention:  # the encoder's top outputs are all there
                        memory = self.memory(inputs[num_layers][:num_source], restore, lengths, src_tokens, src_lengths)
                    score(inputs[num_layers][j], (j - num_source) * size, memory)
        if self.clock is not None:
            self.clock.chunks.append(num_chunks)

    def memory(self, top_chunks, restore, lengths, src_tokens, src_lengths) -> Memory:
        """Attention's memory from the top encoder layer's chunks (each of the rows still running)."""
        batch = len(restore)
        top = torch.cat([F.pad(x, (0, 0, 0, 0, 0, batch - x.shape[0])) for x in top_chunks], 1)
        return self.module.memory(top, restore, lengths, src_tokens, src_lengths)

    def _busy(self, layer: int):
        if self.clock is None:
            return contextlib.nullcontext()
        return self.clock.busy(f"layer_{layer}", self.module.encoder[layer].weight_hh_l0.device)
