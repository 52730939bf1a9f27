"""``shard-images``: image sets → PNG + class webdataset shards (DESIGN.md §5)."""

from __future__ import annotations

import argparse
from pathlib import Path

from data_shards.image_sources import IMAGE_FORMATS
from data_shards.shard_images import COLOURS, ShardImagesConfig, shard_images
from launcher.commands.common import make_config, print_summary, say

NAME = "shard-images"


def add_parser(jobs) -> None:
    p = jobs.add_parser(
        NAME,
        help="pack image sets into webdataset shards",
        description="Read MNIST IDX files (labels found beside the images), CSV rows of pixels "
        "and a label, folders or tar archives of <class>/<image> files, or .npz "
        "arrays, and write PNG + class samples into DIR/*.tar with DIR/manifest.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--input", nargs="+", type=Path, required=True, metavar="PATH", help="files or folders")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--format", choices=IMAGE_FORMATS, default="auto", help="input format")
    p.add_argument("--shard-size", type=int, default=10_000, metavar="N", help="images per shard")
    p.add_argument("--skip", type=int, default=0, metavar="N", help="leave out the inputs' first N images")
    p.add_argument(
        "--limit",
        type=int,
        default=0,
        metavar="N",
        help="keep at most N images after those (0: all); "
        "e.g. MNIST's 50k/10k train/valid split: --limit 50000, then --skip 50000",
    )
    p.add_argument(
        "--resolution",
        type=int,
        default=0,
        metavar="N",
        help="centre-crop every image to a square and resize it to N×N (0: keep sizes); e.g. 32 for dcgan-32",
    )
    p.add_argument(
        "--colour",
        choices=COLOURS,
        default="keep",
        help="make every image RGB or grayscale (a set that mixes the two needs one for the gan job)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace shards already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run, parser=p)


def run(args: argparse.Namespace) -> int:
    cfg = make_config(
        args.parser,
        ShardImagesConfig,
        input=tuple(args.input),
        out=args.out,
        format=args.format,
        shard_size=args.shard_size,
        skip=args.skip,
        limit=args.limit,
        resolution=args.resolution,
        colour=args.colour,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    manifest = shard_images(cfg)
    if left_out := manifest["left_out_files"]:
        kinds = ", ".join(f"{count} {suffix}" for suffix, count in sorted(left_out.items()))
        say(f"shard-images: left out {sum(left_out.values())} file(s) that are not images ({kinds})")
    if manifest["image_shape"] is None:
        say(
            "shard-images: the images have several sizes; the gan job needs one: shard them again with "
            "--resolution N (centre crop and resize) and --colour rgb|gray"
        )
    say(
        f"wrote {manifest['num_samples']} images ({len(manifest['classes'])} classes, shape "
        f"{manifest['image_shape']}) in {len(manifest['shards'])} shard(s) to {cfg.out}"
    )
    print_summary(
        {
            "job": NAME,
            "out": str(cfg.out),
            "num_samples": manifest["num_samples"],
            "num_shards": len(manifest["shards"]),
            "classes": manifest["classes"],
            "image_shape": manifest["image_shape"],
            "left_out_files": sum(manifest["left_out_files"].values()),
        }
    )
    return 0
