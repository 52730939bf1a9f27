"""Measurements of the data path: sharding speed, and reader throughput for text and images."""

from __future__ import annotations

import time
from pathlib import Path

from data_shards.plan import ReaderConfig
from data_shards.reader import ShardReader
from data_shards.shard_images import ShardImagesConfig, shard_images
from data_shards.shard_text import ShardTextConfig, shard_text
from data_shards.wmt14 import training_pairs


def wmt_train_files(data_root: Path) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """The WMT'14 training sample in shared/data: (English files, French files)."""
    return training_pairs(data_root / "wmt14-en-fr")


def time_reader(folder: Path, cfg: ReaderConfig, min_seconds: float) -> dict:
    """Read whole epochs until ``min_seconds`` have passed; worker start-up is included."""
    reader = ShardReader(folder, cfg)
    tokens = samples = 0
    start = time.perf_counter()
    while True:
        for batch in reader:
            samples += len(batch)
            tokens += batch.num_tokens if hasattr(batch, "num_tokens") else 0
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return {"tokens_per_s": tokens / elapsed, "samples_per_s": samples / elapsed, "epochs": reader.epoch}


def bench_data(data_root: Path, work_dir: Path, *, workers: int = 2, min_seconds: float = 3.0) -> dict:
    src, tgt = wmt_train_files(data_root)
    text_dir, image_dir = work_dir / "wmt14-train", work_dir / "mnist-test"
    start = time.perf_counter()
    manifest = shard_text(
        ShardTextConfig(src=src, tgt=tgt, out=text_dir, workers=workers, overwrite=True, progress=False)
    )
    shard_seconds = time.perf_counter() - start
    pairs = manifest["filters"]["counts"]["input_pairs"]
    text_cfg = dict(batch_size=128, shuffle=True, seed=0)
    read = {n: time_reader(text_dir, ReaderConfig(**text_cfg, num_workers=n), min_seconds) for n in (1, 2)}
    shard_images(
        ShardImagesConfig(
            input=(data_root / "mnist" / "t10k-images-idx3-ubyte.gz",), out=image_dir, overwrite=True, progress=False
        )
    )
    images = time_reader(image_dir, ReaderConfig(batch_size=100, num_workers=2), min_seconds)
    return {
        "shard_pairs_per_s": round(pairs / shard_seconds, 1),
        "shard_pairs": pairs,
        "shard_workers": workers,
        "read_tokens_per_s": {f"{n}_workers": round(r["tokens_per_s"]) for n, r in read.items()},
        "read_pairs_per_s": {f"{n}_workers": round(r["samples_per_s"]) for n, r in read.items()},
        "read_images_per_s": round(images["samples_per_s"]),
    }
