"""``bench gan``: the trainer's real step (D update, G update) on real images, timed."""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path

import torch

from data_shards import ShardReader
from dist_train.distributed import Topology, replica_devices
from dist_train.timing import Stopwatch
from dist_train.trainers.gan.trainer import GanConfig, GanTrainer


def bench_gan(cfg: GanConfig, data: Path, work_dir: Path, *, steps: int, warmup: int) -> dict:
    topology = Topology(devices=replica_devices(0, 1, cfg.parallel.device))
    reader = ShardReader(data, cfg.data)
    trainer = GanTrainer(cfg, topology, reader, work_dir)
    batches = itertools.chain.from_iterable(itertools.repeat(reader))  # epoch after epoch
    times, stopwatch = [], Stopwatch(topology.devices)  # on a GPU: the step's kernels, not their launch
    for i in range(warmup + steps):
        batch = next(batches)
        stopwatch.start()
        result = trainer.train_step([batch])
        elapsed = stopwatch.stop()
        trainer.progress.step += 1
        if i >= warmup:
            times.append(elapsed)
    reader.close()  # its workers, before another benchmark forks its own
    step_time = statistics.mean(times)
    return {
        "images_per_s": round(cfg.data.batch_size / step_time, 1),
        "step_time_s": round(step_time, 7),  # a tiny model's step is a millisecond: 5 decimals would be 3 digits
        "step_time_median_s": round(statistics.median(times), 7),
        "batch_size": cfg.data.batch_size,
        "arch": cfg.model.arch,
        "update_mode": cfg.update.mode,
        "precision": cfg.train.precision,
        "device": str(topology.device),
        "steps": steps,
        "threads": torch.get_num_threads(),
        "losses_finite": all(bool(torch.isfinite(x)) for x in (result.d_loss, result.g_loss) if x is not None),
    }
