"""``s2s``: train the paper's deep LSTM translator (DESIGN.md §1, §3, §6)."""

from __future__ import annotations

import argparse
from pathlib import Path

from data_shards.shard_set import shard_location
from dist_train.trainers.s2s.trainer import S2SConfig, build_trainer
from launcher.commands.training import Job, JobData, add_job_flags, run_job
from launcher.default_data import wmt14_shards

NAME = "s2s"


def default_data(data_root: Path | None, with_dev: bool) -> JobData:
    """The WMT'14 training corpora found in the raw data, and newstest2013 as the dev set (``with_dev``)."""
    return JobData(*wmt14_shards(data_root, NAME, with_dev=with_dev))


JOB = Job(name=NAME, config_type=S2SConfig, build_trainer=build_trainer, default_data=default_data)


def add_parser(jobs) -> None:
    p = jobs.add_parser(
        NAME,
        help="train the seq2seq LSTM translator",
        description="Train Sutskever et al.'s deep LSTM encoder-decoder on shard-text shards, "
        "as one process or data-parallel under torchrun (one process per replica).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_job_flags(p, NAME, "small", raw_data="$WMT14_ROOT, else ../shared/data/wmt14-en-fr")
    p.add_argument(
        "--dev",
        type=shard_location,
        default=None,
        metavar="SHARDS",
        help="dev shards (same vocabulary): perplexity every eval.every_steps and at the end; "
        "(none with --data given and --dev not; with --data unset, newstest2013 by default)",
    )
    p.set_defaults(run=lambda args: run_job(args, JOB), parser=p)
