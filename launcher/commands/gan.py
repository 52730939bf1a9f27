"""``gan``: train Goodfellow et al.'s adversarial nets (DESIGN.md §1, §6)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from data_shards.mnist import mnist_root, shard_mnist_split
from dist_train import distributed
from dist_train.trainers.gan.data import image_shape
from dist_train.trainers.gan.trainer import GanConfig, GanTrainer
from launcher.commands.common import say
from launcher.commands.training import add_job_flags, launch, replica_reader, run_training
from launcher.config import to_dict
from launcher.paths import shards_home, shared_data

NAME = "gan"


def add_parser(jobs) -> None:
    p = jobs.add_parser(
        NAME,
        help="train the adversarial nets (MNIST, or 32×32 colour images)",
        description="Train Goodfellow et al.'s generator and discriminator on shard-images shards, as one "
        "process or data-parallel under torchrun. Without --data: MNIST's first 50,000 training images, "
        "sharded once into runs/shards/mnist-train.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_job_flags(p, NAME, "paper-mnist", raw_data="$MNIST_ROOT, else ../shared/data/mnist")
    p.set_defaults(run=run, parser=p)


def mnist_shards(split: str, data_root: Path | None, job: str) -> Path:
    """runs/shards/mnist-<split> (train: the first 50,000 training images; valid: the other 10,000;
    test: the 10,000 test images), sharded from the raw MNIST files the first time."""
    out = shards_home() / f"mnist-{split}"
    if not (out / "manifest.json").is_file():
        root = mnist_root(data_root, dict(os.environ), shared_data())
        say(f"{job}: sharding MNIST's {split} split from {root} into {out} (once)")
        shard_mnist_split(root, split, out, progress=False)
    return out


def default_shards(args: argparse.Namespace, topology: distributed.Topology) -> Path:
    if topology.is_main:
        mnist_shards("train", args.data_root, NAME)
    distributed.barrier(topology)
    return shards_home() / "mnist-train"


def run(args: argparse.Namespace) -> int:
    def start(cfg: GanConfig, topology: distributed.Topology) -> int:
        return train(args, cfg, topology, args.data or default_shards(args, topology))

    return launch(args, GanConfig, NAME, start)


def train(args, cfg: GanConfig, topology: distributed.Topology, data: Path) -> int:
    reader = replica_reader(data, cfg.data, topology)
    if reader.shards.kind != "images":
        args.parser.error(f"{data} holds {reader.shards.kind} shards; the gan job reads shard-images output")
    reader.shards.expect("images", "the gan job's --data")
    shape = image_shape(reader.shards.manifest, reader.shards.folder)
    extra = {"config": to_dict(cfg), "data": str(data), "image_shape": list(shape)}

    def make_trainer(checkpointer, sinks, run_dir):
        return GanTrainer(cfg, topology, reader, checkpointer, sinks, extra, sample_dir=run_dir / "samples")

    return run_training(
        args,
        cfg,
        topology,
        job=NAME,
        data=data,
        make_trainer=make_trainer,
        about=f"{cfg.model.arch} on {shape[0]}×{shape[1]}×{shape[2]} images, {cfg.update.mode} updates",
        shown={
            "images_per_s": "{:,.0f}",
            "d_loss": "{:.3f}",
            "g_loss": "{:.3f}",
            "d_real": "{:.2f}",
            "d_fake": "{:.2f}",
        },
    )
