"""``reproduce``: the papers' claims re-run at small scale on the real data in ../shared/data, and
docs/REPRODUCTION.md written from what those runs measured.

s2s (Sutskever et al.): the paper's model (``--architecture paper``: no attention, no copying; at the
`small` preset's size) or the `small` preset's (``small``: attention and copying), trained on the 40k
pairs of the WMT'14 training sample (dev: giga-fren's own val split, the domain of 68% of the training
pairs; newstest2013 at --scale paper) for the same number of steps every run:
  * reversal: reversed against plain source order, 2 layers, every seed;
  * depth: 1, 2 and 4 layers (reversed), every seed, at equal steps;
  * beam 1, 2 and 12 on the first seed's 2-layer reversed model;
  * an ensemble of the first two seeds' 2-layer reversed models against each alone.
Tested on the first ``--test-sentences`` of giga-fren's own test split (newstest2014 at --scale paper):
perplexity and BLEU (beam 2 unless said).
gan (Goodfellow et al.): paper-mnist for ``--gan-epochs``, then evaluate-gan on checkpoints along the
run (the Parzen estimate against training time) and on the last: the Parzen estimate on the 10,000
test images, FCD, class coverage, the sample grid and the nearest training images.
Each claim is said to be reproduced (the direction holds with every seed apart), not reproduced (the
opposite direction, seeds apart) or not resolved at this budget (the seeds' ranges overlap).

Every step (the data, each training run and evaluation, the document) is a subprocess of this launcher,
kept under ``--work-dir`` (``launcher.study``): what is done is reused, so an interrupted reproduce
continues where it stopped (delete a run's folder to redo it). The work dir records the study's
settings: other settings need another ``--work-dir``. ``--submit`` runs the same steps as Slurm jobs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dist_train.distributed import local_cores
from launcher.commands.common import print_summary, say
from launcher.commands.submit import add_allocation_flags
from launcher.paths import PROJECT_ROOT
from launcher.study import slurm
from launcher.study.budget import budget_minutes
from launcher.study.plan import ARCHITECTURES, DEFAULTS, SCALES, Study, steps
from launcher.study.run import run_here, run_step

NAME = "reproduce"


PER_SCALE_FLAGS = (  # flag, Study field, type, help: the default depends on --scale (DEFAULTS)
    ("--steps-per-run", "steps", int, "training steps of each s2s run (0: its epochs)"),
    ("--seeds", "seeds", int, "seeds of every configuration (at least 2: the spread)"),
    ("--test-sentences", "test_sentences", int, "test sentences (0: all; giga-fren test 1500, newstest2014 3003)"),
    ("--gan-epochs", "gan_epochs", float, "training epochs of the GAN (0: its recipe's)"),
    ("--classifier-epochs", "classifier_epochs", int, "of the MNIST classifier behind FCD"),
)


def per_scale(what: str, key: str) -> str:
    """A flag's help with its default at each scale (0: the recipe's, at the paper scale)."""
    return f"{what} (default per scale: " + ", ".join(f"{scale} {DEFAULTS[scale][key]:g}" for scale in DEFAULTS) + ")"


def add_parser(jobs) -> None:
    p = jobs.add_parser(
        NAME,
        help="re-run the papers' claims (here, or as a graph of Slurm jobs) and write docs/REPRODUCTION.md",
        description=__doc__.split("\n\n")[0] + " Defaults (--scale small) take under 2 hours on 2 CPU "
        "cores, --scale quick about 40 minutes; it prints its budget first. Runs are kept in --work-dir and "
        "reused. --submit makes every step a Slurm job after the jobs it needs; submitted again, it skips what "
        "is done and keeps what is queued.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--scale",
        choices=sorted(SCALES),
        default="small",
        help="small: the CPU study (< 2 h on 2 cores); quick: the same in a third of the steps (~40 min, too "
        "short for some effects: the document says which); paper: the papers' recipes (a cluster); tiny: "
        "seconds, for tests",
    )
    p.add_argument(
        "--architecture",
        choices=sorted(ARCHITECTURES),
        default="paper",
        help="small/quick scale: paper (the paper's model: no attention, no copying) or small (both), at the "
        "small preset's size",
    )
    for flag, key, kind, what in PER_SCALE_FLAGS:
        p.add_argument(flag, type=kind, default=argparse.SUPPRESS, dest=key, help=per_scale(what, key))
    p.add_argument(
        "--data-root", type=Path, default=None, help="raw WMT'14 data the user has (paper: skips the download)"
    )
    p.add_argument(
        "--parallel",
        type=int,
        default=min(2, local_cores()),
        help="steps run at once here, each on its share of the cores (two 1-thread runs on 2 cores take "
        "~12%% less time than one after the other on 2 threads)",
    )
    p.add_argument("--work-dir", type=Path, default=PROJECT_ROOT / "runs" / "reproduce")
    p.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "REPRODUCTION.md")
    graph = p.add_argument_group("Slurm (--submit)")
    graph.add_argument("--submit", action="store_true", help="submit the study as a graph of Slurm jobs")
    graph.add_argument("--dry-run", action="store_true", help="with --submit: print the graph and the scripts only")
    graph.add_argument("--status", action="store_true", help="say where a submitted study stands")
    add_allocation_flags(graph)
    p.add_argument("--run-step", default=None, metavar="NAME", help=argparse.SUPPRESS)  # a Slurm step's own
    p.set_defaults(run=run, parser=p)


def study_of(args: argparse.Namespace) -> Study:
    given = {key: getattr(args, key, None) for _, key, _, _ in PER_SCALE_FLAGS}
    values = {k: DEFAULTS[args.scale][k] if v is None else v for k, v in given.items()}
    if values["seeds"] < 2 or min(values["steps"], values["gan_epochs"], values["test_sentences"]) < 0:
        args.parser.error("--seeds must be at least 2; --steps-per-run, --gan-epochs and --test-sentences >= 0")
    if args.scale in ("quick", "small") and not (values["steps"] and values["gan_epochs"]):
        args.parser.error(f"--scale {args.scale} sizes its runs here: --steps-per-run and --gan-epochs must be > 0")
    if args.parallel < 1:
        args.parser.error("--parallel must be at least 1")
    return Study(
        scale=args.scale,
        architecture=args.architecture,
        seeds=tuple(range(1, values.pop("seeds") + 1)),
        **values,
        work=args.work_dir,
        out=args.out,
        data_root=args.data_root,
    )


def run(args: argparse.Namespace) -> int:
    if args.run_step:  # inside a step's Slurm job: the study is the one its work dir records
        study = Study.of_work_dir(args.work_dir)
        step = next((s for s in steps(study) if s.name == args.run_step), None)
        if step is None:
            args.parser.error(f"no step {args.run_step!r} in the study of {args.work_dir}")
        print_summary({"step": step.name, **run_step(study, step)})
        return 0
    if args.dry_run and not args.submit:
        args.parser.error("--dry-run shows what --submit would submit: give both")
    study = study_of(args)
    if args.status:
        states = slurm.status(study)
        for name, state in states.items():
            print(f"{name:40s} {state}")
        return 0
    if not args.dry_run and (mismatch := study.claim_work_dir()):
        args.parser.error(f"{study.work} holds a study with other settings ({mismatch}): pass another --work-dir")
    if args.submit:
        print_summary({"study": str(study.work), **slurm.submit(study, args)})
        return 0
    started = time.monotonic()
    minutes = budget_minutes(study, args.parallel)
    budget = f"about {minutes:.0f} minutes on 2 cores" if minutes else "the recipes' epochs"
    say(f"{NAME}: {len(study.s2s_runs())} s2s runs, a GAN, their evaluations, {args.parallel} at a time: {budget}; "
        f"work in {study.work}")  # fmt: skip
    run_here(study, args.parallel)
    say(f"{NAME}: wrote {study.out}; this invocation took {(time.monotonic() - started) / 60:.1f} minutes")
    print_summary({"study": str(study.work), "written": str(study.out)})
    return 0
