"""``bench checkpoint``: how long a save stalls training, written in the foreground against in the
background (``train.async_checkpoints``), in one run on the same trainer and the same steps."""

from __future__ import annotations

import itertools
import statistics
import time
from pathlib import Path

import torch

from data_shards import ShardReader
from dist_train.checkpoint import Checkpointer, CheckpointFolder
from dist_train.checkpoint.run import on_host
from dist_train.distributed import Topology, replica_devices
from dist_train.timing import Stopwatch
from dist_train.trainers.s2s.trainer import S2SConfig, S2STrainer


def bench_checkpoint(cfg: S2SConfig, data: Path, work_dir: Path, *, saves: int, steps_between: int) -> dict:
    """``saves`` saves each way, alternating, with ``steps_between`` real training steps after each (what
    a background write overlaps). A save's stall is the time the training thread spends in it: for a
    background save, the copy into host memory and any wait for the write before it."""
    topology = Topology(devices=replica_devices(0, cfg.parallel.devices_per_replica, cfg.parallel.device))
    trainer = S2STrainer(cfg, topology, ShardReader(data, cfg.data), work_dir)
    batches = itertools.chain.from_iterable(itertools.repeat(trainer.reader))
    ways = {
        way: Checkpointer(CheckpointFolder(work_dir / way, keep=1), topology, trainer, background=way == "background")
        for way in ("foreground", "background")
    }
    stalls: dict[str, list[float]] = {way: [] for way in ways}
    step_times, stopwatch = [], Stopwatch(topology.devices)
    for _ in range(saves):
        for way, checkpointer in ways.items():
            trainer.progress.step += 1
            stopwatch.start()
            checkpointer.save()
            stalls[way].append(stopwatch.stop())
            for _ in range(steps_between):
                stopwatch.start()
                trainer.train_step([next(batches)])
                step_times.append(stopwatch.stop())
    ways["background"].settle()
    trainer.reader.close()  # its workers, before another benchmark forks its own
    started = time.perf_counter()
    on_host(ways["foreground"].assemble().to_state())
    copy_s = time.perf_counter() - started
    checkpoint = ways["foreground"].folder.latest()
    foreground, background = (statistics.mean(stalls[way]) for way in ways)
    return {
        "checkpoint_bytes": checkpoint.stat().st_size,
        "foreground_stall_s": round(foreground, 4),
        "background_stall_s": round(background, 4),
        "stall_ratio": round(background / foreground, 4),
        "host_copy_s": round(copy_s, 4),
        "step_time_s": round(statistics.mean(step_times), 4) if step_times else None,
        "saves": saves,
        "steps_between": steps_between,
        "device": str(topology.device),
        "threads": torch.get_num_threads(),
    }
