"""``gan``: train Goodfellow et al.'s adversarial nets (DESIGN.md §1, §6)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dist_train.trainers.gan.trainer import GanConfig, build_trainer
from launcher.commands.training import Job, JobData, add_job_flags, run_job
from launcher.default_data import mnist_shards

NAME = "gan"


def default_data(data_root: Path | None, with_dev: bool) -> JobData:
    """MNIST's first 50,000 training images (the gan job has no dev set)."""
    return JobData(mnist_shards("train", data_root, NAME))


JOB = Job(name=NAME, config_type=GanConfig, build_trainer=build_trainer, default_data=default_data)


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
    p.set_defaults(run=lambda args: run_job(args, JOB), parser=p)
