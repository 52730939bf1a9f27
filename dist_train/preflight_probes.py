"""What ``preflight`` measures on one process: its devices and their software, matmul peaks, copy
bandwidth between the replica's devices, the reader's speed and the room for checkpoints. Each probe
returns plain numbers; ``dist_train.preflight`` runs them, catches their failures, and adds the
all-reduce, the one measurement every process takes part in."""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

from data_shards import ReaderConfig, ShardReader
from dist_train.flops import MatmulShape, matmul_peak, square_shapes
from dist_train.timing import best_rate

GiB = 1024**3


def ask(question: Callable[[], object]) -> object:
    """``question()``, or None when it cannot be answered here (a missing library, an old driver): a
    version we cannot read is reported as unknown, never a crash."""
    try:
        return question()
    except Exception:  # noqa: BLE001 - any failure means "unknown" here
        return None


def device_info(devices: tuple[str, ...]) -> dict:
    """The replica's devices and the software that drives them: GPU names, memory, driver, CUDA,
    cuDNN and NCCL versions and bf16 support; or the CPU's model, vector units and gloo."""
    info = {"torch": torch.__version__, "devices": list(devices)}
    if not any(d.startswith("cuda") for d in devices):
        flags = cpu_flags()
        return {
            **info,
            "kind": "cpu",
            "cpu_model": cpu_model(),
            "cpu_capability": ask(lambda: torch.backends.cpu.get_cpu_capability()),
            "threads": torch.get_num_threads(),
            "bf16_matrix_units": bool(flags & {"avx512_bf16", "amx_bf16"}),  # without them bf16 is emulated
            "collectives": "gloo",
        }
    gpus = [gpu_info(torch.device(d)) for d in dict.fromkeys(devices)]
    return {
        **info,
        "kind": "cuda",
        "gpus": gpus,
        "driver": ask(nvidia_driver),
        "cuda_driver_api": ask(lambda: torch._C._cuda_getDriverVersion()),  # absent from CPU builds
        "cuda_runtime": torch.version.cuda,
        "cudnn": ask(lambda: torch.backends.cudnn.version()),
        "nccl": ask(lambda: ".".join(map(str, torch.cuda.nccl.version()))),
        "bf16": ask(lambda: torch.cuda.is_bf16_supported()),
        "collectives": "nccl (CUDA tensors), gloo (CPU tensors)",
    }


def gpu_info(device: torch.device) -> dict:
    properties = ask(lambda: torch.cuda.get_device_properties(device))
    return {
        "device": str(device),
        "name": ask(lambda: torch.cuda.get_device_name(device)),
        "memory_gib": None if properties is None else round(properties.total_memory / GiB, 1),
        "capability": ask(lambda: ".".join(map(str, torch.cuda.get_device_capability(device)))),
    }


def nvidia_driver() -> str:
    """The kernel driver's version, from NVML when it is installed, else from the kernel module."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return str(pynvml.nvmlSystemGetDriverVersion())
    except ImportError:
        return Path("/proc/driver/nvidia/version").read_text().split("Kernel Module")[1].split()[0]


def cpu_model() -> str | None:
    lines = ask(lambda: Path("/proc/cpuinfo").read_text().splitlines()) or []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)


def cpu_flags() -> set[str]:
    lines = ask(lambda: Path("/proc/cpuinfo").read_text().splitlines()) or []
    return set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))


def preflight_shapes(device_type: str, precision: str) -> list[MatmulShape]:
    """Fewer shapes than ``bench s2s`` sweeps: the paper model's gate matmul at its batch of 128, its
    output projection (trimmed to one call's budget), and the device's large squares."""
    return [
        MatmulShape("paper_lstm_gates", 128, 2000, 4000, precision),
        MatmulShape("paper_output_projection", 128 * 30, 1000, 80_000, precision),
        *square_shapes(device_type, precision),
    ]


def matmul_peaks(devices: tuple[str, ...], precisions: list[str], seconds: float) -> dict[str, dict]:
    """``{"fp32": {"device0": {...}, ...}, ...}``: each distinct device's peak in each precision."""
    peaks: dict[str, dict] = {}
    for precision in precisions:
        for index, device in enumerate(dict.fromkeys(devices)):
            kind = torch.device(device).type
            peak = matmul_peak(preflight_shapes(kind, precision), device, seconds=seconds, windows=3)
            peaks.setdefault(precision, {})[f"device{index}"] = peak.as_dict()
    return peaks


def copy_rate(source: torch.Tensor, target: torch.Tensor, seconds: float) -> float:
    """Bytes per second of ``target.copy_(source)``, timed on the GPU side when there is one."""
    on = target.device if target.device.type == "cuda" else source.device
    copy = lambda: target.copy_(source, non_blocking=True)  # noqa: E731
    return best_rate(copy, source.numel() * source.element_size(), on, seconds=seconds, windows=3)


def copy_bandwidths(devices: tuple[str, ...], seconds: float, megabytes: int = 64) -> dict[str, float]:
    """Bytes/s of the copies a replica makes: on GPUs each pipeline hop (device i → i + 1), host → first
    device and back (pinned memory); on CPU one memcpy of ``megabytes``, the CPU's equivalent."""
    elements = megabytes * 1024**2 // 4
    if not devices[0].startswith("cuda"):
        return {"memcpy": copy_rate(torch.ones(elements), torch.empty(elements), seconds)}
    first, host = torch.device(devices[0]), torch.ones(elements).pin_memory()
    rates = {
        "host_to_device0": copy_rate(host, torch.empty(elements, device=first), seconds),
        "device0_to_host": copy_rate(torch.ones(elements, device=first), torch.empty_like(host).pin_memory(), seconds),
    }
    for i, (a, b) in enumerate(zip(devices, devices[1:])):
        if a != b:
            rates[f"hop{i}_{i + 1}"] = copy_rate(
                torch.ones(elements, device=a), torch.empty(elements, device=b), seconds
            )
    return rates


def reader_speed(data: str | Path, *, rank: int, world_size: int, workers: int, seconds: float) -> dict:
    """This replica's share of ``data`` read for ``seconds`` (after the first batch, whose wait for
    the DataLoader workers is reported apart): tokens/s (source + target) and samples/s."""
    cfg = ReaderConfig(batch_size=128, num_workers=workers, shuffle=True, seed=0)
    reader = ShardReader(data, cfg, replica_rank=rank, num_replicas=world_size)
    started = time.perf_counter()
    batches, first_batch_s = iter(reader), None
    tokens = samples = 0
    while True:
        try:
            batch = next(batches)
        except StopIteration:  # a small shard set: read the next epoch
            batches = iter(reader)
            continue
        if first_batch_s is None:
            first_batch_s, started = time.perf_counter() - started, time.perf_counter()
            continue
        samples += len(batch)
        tokens += getattr(batch, "num_tokens", 0)
        if (elapsed := time.perf_counter() - started) >= seconds:
            break
    figures = {"samples_per_s": samples / elapsed, "first_batch_s": round(first_batch_s, 3)}
    return {**figures, "tokens_per_s": tokens / elapsed} if tokens else figures


@dataclasses.dataclass(frozen=True)
class CheckpointSize:
    """How large one checkpoint of the job will be, and how that was found out."""

    bytes: int
    source: str


def existing_checkpoint(run_dir: Path) -> CheckpointSize | None:
    """The newest complete checkpoint in ``run_dir/checkpoints``, if there is one."""
    from dist_train.checkpoint import CheckpointFolder

    newest = CheckpointFolder(run_dir / "checkpoints").latest()
    return None if newest is None else CheckpointSize(newest.stat().st_size, f"existing checkpoint {newest}")


def disk_room(run_dir: Path, checkpoint: CheckpointSize, keep: int) -> dict:
    """Free space where ``run_dir`` is (or would be created) against one checkpoint: how many fit, and
    whether the ``keep`` the job keeps plus the one being written do."""
    where = run_dir
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    fits = free // max(checkpoint.bytes, 1)
    return {
        "path": str(run_dir),
        "free_bytes": free,
        "checkpoint_bytes": checkpoint.bytes,
        "checkpoint_source": checkpoint.source,
        "checkpoints_that_fit": int(fits),
        "checkpoints_needed": keep + 1,  # the newest `keep`, and the next one written beside them
        "enough": fits >= keep + 1,
    }


def estimated_checkpoint(model_cfg, *, src_vocab_size: int, tgt_vocab_size: int, optimizer: str, label: str):
    """One checkpoint's size from the model the job would build (on the meta device: no memory is
    allocated): fp32 weights, plus Adam's two moments when ``optimizer`` is adam (plain SGD keeps none).
    Vocabularies, reader and RNG state add little and are left out."""
    from dist_train.models.seq2seq import Seq2Seq

    with torch.device("meta"):
        model = Seq2Seq(model_cfg, src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size)
    parameters = sum(p.numel() for p in model.parameters())
    slots = 2 if optimizer == "adam" else 0
    source = f"estimated: {label}, {parameters:,} parameters, fp32 weights + {optimizer} state"
    return CheckpointSize(parameters * 4 * (1 + slots), source)
