"""``bench``: measurements printed as one JSON line per benchmark."""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

from data_shards.bench import bench_data
from launcher.commands.common import print_summary, say
from launcher.paths import shared_data

NAME = "bench"
TARGETS = ("data", "all")  # s2s and gan benchmarks arrive with their jobs


def add_parser(jobs) -> None:
    p = jobs.add_parser(
        NAME,
        help="measure throughput; prints one JSON line per benchmark",
        description="data: shard the WMT'14 training sample (pairs/s), read it back with 1 and 2 "
        "DataLoader workers (tokens/s, source + target), read MNIST test (images/s). "
        "Start-up is included in every figure.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("target", choices=TARGETS, help="what to measure")
    p.add_argument("--data-root", type=Path, default=None, help="shared data folder (default: ../shared/data)")
    p.add_argument("--work-dir", type=Path, default=None, help="where to write shards (default: a temporary folder)")
    p.add_argument("--workers", type=int, default=2, help="sharding worker processes")
    p.add_argument("--seconds", type=float, default=3.0, help="minimum time per read measurement")
    p.set_defaults(run=run, parser=p)


def machine() -> dict:
    return {"machine": platform.machine(), "cpus": os.cpu_count(), "processor": platform.processor() or None}


def run(args: argparse.Namespace) -> int:
    data_root = args.data_root or shared_data()
    if not (data_root / "wmt14-en-fr").is_dir():
        args.parser.error(f"{data_root}: no wmt14-en-fr folder here; pass --data-root")
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        work_dir = args.work_dir or Path(tmp)
        say(f"bench data: sharding and reading under {work_dir}")
        figures = bench_data(data_root, work_dir, workers=args.workers, min_seconds=args.seconds)
    print_summary({"bench": "data", **figures, **machine()})
    return 0
