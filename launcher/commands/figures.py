"""``figures``: the papers' figures that a checkpoint alone can draw (``dist_train.figures``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from data_shards.errors import UserError
from dist_train.checkpoint import newest_in, read_checkpoint
from dist_train.checkpoint.schema import JOBS
from dist_train.decoding import BeamConfig
from dist_train.figures import write_json
from dist_train.figures.gan_interpolation import NUM_ROWS, NUM_STEPS, interpolate, save_interpolation
from dist_train.figures.s2s_bleu_by import NUM_RANK_BINS, bleu_by, plot_bleu_by
from dist_train.figures.s2s_states import plot_state_projections, state_projections
from dist_train.inference import load_model
from dist_train.models.gan import GanModelConfig
from dist_train.translation import Translator
from launcher.commands.common import add_threads_flag, make_config, print_summary, say, use_threads
from launcher.commands.translate import add_device_flag, add_test_set_flags, inference_device, read_test_set

NAME = "figures"
DRAWN = {"s2s": "Sutskever et al.'s Figures 2 and 3", "gan": "Goodfellow et al.'s Figure 3"}


def add_parser(jobs) -> None:
    p = jobs.add_parser(
        NAME,
        help="the papers' figures drawn from a checkpoint: s2s Figures 2 and 3, gan Figure 3",
        description="Draw the papers' figures that need no training beyond the checkpoint, as PNGs with their "
        "data as JSON beside them (default RUN_DIR/report/figures/, which 'report' links). An s2s checkpoint "
        "gives Sutskever et al.'s Figure 2 (s2s_states: a 2-D PCA, one panel per phrase set, of the encoder's "
        "top-layer final hidden state h for the paper's phrases, 'John admires Mary' ... and 'I gave her a card "
        "in the garden' ...) and Figure 3 (s2s_bleu_by: BLEU on the test set, newstest2014 unless --src/--ref, "
        "translated once with beam search, by source length in the paper's bins <=7, 8-12, 13-17, 18-22, 23-28, "
        "29-35, 36+ tokens, and by the "
        "source words' average frequency rank, the sentences sorted by it and cut into --rank-bins equal groups). "
        "A gan checkpoint gives Goodfellow et al.'s Figure 3 (gan_interpolation: --rows rows of --steps images "
        "along straight lines between two seeded random z, drawn by the EMA generator when there is one).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", type=Path, required=True, metavar="C", help="a checkpoint, or a run directory")
    p.add_argument("--out", type=Path, default=None, help="default: the checkpoint's RUN_DIR/report/figures")
    s2s = p.add_argument_group("s2s (Figure 3)")
    s2s.add_argument("--test-sentences", type=int, default=0, metavar="N", help="the first N test sentences (0: all)")
    s2s.add_argument("--beam", type=int, default=BeamConfig().beam, help="beam size, as evaluate's (1: greedy)")
    s2s.add_argument("--batch-size", type=int, default=32, help="sentences decoded together")
    s2s.add_argument("--rank-bins", type=int, default=NUM_RANK_BINS, help="equal groups of the rank-sorted sentences")
    add_test_set_flags(s2s)
    s2s.add_argument("--no-progress", action="store_true")
    gan = p.add_argument_group("gan (Figure 3)")
    gan.add_argument("--rows", type=int, default=NUM_ROWS, help="lines in z space, one a row")
    gan.add_argument("--steps", type=int, default=NUM_STEPS, help="images per line, both ends included")
    gan.add_argument("--seed", type=int, default=0, help="of the lines' random end points")
    add_device_flag(p)
    add_threads_flag(p)
    p.set_defaults(run=run, parser=p)


def check_counts(args: argparse.Namespace) -> None:
    for flag, value, least in (("--test-sentences", args.test_sentences, 0), ("--rank-bins", args.rank_bins, 1),
                               ("--rows", args.rows, 1), ("--steps", args.steps, 2)):  # fmt: skip
        if value < least:
            args.parser.error(f"{flag} {value}: give {least} or more")


def checkpoint_job(checkpoint: Path) -> str:
    """s2s or gan, read from the checkpoint without loading its weights; any other is a UserError."""
    job = read_checkpoint(checkpoint, mmap=True).job
    if job not in DRAWN:
        raise UserError(checkpoint, f"is {JOBS[job]}; figures needs {JOBS['s2s']} or {JOBS['gan']}")
    return job


def run_directory(checkpoint: Path) -> Path:
    """The run a checkpoint belongs to (``<run dir>/checkpoints/step-N.pt``); else its folder."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def s2s_figures(args: argparse.Namespace, checkpoint: Path, out: Path, device: torch.device) -> dict:
    beam = make_config(args.parser, BeamConfig, beam=args.beam)
    sources, references = read_test_set(
        args, args.test_sentences
    )  # before any work: a missing test set is the user's to fix
    translator = Translator([checkpoint], device=device)
    say("Figure 2: the encoder's final states of the paper's phrases")
    states = state_projections(translator)
    files = [write_json(states, out / "s2s_states.json"), plot_state_projections(states, out / "s2s_states.png")]
    say(f"Figure 3: translating {len(sources)} sentences of {args.src.name} (beam {beam.beam}), then BLEU by bin")
    hypotheses = translator.translate(sources, beam, batch_size=args.batch_size, progress=not args.no_progress)
    scores = bleu_by(sources, references, hypotheses, translator.src, translator.tgt.lang, num_rank_bins=args.rank_bins)
    scores["beam"] = beam.beam
    files += [write_json(scores, out / "s2s_bleu_by.json"), plot_bleu_by(scores, out / "s2s_bleu_by.png")]
    return {
        "files": files,
        "bleu": scores["bleu"],
        "num_sentences": len(sources),
        "beam": beam.beam,
        "test_set": str(args.src),
    }


def gan_figures(args: argparse.Namespace, checkpoint: Path, out: Path, device: torch.device) -> dict:
    loaded = load_model(checkpoint, "gan", "figures", device)
    cfg = GanModelConfig(**loaded.checkpoint.model_config)
    say(f"Figure 3: {args.rows} lines in z space, {args.steps} images each")
    images, data = interpolate(loaded.model, cfg, num_rows=args.rows, num_steps=args.steps, seed=args.seed)
    data["generator"] = loaded.checkpoint.inference_network()
    files = [
        write_json(data, out / "gan_interpolation.json"),
        save_interpolation(images, cfg, out / "gan_interpolation.png"),
    ]
    return {"files": files, "generator": data["generator"]}


def run(args: argparse.Namespace) -> int:
    check_counts(args)
    use_threads(args)
    checkpoint = newest_in(args.checkpoint)
    job = checkpoint_job(checkpoint)
    out = args.out or run_directory(checkpoint) / "report" / "figures"
    say(f"figures: {DRAWN[job]} from {checkpoint} into {out}")
    drawn = (s2s_figures if job == "s2s" else gan_figures)(args, checkpoint, out, inference_device(args.device))
    files = [str(path) for path in drawn.pop("files")]
    say(f"figures: {', '.join(files)}")
    print_summary({"job": NAME, "kind": job, "checkpoint": str(checkpoint), "out": str(out), "files": files, **drawn})
    return 0
