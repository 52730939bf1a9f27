"""Data parallelism across replicas: DDP over the replica process group; unwrapping any wrapper."""

from __future__ import annotations

import sys

from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dist_train.distributed import Topology


def wrap_data_parallel(model: nn.Module, topology: Topology) -> nn.Module:
    """DDP when there are several replicas; the model itself otherwise.

    ``device_ids=None`` lets one replica span several devices (the paper's layout) and is what
    CPU modules need; gradients are all-reduced across replicas only.
    """
    if not topology.distributed:
        return model
    return DistributedDataParallel(model, device_ids=None, broadcast_buffers=False)


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
