"""``translate`` and ``evaluate``: decode with one checkpoint or an ensemble; score against references."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from data_shards.errors import UserError
from data_shards.textio import TextSource, detect_format
from data_shards.wmt14 import find_test_set, wmt14_root
from dist_train.checkpoint import newest_in
from dist_train.decoding import BeamConfig
from dist_train.distributed import DEVICE_KINDS, device_kind
from dist_train.evaluation import bleu, copy_baseline_bleu
from dist_train.translation import Translator
from launcher.commands.common import add_threads_flag, make_config, print_summary, record_evaluation, say, use_threads
from launcher.paths import shared_data

# Source lengths (words) that --examples prefers: long enough to show word order and vocabulary,
# short enough to read at a glance.
EXAMPLE_WORDS = (8, 20)
REPRODUCTION_DOC = "docs/REPRODUCTION.md"


def add_decoding_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        action="append",
        type=Path,
        required=True,
        metavar="C",
        help="a checkpoint; repeat it for an ensemble (log-probabilities averaged)",
    )
    p.add_argument("--beam", type=int, default=12, help="beam size (1: greedy)")
    p.add_argument(
        "--length-penalty",
        type=float,
        default=0.0,
        help="GNMT alpha; 0 ranks hypotheses by log-probability, as the paper",
    )
    p.add_argument(
        "--unk-penalty",
        type=float,
        default=0.0,
        help="subtract this from log p(<unk>) at every step; inf never emits <unk>",
    )
    p.add_argument(
        "--no-replace-unk",
        dest="replace_unk",
        action="store_false",
        help="keep <unk> in the output; by default a model with attention replaces each <unk> with "
        "the source token it attended to most (Luong et al., 2015)",
    )
    p.add_argument("--batch-size", type=int, default=32, help="sentences decoded together")
    add_device_flag(p)
    add_threads_flag(p)


def add_device_flag(p: argparse.ArgumentParser) -> None:
    """``--device``, for commands that load a checkpoint's model and run it (read it with
    ``inference_device(args.device)``)."""
    p.add_argument(
        "--device",
        type=device_name,
        default="auto",
        metavar="auto|cpu|cuda|cuda:N",
        help="where the model runs: auto is the first GPU when one is visible, else the CPU; "
        "cuda or cuda:N is an error when that GPU is not visible",
    )


def device_name(text: str) -> str:
    """argparse's check of ``--device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    try:
        kind = "auto" if text == "auto" else torch.device(text).type
    except RuntimeError:
        kind = None
    if kind not in ("auto", "cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{text!r} is not auto, cpu, cuda or cuda:N")
    return text


def inference_device(requested: str) -> torch.device:
    """The device ``--device`` names, checked against the GPUs this process sees: ``auto`` is the
    first GPU when one is visible, else the CPU. A UserError (one line) when the GPU asked for is
    not visible."""
    if requested in DEVICE_KINDS:
        return torch.device("cuda:0" if device_kind(requested, setting="--device ") == "cuda" else "cpu")
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = torch.device(requested)
    if device.type == "cuda" and not visible:
        raise UserError(None, f"--device {requested}, but no GPU is visible to this process (use cpu or auto)")
    if device.type == "cuda" and (device.index or 0) >= visible:
        raise UserError(None, f"--device {requested}, but this process sees only {visible} GPU(s), from cuda:0")
    return device


def add_parser(jobs) -> None:
    p = jobs.add_parser(
        "translate",
        help="translate sentences with beam search",
        description="Read source sentences (one a line) from --input or stdin, write detokenized "
        "translations, one a line, to --output or stdout.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_decoding_flags(p)
    p.add_argument("--input", type=Path, default=None, help="source file (plain, .gz or SGM); default stdin")
    p.add_argument("--output", type=Path, default=None, help="default stdout")
    p.set_defaults(run=run_translate, parser=p)

    e = jobs.add_parser(
        "evaluate",
        help="BLEU and perplexity on a test set; prints one JSON line",
        description="Translate --src and score it against --ref: sacreBLEU on detokenized text "
        "(bleu, with its signature), BLEU on Moses tokens (bleu_tokenized, comparable "
        "to the paper's multi-bleu), and perplexity of the references.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_decoding_flags(e)
    add_test_set_flags(e)
    e.add_argument("--limit", type=int, default=0, help="only the first N sentences (0: all)")
    e.add_argument(
        "--examples",
        type=int,
        default=0,
        metavar="N",
        help="after scoring, print N test sentences beside their reference and the model's translation "
        f"(spread over the test set, sources of {EXAMPLE_WORDS[0]}-{EXAMPLE_WORDS[1]} words preferred)",
    )
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(run=run_evaluate, parser=e)


def example_indices(sources: list[str], count: int) -> list[int]:
    """``count`` indices of ``sources`` spread evenly over them, taken from the sources of moderate
    length (EXAMPLE_WORDS) when there are enough of those; the same on every run."""
    moderate = [i for i, line in enumerate(sources) if EXAMPLE_WORDS[0] <= len(line.split()) <= EXAMPLE_WORDS[1]]
    pool = moderate if len(moderate) >= count else list(range(len(sources)))
    count = min(count, len(pool))
    return [pool[(2 * k + 1) * len(pool) // (2 * count)] for k in range(count)]


def print_examples(indices: list[int], sources: list[str], references: list[str], hypotheses: list[str]) -> None:
    for n, i in enumerate(indices, 1):
        say(f"example {n} of {len(indices)} (test sentence {i + 1}):")
        say(f"  source:    {sources[i]}\n  reference: {references[i]}\n  model:     {hypotheses[i]}")


def in_context(bleu_model: float, bleu_copy: float) -> str:
    """The score beside copying the source unchanged (which shares names, numbers and punctuation with
    the reference), and where the project's measured runs are described."""
    verdict = "above" if bleu_model > bleu_copy else "not above"
    return (
        f"In context: copying the source unchanged scores BLEU {bleu_copy} on these sentences, so {bleu_model} "
        f"is {verdict} that floor; the project's measured runs beside the papers': {REPRODUCTION_DOC}"
    )


def read_sentences(path: Path) -> list[str]:
    return list(TextSource(path=path, format=detect_format(path)).records())


def translator(args) -> tuple[Translator, BeamConfig]:
    use_threads(args)
    device = inference_device(args.device)
    checkpoints = [newest_in(path) for path in args.checkpoint]
    beam = make_config(
        args.parser, BeamConfig, beam=args.beam, length_penalty=args.length_penalty, unk_penalty=args.unk_penalty
    )
    return Translator(checkpoints, device=device), beam


def run_translate(args: argparse.Namespace) -> int:
    model, beam = translator(args)
    lines = read_sentences(args.input) if args.input else sys.stdin.read().splitlines()
    outputs = model.translate(lines, beam, batch_size=args.batch_size, replace_unk=args.replace_unk, progress=True)
    text = "".join(f"{line}\n" for line in outputs)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def other_sources(sources: list[str]) -> list[str]:
    """Each sentence's source replaced by the next one's (the last by the first): a model that ignored its
    source would score the references as well beside these."""
    return sources[1:] + sources[:1]


def add_test_set_flags(p: argparse.ArgumentParser) -> None:
    """--src, --ref and --data-root, which ``read_test_set`` reads."""
    p.add_argument("--src", type=Path, default=None, help="source sentences (plain, .gz or SGM); default newstest2014")
    p.add_argument("--ref", type=Path, default=None, help="reference translations, aligned with --src")
    p.add_argument("--data-root", type=Path, default=None, help="where to find newstest2014 when --src is not given")


def read_test_set(args: argparse.Namespace, limit: int) -> tuple[list[str], list[str]]:
    """(sources, references): --src and --ref, or newstest2014 as found under --data-root when neither is
    given; the first ``limit`` (0: all)."""
    if (args.src is None) != (args.ref is None):
        args.parser.error("give both --src and --ref, or neither (newstest2014)")
    if args.src is None:
        args.src, args.ref = find_test_set(wmt14_root(args.data_root, dict(os.environ), shared_data()))
    sources, references = read_sentences(args.src), read_sentences(args.ref)
    if len(sources) != len(references):
        raise UserError(args.src, f"has {len(sources)} sentences but {args.ref} has {len(references)}")
    return (sources[:limit], references[:limit]) if limit else (sources, references)


def run_evaluate(args: argparse.Namespace) -> int:
    if args.examples < 0:
        args.parser.error(f"--examples {args.examples}: give 0 (none) or more")
    model, beam = translator(args)
    sources, references = read_test_set(args, args.limit)
    start = time.perf_counter()
    hypotheses = model.translate(
        sources, beam, batch_size=args.batch_size, replace_unk=args.replace_unk, progress=not args.no_progress
    )
    seconds = time.perf_counter() - start
    scores = bleu(hypotheses, references, model.tgt.lang)
    perplexity = model.perplexity(sources, references)
    unpaired = model.perplexity(other_sources(sources), references)
    say(
        f"BLEU {scores['bleu']} (sacreBLEU, detokenized), {scores['bleu_tokenized']} (tokenized), "
        f"perplexity {perplexity:.2f} on {len(sources)} sentences ({unpaired:.2f} with each reference beside "
        "another sentence's source: what the model takes from its source)"
    )
    copy_bleu = copy_baseline_bleu(sources, references)
    say(in_context(scores["bleu"], copy_bleu))
    print_examples(example_indices(sources, args.examples), sources, references, hypotheses)
    checkpoints = [newest_in(c) for c in args.checkpoint]
    summary = {
        "job": "evaluate",
        **scores,
        "bleu_copy_baseline": copy_bleu,
        "perplexity": round(perplexity, 4),
        "perplexity_other_source": round(unpaired, 4),
        "num_sentences": len(sources),
        "beam": beam.beam,
        "device": str(model.device),
        "checkpoints": [str(c) for c in checkpoints],
        "translate_seconds": round(seconds, 2),
    }
    print_summary(summary)
    record_evaluation(checkpoints[0], summary)  # an ensemble's is recorded with its first model's run
    return 0
