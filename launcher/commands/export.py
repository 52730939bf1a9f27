"""``export``: a checkpoint's model alone, for inference: weights, vocabularies, config and format version."""

from __future__ import annotations

import argparse
from pathlib import Path

from dist_train.checkpoint import atomic_save, newest_in, read_checkpoint
from dist_train.checkpoint.schema import DTYPES
from launcher.commands.common import print_summary, say

NAME = "export"


def add_parser(jobs) -> None:
    p = jobs.add_parser(
        NAME,
        help="write a checkpoint's model alone (no optimizer, reader or RNG state), for inference",
        description="Write only what translate, evaluate and evaluate-gan need from a training checkpoint: the "
        "network's weights (for a gan, the generator that samples), the vocabularies, the config and the format "
        "version. Those commands take the exported file like a checkpoint.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint, or a run directory (its newest)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="where to write the model")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="floating-point weights in this type")
    p.set_defaults(run=run, parser=p)


def run(args: argparse.Namespace) -> int:
    checkpoint = newest_in(args.checkpoint)
    exported = read_checkpoint(checkpoint, purpose="export").for_inference(args.dtype)
    atomic_save(exported.to_state(), args.out)
    full, alone = checkpoint.stat().st_size, args.out.stat().st_size
    say(f"{NAME}: {args.out}, {alone / 1e6:.2f} MB: {alone / full:.1%} of the checkpoint's {full / 1e6:.2f} MB")
    print_summary(
        {
            "job": NAME,
            "checkpoint": str(checkpoint),
            "out": str(args.out),
            "dtype": args.dtype,
            "bytes": alone,
            "checkpoint_bytes": full,
            "fraction": round(alone / full, 4),
        }
    )
    return 0
