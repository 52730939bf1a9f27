"""One replica, built from the plain model: placed on its devices, pipelined, then data-parallel.

The order matters and is the only place it is written down: placement moves layers and splits the
softmax (``placement``), the wavefront runs the placed layers (``pipeline``), and the engine (DDP
with ``device_ids=None``, or DeepSpeed with ``dont_change_device``) wraps the whole replica, which
may span several devices (``engines``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from data_shards.checks import above, at_least
from data_shards.errors import UserError
from dist_train.distributed import DEVICE_KINDS, Topology
from dist_train.models.seq2seq import Seq2Seq
from dist_train.parallel.deepspeed_engine import DeepSpeedDataParallel
from dist_train.parallel.engines import ENGINES, TorchEngine
from dist_train.parallel.pipeline import Wavefront
from dist_train.parallel.placement import place, plan_layout

PLACEMENTS = ("none", "paper")


@dataclass(frozen=True, kw_only=True)
class ParallelConfig:
    """How replicas run and keep in step (any job; one process drives one replica)."""

    device: str = "auto"  # auto | cpu | cuda: the kind of device replicas run on (auto: CUDA when a GPU is visible)
    engine: str = "ddp"  # ddp | deepspeed: who all-reduces gradients and steps the optimizer
    collective_timeout_s: float = 600.0  # a collective not completed by then fails the job (a dead or hung peer)
    deepspeed_config: str = ""  # engine=deepspeed: a DeepSpeed JSON, e.g. cluster/deepspeed/zero2.json ("": ZeRO 0)

    def __post_init__(self) -> None:
        if self.device not in DEVICE_KINDS:
            raise ValueError(f"parallel.device must be one of {', '.join(DEVICE_KINDS)}, not {self.device!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"parallel.engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        above(self, "parallel", 0, "collective_timeout_s")
        if self.deepspeed_config and self.engine != "deepspeed":
            raise ValueError("parallel.deepspeed_config needs parallel.engine=deepspeed")

    def replica_width(self) -> int:
        """Devices per replica: one, unless a layout spreads the model (``LayoutConfig``)."""
        return 1


@dataclass(frozen=True, kw_only=True)
class LayoutConfig(ParallelConfig):
    """The s2s job's: the engine's settings, and how one replica spreads over its devices (the paper's layout)."""

    placement: str = "none"  # none: the whole model on one device; paper: layers and softmax shards spread
    devices_per_replica: int = 1
    softmax_shards: int = 4  # the paper split its softmax over 4 GPUs
    chunk_len: int = 0  # wavefront pipeline chunk in time steps; 0: no pipeline (layer after layer)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.placement not in PLACEMENTS:
            raise ValueError(f"parallel.placement must be one of {', '.join(PLACEMENTS)}, not {self.placement!r}")
        at_least(self, "parallel", 1, "devices_per_replica", "softmax_shards")
        at_least(self, "parallel", 0, "chunk_len", note="0: no wavefront")
        if self.placement == "none" and self.devices_per_replica > 1:
            raise ValueError("parallel.devices_per_replica > 1 needs parallel.placement=paper")

    def replica_width(self) -> int:
        return self.devices_per_replica


def check_replica(cfg: ParallelConfig, topology: Topology) -> None:
    """Refuse, before anything is built, a replica the engine cannot run: DeepSpeed flattens gradients by
    dtype across devices, stacks per-parameter norms that live on different devices when it clips, and
    sets the current GPU to LOCAL_RANK itself (cuda:1 where the layout says cuda:4): a replica over
    several GPUs (the paper's layout) is DDP's."""
    gpus = {d for d in topology.devices if d != "cpu"}
    if cfg.engine == "deepspeed" and len(gpus) > 1:
        raise UserError(
            cfg.deepspeed_config or None,
            f"parallel.engine=deepspeed cannot drive a replica over {len(gpus)} GPUs "
            f"(parallel.devices_per_replica={cfg.replica_width()}): use parallel.engine=ddp for the paper's "
            "layout, or devices_per_replica=1 with DeepSpeed",
        )


def build_replica(model: Seq2Seq, cfg: LayoutConfig, topology: Topology) -> nn.Module:
    """The replica the engine wraps: forward(...) → per-token losses, as ``Seq2Seq.forward``."""
    devices = [torch.device(d) for d in topology.devices]
    if len(devices) != cfg.devices_per_replica:
        raise ValueError(
            f"parallel.devices_per_replica={cfg.devices_per_replica} but the topology gives this "
            f"process {len(devices)} devices"
        )
    if cfg.placement == "paper":
        place(model, plan_layout(model.cfg.num_layers, devices, cfg.softmax_shards))
    else:
        model.to(devices[0])
    return Wavefront(model, cfg.chunk_len) if cfg.chunk_len else model


def build_engine(
    cfg: ParallelConfig,
    replica: nn.Module,
    topology: Topology,
    optimizer,
    precision,
    *,
    batch_size,
    max_grad_norm,
    grad_accum_steps=1,
):
    """``engine.module(...)`` runs the forward, ``engine.update(loss)`` the rest."""
    if cfg.engine == "deepspeed":
        check_replica(cfg, topology)
        return DeepSpeedDataParallel(
            replica,
            topology,
            optimizer,
            precision,
            config_file=cfg.deepspeed_config,
            batch_size=batch_size,
            max_grad_norm=max_grad_norm,
            grad_accum_steps=grad_accum_steps,
        )
    return TorchEngine(replica, topology, optimizer, precision, max_grad_norm=max_grad_norm)
