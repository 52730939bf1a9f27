"""``report RUN_DIR``: PNG plots and a markdown summary of a run, from its JSONL logs."""

from __future__ import annotations

import argparse
from pathlib import Path

from dist_train.reporting import write_report
from launcher.commands.common import print_summary, say

NAME = "report"


def add_parser(jobs) -> None:
    p = jobs.add_parser(
        NAME,
        help="plots (PNG) and a markdown summary of a run directory's logs",
        description="Read RUN_DIR/train.jsonl and RUN_DIR/evaluations.jsonl (what evaluate and evaluate-gan "
        "append) and write RUN_DIR/report/training.png and report.md: s2s: perplexity (train, dev), words/s, "
        "learning rate, BLEU; gan: D and G losses, D(x) and D(G(z)), images/s, learning rate, Parzen and FCD, "
        "with the latest sample grid. The papers' figures that 'figures' drew into RUN_DIR/report/figures/ are "
        "linked from report.md (report itself never decodes: run 'figures --checkpoint RUN_DIR' to draw them).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.set_defaults(run=run, parser=p)


def run(args: argparse.Namespace) -> int:
    written = write_report(args.run_dir)
    say(f"report: {written['plot']}, {written['markdown']}")
    print_summary({"job": NAME, "run_dir": str(args.run_dir), **written})
    return 0
