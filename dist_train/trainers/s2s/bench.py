"""``bench s2s``: the trainer's real step on real batches, timed, with FLOPs and MFU."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import torch

from data_shards import ShardReader
from dist_train.distributed import Topology, device_kind, replica_devices
from dist_train.flops import s2s_matmul_peak, s2s_step_flops
from dist_train.models.seq2seq import Seq2Seq
from dist_train.parallel.pipeline import BusyClock, Wavefront, bubble_fraction
from dist_train.parallel.placement import place, plan_layout
from dist_train.timing import Stopwatch
from dist_train.trainers.s2s.batch import model_inputs
from dist_train.trainers.s2s.trainer import S2SConfig, S2STrainer, vocab_sizes

# Where a step's time goes: profiler ops by name, first matching category wins.
CATEGORIES = {
    "lstm": ("lstm", "rnn"),
    "softmax_and_loss": ("softmax", "nll", "cross_entropy"),
    "matmuls_outside_lstm": ("addmm", "aten::mm", "bmm", "matmul", "linear"),
    "embedding": ("embedding",),
    "optimizer": ("foreach", "adam", "sgd", "optimizer", "lerp", "addcdiv", "addcmul"),
    "grad_clip": ("norm", "clip"),
    "copies_and_casts": ("copy", "_to_", "aten::to", "cat", "index", "gather", "scatter", "masked", "where", "pad"),
    "communication": ("allreduce", "all_reduce", "gloo", "nccl"),
}


def profiler_activities(devices: tuple[str, ...]) -> list[torch.profiler.ProfilerActivity]:
    """The CPU's activity, and the GPUs' kernels when the replica runs on CUDA devices."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if any(torch.device(d).type == "cuda" for d in devices):
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    return activities


def time_breakdown(trainer: S2STrainer, batches, steps: int, devices: tuple[str, ...]) -> dict:
    """Milliseconds per step in each category of profiled op (self time), for ``steps`` steps: host
    time, and on GPUs the kernels' device time too (``cuda_time_breakdown_ms_per_step``)."""
    activities = profiler_activities(devices)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            trainer.train_step([next(batches)])
        Stopwatch(devices).stop()  # the last step's kernels finish inside the profile
    events = prof.key_averages()
    figures = {"time_breakdown_ms_per_step": categorised(events, "self_cpu_time_total", steps)}
    if torch.profiler.ProfilerActivity.CUDA in activities:
        figures["cuda_time_breakdown_ms_per_step"] = categorised(events, "self_device_time_total", steps)
        figures["cuda_time_ms_per_step"] = round(sum(figures["cuda_time_breakdown_ms_per_step"].values()), 1)
    return figures


def categorised(events, field: str, steps: int) -> dict[str, float]:
    """Each category's total of the events' ``field`` (microseconds), in milliseconds per step."""
    totals: dict[str, float] = dict.fromkeys([*CATEGORIES, "other"], 0.0)
    for event in events:
        name = event.key.lower()
        category = next((c for c, keys in CATEGORIES.items() if any(k in name for k in keys)), "other")
        totals[category] += getattr(event, field, 0.0) / 1000 / steps
    return {category: round(ms, 1) for category, ms in totals.items()}


def bench_s2s(cfg: S2SConfig, data: Path, work_dir: Path, *, steps: int, warmup: int, profile: bool = False) -> dict:
    topology = Topology(devices=replica_devices(0, cfg.parallel.devices_per_replica, cfg.parallel.device))
    reader = ShardReader(data, cfg.data)
    trainer = S2STrainer(cfg, topology, reader, work_dir)
    batches = iter(reader)
    times, words, flops = [], 0, 0.0
    wavefront = find_wavefront(trainer.model)
    stopwatch = Stopwatch(topology.devices)
    for i in range(warmup + steps):
        if i == warmup and wavefront is not None:
            wavefront.clock = BusyClock()
        batch = next(batches)
        stopwatch.start()
        result = trainer.train_step([batch])
        elapsed = stopwatch.stop()
        if i >= warmup:
            times.append(elapsed)
            words += result.words
            pairs = int((batch.src_lengths * (batch.tgt_lengths + 1)).sum())
            flops += s2s_step_flops(
                cfg.model, trainer.tgt_vocab_size, int(batch.src_lengths.sum()), result.target_tokens, pairs
            )
    pipeline = {"pipeline": pipeline_figures(wavefront, cfg.model.num_layers, steps)} if wavefront else {}
    if wavefront is not None:
        wavefront.clock = None
    breakdown = time_breakdown(trainer, batches, steps, topology.devices) if profile else {}
    reader.close()  # its workers, before another benchmark forks its own
    seconds = sum(times)
    peak = s2s_matmul_peak(
        cfg.model,
        batch_size=cfg.data.batch_size,
        tgt_vocab_size=trainer.tgt_vocab_size,
        precision=cfg.train.precision,
        device=topology.device,
        lstm_precision=cfg.train.lstm_precision,
    )
    # a replica spread over several GPUs has each one's peak; the CPU "devices" of a layout are one CPU
    distinct_devices = len(set(topology.devices))
    achieved = flops / seconds
    return {
        "words_per_s": round(words / seconds, 1),
        "step_time_s": round(seconds / steps, 4),
        "achieved_flops": round(achieved),
        "gemm_peak_flops": round(peak.flops_per_s * distinct_devices),
        "gemm_peak_shape": peak.shape.label,
        "gemm_peak_per_device": peak.as_dict(),
        "mfu": round(achieved / (peak.flops_per_s * distinct_devices), 4),
        "device": str(topology.device),
        "steps": steps,
        "batch_size": cfg.data.batch_size,
        "vocab_sizes": [trainer.src_vocab_size, trainer.tgt_vocab_size],
        "precision": cfg.train.precision,
        "placement": cfg.parallel.placement,
        "devices_per_replica": cfg.parallel.devices_per_replica,
        "chunk_len": cfg.parallel.chunk_len,
        "threads": torch.get_num_threads(),
        "loss_finite": math.isfinite(result.loss_sum),
        **pipeline,
        **breakdown,
    }


def pipeline_devices(count: int, device: str = "auto") -> list[torch.device]:
    """The layout's ``count`` logical devices: on CUDA device i is cuda:(i mod the visible GPUs), so
    8 logical devices wrap onto fewer GPUs; otherwise every one is the CPU."""
    if device_kind(device) == "cpu":
        return [torch.device("cpu")] * count
    visible = torch.cuda.device_count()
    return [torch.device(f"cuda:{i % visible}") for i in range(count)]


def bench_pipeline(cfg: S2SConfig, data: Path, *, steps: int, chunk_len: int, devices: int = 8) -> dict:
    """The pipeline machinery's cost: forward + backward of the plain model against the same
    weights placed on the paper's layout (``devices`` logical devices: the visible GPUs, wrapped
    around, or all ``cpu``) and run as a wavefront, on the same batches, alternating in one process
    so the machine's drift hits both alike."""
    reader = ShardReader(data, dataclasses.replace(cfg.data, num_workers=0))
    sizes = vocab_sizes(cfg.vocab, reader.shards.manifest)
    layout = pipeline_devices(devices, cfg.parallel.device)
    torch.manual_seed(cfg.train.seed)
    plain = Seq2Seq(cfg.model, src_vocab_size=sizes[0], tgt_vocab_size=sizes[1]).to(layout[0])
    placed = place(copy.deepcopy(plain), plan_layout(cfg.model.num_layers, layout, 4))
    pipelined = Wavefront(placed, chunk_len)
    batches = [model_inputs(b, sizes, layout[0]) for b, _ in zip(reader, range(steps + 1))]
    seconds = {"plain": 0.0, "pipelined": 0.0}
    stopwatch = Stopwatch(layout)
    for i, inputs in enumerate(batches):
        for name, model in (("plain", plain), ("pipelined", pipelined)):
            stopwatch.start()
            model(*inputs.as_args()).sum().backward()
            elapsed = stopwatch.stop()
            if i:  # the first batch warms up
                seconds[name] += elapsed
    plain_s, piped_s = seconds["plain"] / steps, seconds["pipelined"] / steps
    return {
        "plain_step_s": round(plain_s, 6),
        "pipelined_step_s": round(piped_s, 6),
        "overhead": round(piped_s / plain_s - 1, 4),
        "chunk_len": chunk_len,
        "devices": devices,
        "physical_devices": sorted({str(d) for d in layout}),
        "steps": steps,
        "batch_size": cfg.data.batch_size,
        "threads": torch.get_num_threads(),
    }


def find_wavefront(module) -> Wavefront | None:
    while not isinstance(module, Wavefront) and hasattr(module, "module"):
        module = module.module
    return module if isinstance(module, Wavefront) else None


def pipeline_figures(wavefront: Wavefront, num_layers: int, steps: int) -> dict:
    """Chunks per step, the schedule's bubble (L − 1)/(C + L − 1), and each layer device's forward
    busy time per step (on CPU the devices take turns, so they add up rather than overlap)."""
    chunks = wavefront.clock.chunks
    return {
        "chunks_per_step": round(sum(chunks) / len(chunks), 2),
        "bubble_fraction": round(sum(bubble_fraction(c, num_layers) for c in chunks) / len(chunks), 4),
        "forward_busy_s_per_step": {k: round(v / steps, 4) for k, v in wavefront.clock.seconds().items()},
    }
