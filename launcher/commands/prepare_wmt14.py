"""``prepare-wmt14``: download the WMT'14 English–French corpora (verified, resumable) and unpack them."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from data_shards.download import CORPORA, WMT14_EN_FR, Remote, fetch, unpack
from launcher.commands.common import print_summary, say
from launcher.paths import PROJECT_ROOT

NAME = "prepare-wmt14"
DONE = ".complete"


def add_parser(jobs) -> None:
    p = jobs.add_parser(
        NAME,
        help="download WMT'14 en-fr (the paper's training sets and newstest2012/13/14)",
        description="Download the WMT'14 English-French archives, check each against its "
        "published checksum, resume interrupted downloads, and unpack the "
        "English-French files into OUT/<corpus>/. Use the result with "
        "'s2s --data-root OUT' or WMT14_ROOT=OUT.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=PROJECT_ROOT / "runs" / "wmt14-en-fr", help="destination folder")
    p.add_argument("--corpora", default=",".join(CORPORA), help=f"comma-separated subset of {', '.join(CORPORA)}")
    p.add_argument(
        "--mirror",
        default=None,
        metavar="URL",
        help="fetch every archive from this base URL instead, at its path on the official site "
        "(e.g. BASE/wmt13/training-parallel-europarl-v7.tgz); http://, https:// or file://",
    )
    p.add_argument(
        "--checksums",
        type=Path,
        default=None,
        metavar="F.json",
        help='replace published checksums: {"archive name": {"sha256": ..., "size": ...}} (a private mirror)',
    )
    p.add_argument("--keep-archives", action="store_true", help="keep the downloaded archives after unpacking")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=run, parser=p)


def selected(args: argparse.Namespace) -> list[Remote]:
    names = [n.strip() for n in args.corpora.split(",") if n.strip()]
    unknown = sorted(set(names) - set(CORPORA))
    if unknown:
        args.parser.error(f"unknown corpora {', '.join(unknown)}; choose from {', '.join(CORPORA)}")
    overrides = json.loads(args.checksums.read_text()) if args.checksums else {}
    remotes = []
    for remote in WMT14_EN_FR:
        if remote.corpus in names:
            given = overrides.get(remote.corpus)
            if given is not None:
                remote = dataclasses.replace(
                    remote, sha256=given.get("sha256"), md5=given.get("md5"), size=given.get("size")
                )
            remotes.append(remote)
    return remotes


def run(args: argparse.Namespace) -> int:
    archives = args.out / "archives"
    archives.mkdir(parents=True, exist_ok=True)
    unpacked = {}
    for remote in selected(args):
        done = args.out / remote.corpus / DONE
        if done.is_file():
            say(f"{remote.corpus}: already prepared")
        else:
            archive = fetch(remote, archives, mirror=args.mirror, progress=not args.no_progress, say=say)
            files = unpack(remote, archive, args.out)
            done.write_text("".join(f"{f.name}\n" for f in files))
            if not args.keep_archives:
                archive.unlink()
        unpacked[remote.corpus] = done.read_text().split()
    if not any(archives.iterdir()):
        archives.rmdir()
    say(f"WMT'14 en-fr is in {args.out}: train with 's2s --data-root {args.out}' or WMT14_ROOT={args.out}")
    print_summary({"job": NAME, "out": str(args.out), "corpora": unpacked})
    return 0
