"""``shard-text``: parallel corpora → token-id webdataset shards (DESIGN.md §5)."""

from __future__ import annotations

import argparse
from pathlib import Path

from data_shards.shard_text import VOCAB_KINDS, ShardTextConfig, shard_text
from launcher.commands.common import make_config, print_summary, say

NAME = "shard-text"


def add_parser(jobs) -> None:
    p = jobs.add_parser(
        NAME,
        help="tokenize parallel text into webdataset shards",
        description="Read parallel corpora (plain, .gz, WMT SGM or TSV: detected automatically), "
        "normalize, filter, build a vocabulary and write token ids + text into "
        "DIR/*.tar shards with DIR/manifest.json. Same inputs and flags give "
        "byte-identical output whatever --workers is.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--src", nargs="+", type=Path, required=True, metavar="F", help="source-side files (or TSV files)")
    p.add_argument(
        "--tgt",
        nargs="+",
        type=Path,
        default=[],
        metavar="F",
        help="target-side files, one per --src, line-aligned; omit for TSV input",
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--vocab",
        choices=VOCAB_KINDS,
        default="word",
        help="word: Moses tokens, most frequent kept, rest <unk> (the paper); sentencepiece: unigram model",
    )
    p.add_argument("--src-vocab-size", type=int, default=160_000, metavar="N", help="entries incl. 4 specials")
    p.add_argument("--tgt-vocab-size", type=int, default=80_000, metavar="N", help="entries incl. 4 specials")
    p.add_argument(
        "--vocab-from",
        type=Path,
        default=None,
        metavar="DIR",
        help="reuse the tokenizer and vocabulary of this shard folder (for dev and test sets); overrides --vocab",
    )
    p.add_argument("--src-lang", default="", help="Moses language; default: from the file name (train.en → en)")
    p.add_argument("--tgt-lang", default="", help="as --src-lang, for the target side")
    p.add_argument("--max-len", type=int, default=100, metavar="N", help="drop pairs with a side longer than N tokens")
    p.add_argument(
        "--max-len-ratio",
        type=float,
        default=3.0,
        metavar="R",
        help="drop pairs whose longer side has over R times the tokens of the shorter",
    )
    p.add_argument("--shard-size", type=int, default=10_000, metavar="N", help="pairs per shard")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="tokenizer processes")
    p.add_argument("--tsv-columns", default="0,1", metavar="S,T", help="source and target column of TSV input")
    p.add_argument("--seed", type=int, default=0, help="sentencepiece sampling seed")
    p.add_argument("--overwrite", action="store_true", help="replace shards already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run, parser=p)


def run(args: argparse.Namespace) -> int:
    try:
        columns = tuple(int(c) for c in args.tsv_columns.split(","))
    except ValueError:
        args.parser.error(f"--tsv-columns must be two integers such as 0,1, not {args.tsv_columns!r}")
    cfg = make_config(
        args.parser,
        ShardTextConfig,
        src=tuple(args.src),
        tgt=tuple(args.tgt),
        out=args.out,
        vocab=args.vocab,
        src_vocab_size=args.src_vocab_size,
        tgt_vocab_size=args.tgt_vocab_size,
        src_lang=args.src_lang,
        tgt_lang=args.tgt_lang,
        max_len=args.max_len,
        max_len_ratio=args.max_len_ratio,
        shard_size=args.shard_size,
        workers=args.workers,
        overwrite=args.overwrite,
        tsv_columns=columns,
        vocab_from=args.vocab_from,
        seed=args.seed,
        progress=not args.no_progress,
    )
    same = sorted({str(a) for a in cfg.src} & {str(b) for b in cfg.tgt})
    if same or any(a.resolve() == b.resolve() for a, b in zip(cfg.src, cfg.tgt) if a.exists() and b.exists()):
        say(f"shard-text: warning: --src and --tgt name the same file ({', '.join(same) or 'after links'}): "
            "every pair would be a sentence and itself")  # fmt: skip
    manifest = shard_text(cfg)
    counts = manifest["filters"]["counts"]
    say(
        f"wrote {manifest['num_samples']} pairs in {len(manifest['shards'])} shard(s) to {cfg.out} "
        f"(vocab {manifest['vocab']['src']['size']}/{manifest['vocab']['tgt']['size']}; dropped "
        f"{counts['empty']} empty, {counts['too_long']} too long, {counts['bad_ratio']} bad ratio)"
    )
    print_summary(
        {
            "job": NAME,
            "out": str(cfg.out),
            "num_samples": manifest["num_samples"],
            "num_shards": len(manifest["shards"]),
            "filters": counts,
            "vocab_sizes": {k: v["size"] for k, v in manifest["vocab"].items()},
        }
    )
    return 0
