"""The encoder's LSTM passes over a length-sorted batch, in windows of time steps, and the states
they hand on: each window runs in segments between the distinct lengths inside it (one fused LSTM
call each), takes every sentence's final state where it ends, and gives back outputs, running
state and finals for the decoder and attention. ``dist_train.models.seq2seq`` runs one window per
layer; ``dist_train.parallel.pipeline`` runs many, in wave order."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from dist_train.models.numerics import recurrence_dtype

LayerState = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (1, batch, hidden), on the layer's device
State = list[LayerState]  # one per layer, bottom first


def select_rows(state: State, rows: torch.Tensor) -> State:
    return [(h[:, rows.to(h.device, non_blocking=True)], c[:, rows.to(c.device, non_blocking=True)]) for h, c in state]


@dataclass(frozen=True)
class Memory:
    """What attention reads: the top encoder layer's outputs and where they are real tokens."""

    outputs: torch.Tensor  # (batch, src_time, hidden), zero at padding
    mask: torch.Tensor  # (batch, src_time), true at real tokens
    copy_ids: torch.Tensor | None = None  # (batch, src_time): each position's token as a target id (copy only)

    def repeat_interleave(self, times: int) -> Memory:
        fields = (self.outputs, self.mask, self.copy_ids)
        return Memory(*(None if x is None else x.repeat_interleave(times, dim=0) for x in fields))


def run_lstm(lstm: nn.LSTM, inputs: torch.Tensor, state: LayerState | None = None):
    """``lstm(inputs, state)`` on the layer's own device, in the precision ``recurrence_dtype`` names.

    Inside autocast the inputs, the state and the weights are cast here and the recurrence runs
    with autocast off: autocast's own RNN path would pick fp16 on CUDA whatever its dtype, and hand
    oneDNN on CPU arguments of mixed dtypes it rejects.
    """
    device = lstm.weight_hh_l0.device
    inputs = inputs.to(device, non_blocking=True)
    if state is not None:
        state = (state[0].to(device, non_blocking=True), state[1].to(device, non_blocking=True))
    dtype = recurrence_dtype(device)
    if dtype is None:
        return lstm(inputs, state)
    with torch.autocast(device.type, enabled=False):
        state = None if state is None else (state[0].to(dtype), state[1].to(dtype))
        if dtype == lstm.weight_hh_l0.dtype:
            return lstm(inputs.to(dtype), state)
        weights = {name: weight.to(dtype) for name, weight in lstm.named_parameters()}
        return functional_call(lstm, weights, (inputs.to(dtype), state))


@dataclass
class Window:
    """One LSTM layer's pass over time steps ``[start, start + T)`` of a batch sorted longest first."""

    outputs: torch.Tensor  # (rows running at start, T, hidden), zero after each row's end
    state: LayerState | None  # of the rows still running after the window (None: none are)
    finals: list[LayerState]  # final states of the rows ending inside it, later-ending (lower) rows last


def run_window(
    lstm: nn.LSTM, inputs: torch.Tensor, state: LayerState | None, lengths: torch.Tensor, start: int
) -> Window:
    """``inputs`` (rows running at ``start``, T, features) with their ``state`` at ``start``.

    ``lengths`` (CPU, sorted descending) are the whole batch's. The window runs in segments between
    the distinct lengths inside it: each is one plain (fused, fast) LSTM call over the rows still
    running, and a row's final state is taken where it ends. Exactly what packing computes, without
    the packed path's per-step fallback on CPU.
    """
    running, end = inputs.shape[0], start + inputs.shape[1]
    lengths = lengths[:running]
    bounds = sorted({int(n) for n in lengths.tolist() if start < n < end} | {end})
    outputs, finals, t = [], [], start
    for bound in bounds:
        rows = int((lengths >= bound).sum())  # running through [t, bound): no length lies inside
        if state is not None:
            state = (state[0][:, :rows], state[1][:, :rows])
        segment, state = run_lstm(lstm, inputs[:rows, t - start : bound - start], state)
        outputs.append(F.pad(segment, (0, 0, 0, 0, 0, running - rows)))
        still = int((lengths > bound).sum())
        if still < rows:
            finals.append((state[0][:, still:rows], state[1][:, still:rows]))
        state = (state[0][:, :still], state[1][:, :still]) if still else None
        t = bound
    return Window(torch.cat(outputs, dim=1), state, finals)


def inverse(order: torch.Tensor) -> torch.Tensor:
    restore = torch.empty_like(order)
    restore[order] = torch.arange(len(order))
    return restore


def unsort_state(finals: list[LayerState], restore: torch.Tensor) -> LayerState:
    """A layer's final states, collected window by window from a length-sorted batch (rows ending
    later last), in the batch's own order."""
    h = torch.cat([h for h, _ in finals[::-1]], dim=1)
    c = torch.cat([c for _, c in finals[::-1]], dim=1)
    return h[:, restore.to(h.device, non_blocking=True)], c[:, restore.to(c.device, non_blocking=True)]


def unsort_memory(
    top: torch.Tensor, restore: torch.Tensor, sorted_lengths: torch.Tensor, copy_ids: torch.Tensor | None = None
) -> Memory:
    """The top encoder layer's outputs of a length-sorted batch, as attention's memory in the batch's order."""
    mask = torch.arange(top.shape[1]) < sorted_lengths[restore].unsqueeze(1)
    if copy_ids is not None:
        copy_ids = copy_ids[:, : top.shape[1]].to(top.device)
    return Memory(top[restore.to(top.device, non_blocking=True)], mask.to(top.device, non_blocking=True), copy_ids)
