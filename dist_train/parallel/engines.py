"""Who owns a replica's backward and optimizer step: torch (DDP) or DeepSpeed.

Both take the same replica (plain, placed or pipelined), the same optimizer and the same loss, so
the trainer is written once: ``engine.module(...)`` for the forward, ``engine.update(loss)`` for
everything after it (backward, all-reduce, clipping at ``max_grad_norm``, step), with
``engine.accumulate(loss)`` before it for the other batches of an update (each forward and backward
inside ``engine.batch(last)``), and
``engine.optimizer_state_dict()`` for checkpoints: the whole optimizer state, the same on every
replica, or, where ``engine.optimizer_state_sharded`` (DeepSpeed ZeRO 1/2), each replica's own part.
Gradients are averaged across replicas by either engine.

- ``ddp``: ``DistributedDataParallel(device_ids=None)`` when there are peers, the model itself
  otherwise; clipping and fp16 loss scaling are ``MixedPrecision``'s.
- ``deepspeed``: a ``DeepSpeedEngine`` configured by ``parallel.deepspeed_config`` (ZeRO 0/1/2,
  fp16/bf16 for GPUs; ``deepspeed_engine``).
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from dist_train.distributed import Topology
from dist_train.parallel.data_parallel import wrap_data_parallel
from dist_train.precision import MixedPrecision

ENGINES = ("ddp", "deepspeed")


class TorchEngine:
    optimizer_state_sharded = False

    def __init__(
        self,
        replica: nn.Module,
        topology: Topology,
        optimizer: torch.optim.Optimizer,
        precision: MixedPrecision,
        *,
        max_grad_norm: float,
    ) -> None:
        self.module, self.optimizer, self.precision = wrap_data_parallel(replica, topology), optimizer, precision
        self.max_grad_norm = max_grad_norm or math.inf
        self.applied = True  # whether the last update was applied (fp16 skips one on overflow)
        self.accumulating = False  # gradients of earlier batches of this update are waiting

    def batch(self, last: bool):
        """Around a batch's forward and backward: one that is not its update's ``last`` runs under DDP's
        ``no_sync``, which must cover the forward (DDP arms its all-reduce there), so its gradients are
        all-reduced once, with the last batch's."""
        if last or not hasattr(self.module, "no_sync"):
            return contextlib.nullcontext()
        return self.module.no_sync()

    def accumulate(self, loss: torch.Tensor) -> None:
        """Backward of a batch that is not its update's last (inside ``batch(last=False)``): its gradients
        add to the others'."""
        if not self.accumulating:
            self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward(loss)
        self.accumulating = True

    def update(self, loss: torch.Tensor) -> torch.Tensor:
        """Backward (added to what ``accumulate`` left), clip, step; the gradient norm before clipping,
        left on the device.

        Whether the norm is finite decides whether the update is applied: that read is the step's one
        host–device synchronisation, and every replica decides alike (the gradients were all-reduced).
        """
        if not self.accumulating:
            self.optimizer.zero_grad(set_to_none=True)
        self.accumulating = False
        self.precision.backward(loss)
        self.precision.unscale(self.optimizer)
        if math.isinf(self.max_grad_norm):  # nothing to clip: the norm alone (clipping would rescale by 1)
            grad_norm = nn.utils.get_total_norm([p.grad for p in self.module.parameters() if p.grad is not None])
        else:
            grad_norm = nn.utils.clip_grad_norm_(self.module.parameters(), self.max_grad_norm)
        self.applied = bool(torch.isfinite(grad_norm))  # unscaled: inf when fp16 overflowed
        if self.applied or self.precision.scaler.is_enabled():  # fp16: the scaler skips it and lowers its scale
            self.precision.step(self.optimizer)
        else:  # a NaN/inf loss or gradient: no update
            self.optimizer.zero_grad(set_to_none=True)
        return grad_norm.detach()

    def optimizer_state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def load_optimizer_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
