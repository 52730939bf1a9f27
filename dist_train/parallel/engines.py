"""Who owns a replica's backward and optimizer step: torch (DDP) or DeepSpeed.

Both take the same replica (plain, placed or pipelined), the same optimizer and the same loss, so
the trainer is written once: ``engine.module(...)`` for the forward, ``engine.update(loss)`` for
everything after it (backward, all-reduce, clipping at ``max_grad_norm``, step). Gradients are
averaged across replicas by either engine.

- ``ddp``: ``DistributedDataParallel(device_ids=None)`` when there are peers, the model itself
  otherwise; clipping and fp16 loss scaling are ``MixedPrecision``'s.
- ``deepspeed``: a ``DeepSpeedEngine`` built with ``dont_change_device=True`` (a multi-device replica
  must stay where the placement put it), ZeRO stage 0, DeepSpeed's own gradient clipping; our
  optimizer and learning-rate schedule stay in charge. fp32 and bf16 (our autocast around the
  forward, fp32 master weights); fp16 needs DeepSpeed's own loss scaler and is refused.
"""

from __future__ import annotations

import math
import os
import socket

import torch
from torch import nn

from dist_train.distributed import Topology
from dist_train.parallel.data_parallel import wrap_data_parallel
from dist_train.precision import MixedPrecision

ENGINES = ("ddp", "deepspeed")


class TorchEngine:
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

    def update(self, loss: torch.Tensor) -> float:
        """Backward, clip, step; the gradient norm before clipping."""
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward(loss)
        self.precision.unscale(self.optimizer)
        grad_norm = nn.utils.clip_grad_norm_(self.module.parameters(), self.max_grad_norm)
        self.precision.step(self.optimizer)
        return float(grad_norm)


class DeepSpeedDataParallel:
    def __init__(
        self,
        replica: nn.Module,
        topology: Topology,
        optimizer: torch.optim.Optimizer,
        precision: MixedPrecision,
        *,
        batch_size: int,
        max_grad_norm: float,
    ) -> None:
        if precision.precision == "fp16":
            raise ValueError("parallel.engine=deepspeed takes precision fp32 or bf16 (fp16: use engine=ddp)")
        deepspeed = _import_deepspeed()
        _join(deepspeed, topology)
        from deepspeed.runtime.config import DeepSpeedConfig
        from deepspeed.runtime.engine import DeepSpeedEngine

        config = {
            "train_micro_batch_size_per_gpu": batch_size,
            "gradient_accumulation_steps": 1,
            "train_batch_size": batch_size * topology.num_replicas,
            "gradient_clipping": max_grad_norm,
            "zero_optimization": {"stage": 0},
            "steps_per_print": 2**62,
        }
        self.module = DeepSpeedEngine(
            args=None,
            model=replica,
            optimizer=optimizer,
            config=config,
            config_class=DeepSpeedConfig(config),
            dont_change_device=True,
        )  # ZeRO 0 in fp32 steps our optimizer itself, so the schedule and checkpoints still see it

    def update(self, loss: torch.Tensor) -> float:
        self.module.backward(loss)  # and the all-reduce across replicas
        grad_norm = nn.utils.clip_grad_norm_(self.module.parameters(), math.inf)  # measures, clips nothing
        self.module.step()  # clip at gradient_clipping, step, zero the gradients
        return float(grad_norm)


def _import_deepspeed():
    """DeepSpeed without its shared-memory CPU collective: it is JIT-compiled on first use (~30 s)
    and gloo is what it would fall back to anyway."""
    import deepspeed
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    return deepspeed


def _join(deepspeed, topology: Topology) -> None:
    """DeepSpeed's communication layer over our process group (or a 1-process one of its own)."""
    if torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend=topology.backend, auto_mpi_discovery=False)
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_WORLD_SIZE", "1")):
        os.environ.setdefault(name, value)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(port))
    deepspeed.init_distributed(dist_backend=topology.backend, auto_mpi_discovery=False)
