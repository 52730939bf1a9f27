"""The one place that knows the launch environment and owns the process groups.

Reads torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK) or,
inside a Slurm step without torchrun, SLURM_PROCID & co; everything else receives the
``Topology`` this module returns. One process drives one replica (DESIGN.md §3).
"""

from __future__ import annotations

import datetime
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from data_shards.errors import UserError
from dist_train import flight_recorder
from dist_train.peers import PeerError


@dataclass(frozen=True, kw_only=True)
class Topology:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    node_rank: int = 0
    num_nodes: int = 1
    backend: str = "gloo"  # the process group's: "gloo", or "cpu:gloo,cuda:nccl" on GPUs
    node_name: str = field(default_factory=socket.gethostname)
    devices: tuple[str, ...] = ("cpu",)
    collective_timeout_s: float = 600.0  # how long a collective waits for a peer before it fails
    trace_dir: str | None = None  # where the flight recorder dumps when a collective fails (None: nowhere)

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


def take_local_rank_flag(local_rank: int | None) -> None:
    """``--local_rank=R`` (DeepSpeed's launcher and torch.distributed.launch pass it) as ``$LOCAL_RANK``."""
    if local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(local_rank))


def lone_process_env() -> None:
    """The variables of a process group of one (rank 0 of 1, a free local port), for a library that reads
    them to start its own when no launcher set them (DeepSpeed outside torchrun)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_WORLD_SIZE", "1")):
        os.environ.setdefault(name, value)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(port))


def join_deepspeed(deepspeed, topology: Topology) -> None:
    """DeepSpeed's communication layer over our process group (or a 1-process one of its own). It is told
    the backend its tensors use: NCCL on GPUs (our group routes CUDA tensors there), gloo on CPU."""
    backend = "nccl" if topology.device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        lone_process_env()
    deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False)


def _env_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        if name in os.environ:
            return int(os.environ[name])
    return default


def local_cores() -> int:
    """The CPU cores this process may use on its node: its CPU affinity (cgroup cpusets, ``taskset``,
    Slurm's binding), and at most what Slurm allocated to the job here (``SLURM_CPUS_ON_NODE``), since a
    job that is not bound sees every core of a node it shares with others."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this OS
        cores = os.cpu_count() or 1
    allocated = os.environ.get("SLURM_CPUS_ON_NODE", "")
    return min(cores, int(allocated)) if allocated.isdigit() and int(allocated) > 0 else cores


def fit_threads_to_cores() -> None:
    """torch's default intra-op threads, no more than ``local_cores()`` (commands whose ``--threads 0``
    means all the cores they may use)."""
    if torch.get_num_threads() > local_cores():
        torch.set_num_threads(local_cores())


DEVICE_KINDS = ("auto", "cpu", "cuda")


def device_kind(requested: str = "auto", setting: str = "parallel.device=") -> str:
    """``cpu`` or ``cuda``: what ``requested`` (auto|cpu|cuda; ``setting`` names it in errors) means
    here, where ``auto`` is CUDA when a GPU is visible."""
    if requested not in DEVICE_KINDS:
        raise ValueError(f"{setting.rstrip('= ')} must be one of {', '.join(DEVICE_KINDS)}, not {requested!r}")
    visible = torch.cuda.is_available()
    if requested == "cuda" and not visible:
        raise UserError(None, f"{setting}cuda, but no GPU is visible to this process (use cpu or auto)")
    if requested == "auto":
        return "cuda" if visible else "cpu"
    return requested


def replica_devices(local_rank: int, devices_per_replica: int, device: str = "auto") -> tuple[str, ...]:
    """The devices of this process's replica: consecutive GPUs from ``local_rank × devices_per_replica``,
    or ``cpu`` for each."""
    if device_kind(device) == "cpu":
        return ("cpu",) * devices_per_replica
    first = local_rank * devices_per_replica
    if first + devices_per_replica > torch.cuda.device_count():
        raise UserError(
            None,
            f"local rank {local_rank} needs GPUs {first}..{first + devices_per_replica - 1}, "
            f"but {torch.cuda.device_count()} are visible: lower --nproc_per_node or devices_per_replica, "
            "or train on the CPU (parallel.device=cpu)",
        )
    return tuple(f"cuda:{first + i}" for i in range(devices_per_replica))


def backend_for(devices: tuple[str, ...]) -> str:
    """One process group that serves both kinds of tensor. NCCL takes CUDA tensors only, and the loop
    all-reduces CPU scalars and gathers CPU objects every step: on GPUs those go over gloo and the
    gradients over NCCL."""
    return "cpu:gloo,cuda:nccl" if any(d.startswith("cuda") for d in devices) else "gloo"


def init_distributed(
    *, devices_per_replica: int = 1, device: str = "auto", timeout_s: float = 600.0, trace_dir: Path | None = None
) -> Topology:
    """Build the topology from the environment and join the process group when there are peers. With
    ``trace_dir``, the flight recorder keeps the last collectives and a failed one is dumped there."""
    world_size = _env_int(("WORLD_SIZE", "SLURM_NTASKS"), 1)
    rank = _env_int(("RANK", "SLURM_PROCID"), 0)
    local_rank = _env_int(("LOCAL_RANK", "SLURM_LOCALID"), 0)
    local_world_size = _env_int(("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"), 1 if world_size == 1 else world_size)
    node_rank = _env_int(("GROUP_RANK", "SLURM_NODEID"), 0)
    devices = replica_devices(local_rank, devices_per_replica, device)
    backend = backend_for(devices)
    if devices[0].startswith("cuda"):
        torch.cuda.set_device(torch.device(devices[0]))
    if world_size > 1 and rank == 0 and restarts_may_read_stale_addresses():
        print(
            "warning: torchrun --max-restarts with its rendezvous store shared: a restarted group can read its "
            "peers' addresses from the previous attempt; export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 (pytorch#135712)",
            file=sys.stderr,
        )
    if world_size > 1 and trace_dir is not None:
        flight_recorder.configure(trace_dir)
    else:
        trace_dir = None
    if backend != "gloo":
        surface_nccl_errors()
    if world_size > 1 and not dist.is_initialized():
        join(backend, rank, world_size, timeout_s)
    if trace_dir is not None:
        flight_recorder.ready(trace_dir)
    return Topology(
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        local_world_size=local_world_size,
        node_rank=node_rank,
        num_nodes=max(1, world_size // max(local_world_size, 1)),
        backend=backend,
        devices=devices,
        collective_timeout_s=timeout_s,
        trace_dir=None if trace_dir is None else str(trace_dir),
    )


def surface_nccl_errors() -> None:
    """A timed-out or failed NCCL collective aborts its communicator and raises in this process, where
    the loop names the rank and the operation, instead of NCCL's watchdog ending the process (SIGABRT)
    before anything is said (PyTorch's default, TORCH_NCCL_ASYNC_ERROR_HANDLING=3). A user's setting wins."""
    os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "2")


def join(backend: str, rank: int, world_size: int, timeout_s: float) -> None:
    """Join the process group at MASTER_ADDR:MASTER_PORT; a head that never answers (or peers that never
    come) is a one-line PeerError after ``timeout_s``, not a traceback."""
    endpoint = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    try:
        if rank > 0:  # rank 0 serves the store; the others wait for it here, quietly (torch logs each retry)
            reach(os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ.get("MASTER_PORT", "0")), timeout_s)
        dist.init_process_group(
            backend=backend, rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=timeout_s)
        )
    except (RuntimeError, TimeoutError, OSError) as err:  # DistNetworkError, DistStoreError: RuntimeErrors
        cause = " ".join(str(err).split())[:200]
        raise PeerError(
            f"rank {rank} of {world_size} could not join the process group at {endpoint} within "
            f"parallel.collective_timeout_s={timeout_s:g} s: is the head node up and the port open to this node? "
            f"({cause})"
        ) from None


def reach(host: str, port: int, timeout_s: float) -> None:
    """Return once ``host:port`` accepts a connection; TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(5.0, deadline - time.monotonic()))):
                return
        except OSError as err:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"nothing answered at {host}:{port} ({err.strerror or err})") from None
            time.sleep(0.5)


def restarts_may_read_stale_addresses() -> bool:
    """torchrun restarts this group on a failure, and its workers use the agent's store."""
    restarts = _env_int(("TORCHELASTIC_MAX_RESTARTS",), 0)
    return restarts > 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"


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
    """Every replica's ``obj``, in rank order, with every tensor in it on the CPU: a pickled CUDA
    tensor would be unpickled onto a GPU of the same index on every receiver, which may not exist."""
    obj = to_cpu(obj)
    if not topology.distributed:
        return [obj]
    gathered = [None] * topology.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def to_cpu(obj):
    """``obj`` with every tensor inside its dicts, lists and tuples moved to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {key: to_cpu(value) for key, value in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a named tuple
        return type(obj)(*(to_cpu(value) for value in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(value) for value in obj)
    return obj


def barrier(topology: Topology) -> None:
    if topology.distributed:
        dist.barrier()


def replicas_agree(module: torch.nn.Module, topology: Topology) -> bool:
    """True when every replica holds bit-identical parameters (a DDP sanity check)."""
    with torch.no_grad():
        fingerprint = torch.stack(  # parameters may sit on several devices (a placed replica)
            [torch.stack([p.double().sum(), p.double().square().sum()]).cpu() for p in module.parameters()]
        ).flatten()
    others = all_gather_objects(fingerprint, topology)  # NaN weights are NaN alike on every replica in sync
    return all(torch.allclose(fingerprint, other, rtol=0, atol=0, equal_nan=True) for other in others)
