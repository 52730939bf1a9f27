"""Measurements of the data path: sharding speed, and reader throughput for text and images."""

from __future__ import annotations

import functools
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from data_shards.batches import collate_text, decode_pair
from data_shards.plan import ReaderConfig
from data_shards.reader import ShardReader
from data_shards.shard_images import ShardImagesConfig, shard_images
from data_shards.shard_set import ShardSet
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
    try:
        while True:
            for batch in reader:
                samples += len(batch)
                tokens += batch.num_tokens if hasattr(batch, "num_tokens") else 0
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                return {"tokens_per_s": tokens / elapsed, "samples_per_s": samples / elapsed, "epochs": reader.epoch}
    finally:
        reader.close()


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextmanager
def served(folder: Path) -> Iterator[str]:
    """``folder``'s URL on a local HTTP server (Python's ``http.server``, in a thread of this process)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietFiles, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def time_offset_reads(folder: Path, batch_size: int, min_seconds: float, seed: int = 0) -> dict:
    """The alternative to logical streams, measured: batches of samples drawn anywhere in the corpus, each
    read by its offset in its shard (seek, read, decode), in one process. The tars are indexed first (a
    manifest of offsets would hold it); the timing starts after."""
    shards = ShardSet(folder, verify_sha256=False)
    offsets = []  # per sample: (shard, offset, size) of its pair.json member
    for index, shard in enumerate(shards.shards):
        with tarfile.open(folder / shard["name"]) as tar:
            offsets += [(index, m.offset_data, m.size) for m in tar.getmembers() if m.name.endswith(".pair.json")]
    files = [open(folder / shard["name"], "rb") for shard in shards.shards]  # noqa: SIM115 (closed below)
    rng, tokens, samples = np.random.default_rng(seed), 0, 0
    start = time.perf_counter()
    try:
        while time.perf_counter() - start < min_seconds:
            pairs = []
            for i in rng.integers(0, len(offsets), batch_size):
                shard, offset, size = offsets[i]
                files[shard].seek(offset)
                pairs.append(decode_pair({"pair.json": files[shard].read(size)}))
            batch = collate_text(pairs, np.arange(len(pairs)))
            tokens, samples = tokens + batch.num_tokens, samples + len(batch)
    finally:
        for f in files:
            f.close()
    elapsed = time.perf_counter() - start
    return {"tokens_per_s": tokens / elapsed, "samples_per_s": samples / elapsed}


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
    read = {n: time_reader(text_dir, ReaderConfig(**text_cfg, num_workers=n), min_seconds) for n in (0, 1, 2)}
    streams = time_reader(text_dir, ReaderConfig(**text_cfg, num_workers=2, micro_batches=8), min_seconds)
    by_offset = time_offset_reads(text_dir, 128, min_seconds)
    with served(text_dir) as url:
        over_http = time_reader(url, ReaderConfig(**text_cfg, num_workers=2), min_seconds)
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
        "read_logical_streams_tokens_per_s": round(streams["tokens_per_s"]),  # 8 streams, 2 workers
        "read_by_offset_tokens_per_s": round(by_offset["tokens_per_s"]),  # in the training process
        "read_over_http_tokens_per_s": round(over_http["tokens_per_s"]),  # 2 workers, curl from a local server
        "read_images_per_s": round(images["samples_per_s"]),
    }
