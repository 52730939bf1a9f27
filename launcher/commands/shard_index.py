"""``shard-index``: the manifest of a webdataset folder written by another tool (``data_shards.shard_index``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from data_shards.shard_index import ShardIndexConfig, shard_index
from launcher.commands.common import make_config, print_summary, say

NAME = "shard-index"


def add_parser(jobs) -> None:
    p = jobs.add_parser(
        NAME,
        help="write the manifest of webdataset shards another tool wrote, so that training reads them",
        description="Index a folder of webdataset tars (webdataset.ShardWriter's, say) whose samples carry our "
        "fields: pair.json with src, tgt, src_ids and tgt_ids for the s2s job (ids of --vocab-from's "
        "vocabularies), or png and cls for the gan job. Every sample is decoded first; then DIR/manifest.json "
        "(each shard's samples, bytes and sha256) and, for text, DIR/lengths.npy and the vocabularies are "
        "written beside the tars, which are left as they are. Then: s2s|gan --data DIR.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("folder", type=Path, metavar="DIR", help="the folder of tars")
    p.add_argument(
        "--shards",
        default="",
        metavar="PATTERN",
        help="the tars, in order, in webdataset's brace notation, e.g. 'train-{000000..000009}.tar' "
        "(default: every *.tar of DIR, sorted by name)",
    )
    p.add_argument("--vocab-from", type=Path, default=None, metavar="SHARD_DIR", help="text: the ids' vocabularies")
    p.add_argument("--overwrite", action="store_true", help="replace a manifest already in DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run, parser=p)


def run(args: argparse.Namespace) -> int:
    cfg = make_config(args.parser, ShardIndexConfig, folder=args.folder, shards=args.shards,
                      vocab_from=args.vocab_from, overwrite=args.overwrite, progress=not args.no_progress)  # fmt: skip
    manifest = shard_index(cfg)
    count, shards = manifest["num_samples"], len(manifest["shards"])
    say(f"{NAME}: indexed {count} {manifest['kind']} samples in {shards} shard(s) of {cfg.folder}")
    print_summary({"job": NAME, "folder": str(cfg.folder), "kind": manifest["kind"],
                   "num_samples": manifest["num_samples"], "num_shards": len(manifest["shards"])})  # fmt: skip
    return 0
