"""``bench s2s``: the trainer's real step on real batches, timed, with FLOPs and MFU."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from data_shards import ShardReader
from dist_train.checkpoint import Checkpointer
from dist_train.distributed import Topology
from dist_train.flops import gemm_flops_per_s, s2s_step_flops
from dist_train.metrics import Sinks
from dist_train.trainers.s2s import S2SConfig, S2STrainer


def bench_s2s(cfg: S2SConfig, data: Path, work_dir: Path, *, steps: int, warmup: int) -> dict:
    topology = Topology()
    reader = ShardReader(data, cfg.data)
    trainer = S2STrainer(cfg, topology, reader, Checkpointer(work_dir / "checkpoints"), Sinks([]), {})
    batches = iter(reader)
    times, words, flops = [], 0, 0.0
    for i in range(warmup + steps):
        batch = next(batches)
        start = time.perf_counter()
        result = trainer.train_step(batch)
        elapsed = time.perf_counter() - start
        if i >= warmup:
            times.append(elapsed)
            words += result.words
            flops += s2s_step_flops(
                cfg.model, trainer.tgt_vocab_size, int(batch.src_lengths.sum()), result.target_tokens
            )
    seconds = sum(times)
    tokens_per_batch = cfg.data.batch_size * 30  # the output projection's rows at a typical length
    peak = gemm_flops_per_s(tokens_per_batch, cfg.model.hidden_dim, trainer.tgt_vocab_size, cfg.train.precision)
    achieved = flops / seconds
    return {
        "words_per_s": round(words / seconds, 1),
        "step_time_s": round(seconds / steps, 4),
        "achieved_flops": round(achieved),
        "gemm_peak_flops": round(peak),
        "mfu": round(achieved / peak, 4),
        "steps": steps,
        "batch_size": cfg.data.batch_size,
        "vocab_sizes": [trainer.src_vocab_size, trainer.tgt_vocab_size],
        "precision": cfg.train.precision,
        "threads": torch.get_num_threads(),
        "loss_finite": math.isfinite(result.loss_sum),
    }
