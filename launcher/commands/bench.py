"""``bench``: measurements printed as one JSON line per benchmark."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from data_shards.bench import bench_data
from dist_train.trainers.gan.bench import bench_gan
from dist_train.trainers.gan.trainer import GanConfig
from dist_train.trainers.s2s.bench import bench_pipeline, bench_s2s
from dist_train.trainers.s2s.bench_checkpoint import bench_checkpoint
from dist_train.trainers.s2s.trainer import S2SConfig
from launcher.commands import performance
from launcher.commands.bench_scaling import ddp_scaling
from launcher.commands.common import machine, print_summary, say
from launcher.config import ConfigError, load_config, preset_file
from launcher.default_data import cifar10_test_shards, giga_fren_shards, mnist_shards
from launcher.paths import PROJECT_ROOT, shared_data

NAME = "bench"
TARGETS = ("data", "s2s", "pipeline", "gan", "checkpoint", "all")
GAN_PRESETS = ("paper-mnist", "dcgan-32")


def add_parser(jobs) -> None:
    p = jobs.add_parser(
        NAME,
        help="measure throughput; prints one JSON line per benchmark",
        description="data: shard the WMT'14 training sample (pairs/s), read it back with 1 and 2 "
        "DataLoader workers (tokens/s, source + target), read MNIST test (images/s); start-up included. "
        "s2s: the trainer's step on real batches (words/s, FLOPs, MFU against the best matmul rate over the "
        "model's own matmul shapes and a few large squares, in the precision in use, on its device). "
        "pipeline: the paper layout's cost (its 8 devices wrapped onto the visible GPUs, or all the CPU). "
        "gan: the trainer's step (D and G updates) on real images (images/s). checkpoint: how long a save stalls "
        "training, written in the foreground against in the background (train.async_checkpoints), alternating "
        "on one trainer with --steps training steps after each save (default: preset paper, 3 saves each way). "
        "all: data, s2s small and "
        "paper, the plain-PyTorch loop against ours, DDP scaling (1 and 2 processes), the paper layout's "
        "pipeline, gan paper-mnist and dcgan-32; then writes --out (docs/PERFORMANCE.md) from their figures.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("target", choices=TARGETS, help="what to measure")
    p.add_argument("--data-root", type=Path, default=None, help="shared data folder (default: ../shared/data)")
    p.add_argument("--work-dir", type=Path, default=None, help="where to write shards (default: a temporary folder)")
    p.add_argument("--workers", type=int, default=2, help="sharding worker processes")
    p.add_argument("--seconds", type=float, default=3.0, help="minimum time per read measurement")
    p.add_argument(
        "--preset", default=None, help="s2s/gan: the preset to measure (default: s2s small; gan: both presets)"
    )
    p.add_argument("--steps", type=int, default=0, help="timed steps (default: s2s 10, 3 for paper; gan 20)")
    p.add_argument("--warmup", type=int, default=2, help="s2s/gan: untimed steps first")
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="s2s/gan: shards (default: the giga-fren training sample; MNIST train; CIFAR-10 test images)",
    )
    p.add_argument(
        "--placement",
        choices=("none", "paper"),
        default=None,
        help="s2s: parallel.placement; paper spreads layers and softmax shards over 8 devices (all cpu here)",
    )
    p.add_argument("--chunk-len", type=int, default=None, help="s2s: parallel.chunk_len, the wavefront chunk")
    p.add_argument(
        "--profile",
        action="store_true",
        help="s2s: also profile as many steps again and report where a step's time goes "
        "(ms per step: lstm, softmax_and_loss, other matmuls, embedding, optimizer, ...); on a GPU also "
        "the kernels' device time per category",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=PROJECT_ROOT / "docs" / "PERFORMANCE.md",
        help="all: the report to write (its figures go beside it, in performance.jsonl)",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="s2s: config overrides, e.g. precision=bf16")
    p.set_defaults(run=run, parser=p)


def run(args: argparse.Namespace) -> int:
    data_root = args.data_root or shared_data()
    if not (data_root / "wmt14-en-fr").is_dir():
        args.parser.error(f"{data_root}: no wmt14-en-fr folder here; pass --data-root")
    if args.target == "all":
        return run_all(args, data_root)
    if args.target == "data":
        run_data(args, data_root)
    if args.target == "pipeline":
        run_pipeline(args, data_root, args.preset or "paper")
    if args.target == "s2s":
        run_s2s(args, data_root, args.preset or "small")
    if args.target == "gan":
        for preset in [args.preset] if args.preset else GAN_PRESETS:
            run_gan(args, data_root, preset)
    if args.target == "checkpoint":
        run_checkpoint(args, data_root, args.preset or "paper")
    return 0


def run_checkpoint(args: argparse.Namespace, data_root: Path, preset: str) -> dict:
    cfg = s2s_config(args, preset)
    data = args.data or giga_fren_shards(data_root, "bench checkpoint")
    steps = args.steps or 1
    say(f"bench checkpoint: preset {preset}, 3 saves each way, {steps} training step(s) after each")
    with tempfile.TemporaryDirectory(prefix="bench-checkpoint-") as tmp:
        figures = bench_checkpoint(cfg, data, Path(tmp), saves=3, steps_between=steps)
    return report({"bench": "checkpoint", "preset": preset, **figures})


def run_all(args: argparse.Namespace, data_root: Path) -> int:
    """Every benchmark in one run, then docs/PERFORMANCE.md from their figures."""
    started = time.monotonic()
    results = [run_data(args, data_root)]
    results += [run_s2s(args, data_root, preset) for preset in ("small", "paper")]
    results.append(run_plain_loop(args, data_root, steps=FLOOR_STEPS))
    results.append({**run_s2s(args, data_root, "small", PLAIN_MODEL, steps=FLOOR_STEPS), "bench": "s2s_same_as_plain"})
    say("bench all: data-parallel scaling, 1 and 2 processes of the s2s job (small)")
    results.append(report({"bench": "ddp_scaling", **ddp_scaling(giga_fren_shards(data_root, "bench s2s"))}))
    results.append(run_pipeline(args, data_root, "paper"))
    results.append(run_checkpoint(args, data_root, "paper"))
    results += [run_gan(args, data_root, preset) for preset in GAN_PRESETS]
    results.append(run_plain_gan(args, data_root, steps=GAN_FLOOR_STEPS))
    same = argparse.Namespace(**{**vars(args), "steps": GAN_FLOOR_STEPS})
    results.append({**run_gan(same, data_root, "paper-mnist"), "bench": "gan_same_as_plain"})
    performance.write(
        results, args.out, seconds=time.monotonic() - started, command="python -m launcher.main bench all"
    )
    say(f"bench all: wrote {args.out} in {(time.monotonic() - started) / 60:.1f} minutes")
    return 0


PLAIN_MODEL = ("model.attention=false", "model.copy=false")  # the paper's model: what the plain loop builds
FLOOR_STEPS = 30  # timed steps of each side of the plain-loop comparison (more than bench s2s's 10: a ratio)


GAN_FLOOR_STEPS = 200  # a paper-mnist step is ~0.04 s here: 200 of them give a stable mean


def run_plain_gan(args: argparse.Namespace, data_root: Path, steps: int) -> dict:
    """benchmarks/plain_gan.py: the paper-mnist step as a plain loop, on the shards ``bench gan`` reads."""
    command = [sys.executable, str(PROJECT_ROOT / "benchmarks" / "plain_gan.py"), "--steps", str(steps)]
    command += ["--data", str(args.data or gan_shards("paper-mnist", data_root)), "--warmup", str(args.warmup)]
    say("bench all: the plain PyTorch GAN loop (benchmarks/plain_gan.py), paper-mnist")
    return run_script(command)


def run_script(command: list[str]) -> dict:
    """A benchmark script's one JSON line, with the machine."""
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{Path(command[1]).name} failed: {result.stderr.strip()[-2000:]}")
    figures = {**json.loads(result.stdout.strip().splitlines()[-1]), **machine()}
    print_summary(figures)
    return figures


def run_plain_loop(args: argparse.Namespace, data_root: Path, steps: int) -> dict:
    """benchmarks/plain_s2s.py on the same batches as ``bench s2s --preset small`` with PLAIN_MODEL."""
    data = args.data or giga_fren_shards(data_root, "bench s2s")
    device = s2s_config(args, "small", PLAIN_MODEL).parallel.device  # the device ours runs on
    command = [sys.executable, str(PROJECT_ROOT / "benchmarks" / "plain_s2s.py"), "--preset", "small"]
    command += ["--data", str(data), "--steps", str(steps), "--warmup", str(args.warmup), "--device", device]
    command += list(PLAIN_MODEL)
    say("bench all: the plain PyTorch loop (benchmarks/plain_s2s.py), small, no attention")
    return run_script(command)


def report(figures: dict) -> dict:
    """Print a benchmark's JSON line, with the machine, and give it back."""
    figures = {**figures, **machine()}
    print_summary(figures)
    return figures


def run_data(args: argparse.Namespace, data_root: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        work_dir = args.work_dir or Path(tmp)
        say(f"bench data: sharding and reading under {work_dir}")
        figures = {"bench": "data", **bench_data(data_root, work_dir, workers=args.workers, min_seconds=args.seconds)}
    return report(figures)


def run_pipeline(args: argparse.Namespace, data_root: Path, preset: str) -> dict:
    cfg = s2s_config(args, preset)
    data = args.data or giga_fren_shards(data_root, "bench s2s")
    steps, chunk_len = args.steps or 3, args.chunk_len or 8
    say(f"bench pipeline: preset {preset}, plain against paper layout + wavefront (chunk {chunk_len}), {steps} steps")
    figures = bench_pipeline(cfg, data, steps=steps, chunk_len=chunk_len)
    return report({"bench": "pipeline", "preset": preset, **figures})


def s2s_config(args: argparse.Namespace, preset: str, extra: tuple[str, ...] = ()) -> S2SConfig:
    try:
        overrides = [*layout(args), *args.overrides, *extra]
        cfg = load_config(S2SConfig, files=[preset_file("s2s", preset)], overrides=overrides)
    except ConfigError as err:
        args.parser.error(str(err))
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    return cfg


def layout(args: argparse.Namespace) -> list[str]:
    """--placement / --chunk-len as config overrides (explicit key=value overrides come after them)."""
    overrides = []
    if args.placement == "paper":
        overrides += ["parallel.placement=paper", "parallel.devices_per_replica=8"]
    if args.chunk_len is not None:
        overrides.append(f"parallel.chunk_len={args.chunk_len}")
    return overrides


def run_s2s(
    args: argparse.Namespace, data_root: Path, preset: str, extra: tuple[str, ...] = (), steps: int = 0
) -> dict:
    cfg = s2s_config(args, preset, extra)
    data = args.data or giga_fren_shards(data_root, "bench s2s")
    steps = steps or args.steps or (3 if preset == "paper" else 10)
    threads = torch.get_num_threads()
    say(f"bench s2s: preset {preset}, {steps} timed steps after {args.warmup} warm-up, {threads} threads")
    with tempfile.TemporaryDirectory(prefix="bench-s2s-") as tmp:
        figures = bench_s2s(cfg, data, Path(tmp), steps=steps, warmup=args.warmup, profile=args.profile)
    return report({"bench": "s2s", "preset": preset, **figures})


def gan_shards(preset: str, data_root: Path) -> Path:
    """MNIST's training split for paper-mnist; the CIFAR-10 JPEG test images for dcgan-32."""
    if preset == "dcgan-32":
        return cifar10_test_shards(data_root, "bench gan")
    return mnist_shards("train", data_root / "mnist", "bench gan")


def run_gan(args: argparse.Namespace, data_root: Path, preset: str) -> dict:
    try:
        cfg = load_config(GanConfig, files=[preset_file("gan", preset)], overrides=args.overrides)
    except ConfigError as err:
        args.parser.error(str(err))
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    data = args.data or gan_shards(preset, data_root)
    steps = args.steps or 20
    say(
        f"bench gan: preset {preset}, {steps} timed steps after {args.warmup} warm-up, "
        f"{torch.get_num_threads()} threads"
    )
    with tempfile.TemporaryDirectory(prefix="bench-gan-") as tmp:
        figures = bench_gan(cfg, data, Path(tmp), steps=steps, warmup=args.warmup)
    return report({"bench": "gan", "preset": preset, **figures})
