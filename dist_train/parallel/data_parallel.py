"""Data parallelism across replicas: DDP over the replica process group; unwrapping any wrapper."""

from __future__ import annotations

import inspect
import sys
import time

from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel

from dist_train.distributed import Topology


def wrap_data_parallel(model: nn.Module, topology: Topology) -> nn.Module:
    """DDP when there are several replicas; the model itself otherwise.

    ``device_ids=None`` lets one replica span several devices (the paper's layout) and is what
    CPU modules need; gradients are all-reduced across replicas only.
    """
    if not topology.distributed:
        return model
    ddp = DistributedDataParallel(model, device_ids=None, **no_buffer_sync())
    ddp.allreduce_timer = AllReduceTimer()
    ddp.register_comm_hook(ddp.allreduce_timer, AllReduceTimer.hook)
    return ddp


def no_buffer_sync() -> dict:
    """DDP's option for not broadcasting buffers every forward (ours are fixed maps, equal on every replica):
    ``forward_sync_buffers=False`` where this PyTorch has it (``broadcast_buffers`` warns there as
    deprecated; both sync once at the start, which changes nothing here), else ``broadcast_buffers=False``."""
    takes = inspect.signature(DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in takes else {"broadcast_buffers": False}


class AllReduceTimer:
    """DDP's default all-reduce, each bucket timed from launch to completion (summed): the
    gradient communication's busy time, which overlaps backward."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds

    @staticmethod
    def hook(state, bucket):  # unannotated: DDP checks the annotations, and these would be strings
        """(AllReduceTimer, dist.GradBucket) → Future[Tensor], as DDP's comm hooks."""
        start = time.perf_counter()

        def done(fut):
            state.seconds += time.perf_counter() - start
            return fut.value()

        return allreduce_hook(None, bucket).then(done)


def allreduce_seconds(module: nn.Module) -> float | None:
    """The gradient all-reduce time since the last call, for a DDP-wrapped module (None otherwise)."""
    timer = getattr(module, "allreduce_timer", None)
    return timer.take() if timer is not None else None


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside any wrappers (DDP, DeepSpeed, and ours that say ``wraps_module``, such
    as the pipeline: each keeps it as ``module``)."""
    while (
        isinstance(model, DistributedDataParallel)
        or getattr(model, "wraps_module", False)
        or is_deepspeed_engine(model)
    ):
        model = model.module
    return model


def is_deepspeed_engine(module: nn.Module) -> bool:
    """Without importing DeepSpeed (slow) when nothing has."""
    engine = sys.modules.get("deepspeed.runtime.engine")
    return engine is not None and isinstance(module, engine.DeepSpeedEngine)
