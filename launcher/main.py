"""``python -m launcher.main <job> ...``: the single command line of the project.

Every job prints progress to stderr and ends its stdout with one JSON summary line.
"""

from __future__ import annotations

import argparse
import sys

from data_shards.errors import UserError
from dist_train.distributed import fit_threads_to_cores, take_local_rank_flag
from dist_train.peers import PeerError
from launcher.commands import (
    bench,
    evaluate_gan,
    export,
    figures,
    gan,
    preflight,
    prepare_wmt14,
    report,
    reproduce,
    s2s,
    shard_images,
    shard_index,
    shard_text,
    submit,
    train_classifier,
    translate,
)

JOBS = (
    shard_text,
    shard_images,
    shard_index,
    prepare_wmt14,
    s2s,
    translate,
    gan,
    evaluate_gan,
    export,
    train_classifier,
    bench,
    preflight,
    submit,
    report,
    figures,
    reproduce,
)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's, with a usage error as one line like every other error (``error: <problem>``) and where
    to read more, instead of the usage block; every job's parser is one (subparsers take their parent's class)."""

    def error(self, message: str):
        self.exit(2, f"error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m launcher.main",
        description="Distributed training of the 2014 seq2seq LSTM (WMT'14 en→fr) and GAN (MNIST) papers.",
        epilog="Run 'python -m launcher.main JOB --help' for a job's options.",
    )
    parser.add_argument(
        "--local_rank",
        "--local-rank",
        type=int,
        default=None,
        help="as $LOCAL_RANK: DeepSpeed's launcher (deepspeed --num_gpus N --module launcher.main JOB ...) and "
        "torch.distributed.launch pass it before the job",
    )
    jobs = parser.add_subparsers(dest="job", required=True, metavar="JOB", title="jobs")
    for job in JOBS:
        job.add_parser(jobs)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The command line as a job takes it. argparse ends a job's positionals at its first option, so
    ``key=value`` overrides given after options arrive as extras; anything else is an unknown argument."""
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "job_args"):  # submit: what follows -- is the submitted job's
        args.job_args = [*args.job_args, *(extra[1:] if extra[0] == "--" else extra)]
    elif extra and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    take_local_rank_flag(args.local_rank)
    fit_threads_to_cores()  # a job given 1 CPU of a shared node runs 1 thread, not one per core there
    try:
        return args.run(args)
    except (UserError, PeerError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # on a path the user gave (read-only, full, missing): theirs to fix, not a bug
        if err.filename is None:
            raise
        print(f"error: {UserError.from_os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
