"""The one place that knows the launch environment and owns the process groups.

Reads torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK) or,
inside a Slurm step without torchrun, SLURM_PROCID & co; everything else receives the
``Topology`` this module returns. One process drives one replica (DESIGN.md §3).
"""

from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from data_shards.errors import DataError


@dataclass(frozen=True, kw_only=True)
class Topology:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    node_rank: int = 0
    num_nodes: int = 1
    backend: str = "gloo"
    node_name: str = field(default_factory=socket.gethostname)
    devices: tuple[str, ...] = ("cpu",)

    @property
    def replica_rank(self) -> int:
        return self.rank

    @property
    def num_replicas(self) -> int:
        return self.world_size

    @property
    def is_main(self) -> bool:
        """The process that prints progress and writes shared files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def device(self) -> torch.device:
        """The replica's first device (inputs go there)."""
        return torch.device(self.devices[0])


def _env_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        if name in os.environ:
            return int(os.environ[name])
    return default


def replica_devices(local_rank: int, devices_per_replica: int) -> tuple[str, ...]:
    if not torch.cuda.is_available():
        return ("cpu",) * devices_per_replica
    first = local_rank * devices_per_replica
    if first + devices_per_replica > torch.cuda.device_count():
        raise DataError(
            None,
            f"local rank {local_rank} needs GPUs {first}..{first + devices_per_replica - 1}, "
            f"but {torch.cuda.device_count()} are visible: lower --nproc_per_node or devices_per_replica",
        )
    return tuple(f"cuda:{first + i}" for i in range(devices_per_replica))


def init_distributed(*, devices_per_replica: int = 1, timeout_s: float = 600.0) -> Topology:
    """Build the topology from the environment and join the process group when there are peers."""
    world_size = _env_int(("WORLD_SIZE", "SLURM_NTASKS"), 1)
    rank = _env_int(("RANK", "SLURM_PROCID"), 0)
    local_rank = _env_int(("LOCAL_RANK", "SLURM_LOCALID"), 0)
    local_world_size = _env_int(("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"), 1 if world_size == 1 else world_size)
    node_rank = _env_int(("GROUP_RANK", "SLURM_NODEID"), 0)
    devices = replica_devices(local_rank, devices_per_replica)
    backend = "nccl" if devices[0].startswith("cuda") else "gloo"
    if devices[0].startswith("cuda"):
        torch.cuda.set_device(torch.device(devices[0]))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend=backend, rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=timeout_s)
        )
    return Topology(
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        local_world_size=local_world_size,
        node_rank=node_rank,
        num_nodes=max(1, world_size // max(local_world_size, 1)),
        backend=backend,
        devices=devices,
    )


def shutdown(*, finished: bool) -> None:
    """Leave the process group. After a run that ``finished`` on every rank, wait for the peers first:
    a rank that tears its gloo pairs down while a peer still sends makes that peer abort at exit."""
    if not dist.is_initialized():
        return
    if finished:
        dist.barrier()
    dist.destroy_process_group()


def all_reduce_sum(values: list[float], topology: Topology) -> list[float]:
    """Sum a few scalars over all replicas (identity in a single process)."""
    if not topology.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def all_gather_objects(obj, topology: Topology) -> list:
    """Every replica's ``obj``, in rank order."""
    if not topology.distributed:
        return [obj]
    gathered = [None] * topology.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def any_replica(flag: bool, topology: Topology) -> bool:
    """True on every replica when it is true on one (e.g. 'time is up')."""
    return all_reduce_sum([float(flag)], topology)[0] > 0


def barrier(topology: Topology) -> None:
    if topology.distributed:
        dist.barrier()


def replicas_agree(module: torch.nn.Module, topology: Topology) -> bool:
    """True when every replica holds bit-identical parameters (a DDP sanity check)."""
    with torch.no_grad():
        fingerprint = torch.stack(  # parameters may sit on several devices (a placed replica)
            [torch.stack([p.double().sum(), p.double().square().sum()]).cpu() for p in module.parameters()]
        ).flatten()
    return all(torch.equal(fingerprint, other) for other in all_gather_objects(fingerprint, topology))
