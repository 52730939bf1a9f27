"""``reproduce``: the papers' claims re-run at small scale on the real data in ../shared/data, and
docs/REPRODUCTION.md written from what those runs measured.

s2s (Sutskever et al.): the `small` model (``--architecture small``: attention and copying, so that a
few CPU-minutes give a model that translates) or the paper's own (``paper``: neither), trained on the
WMT'14 training sample (dev: newstest2013) for a fixed number of minutes per run:
  * reversal: reversed against plain source order, 2 layers, every seed;
  * depth: 1, 2 and 4 layers (reversed), every seed, compared at equal minutes and at equal steps;
  * beam 1, 2 and 12 on the first seed's 2-layer reversed model;
  * an ensemble of the first two seeds' 2-layer reversed models against each alone.
Tested on the first ``--test-sentences`` of newstest2014: perplexity and BLEU (beam 2 unless said).
gan (Goodfellow et al.): paper-mnist for ``--gan-minutes``, then evaluate-gan: the Parzen estimate
on the 10,000 test images, FCD, class coverage, the sample grid and the nearest training images.

Every training run and evaluation is a subprocess of this launcher, kept under ``--work-dir``: what
is done is reused, so an interrupted reproduce continues where it stopped (delete a run's folder to
redo it). The work dir records the study's settings: other settings need another ``--work-dir``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from launcher.commands import reproduction
from launcher.commands.common import say
from launcher.paths import PROJECT_ROOT

NAME = "reproduce"
ARCHITECTURES = {  # --architecture → the s2s job's arguments
    "small": ("--preset", "small"),
    "paper": ("--preset", "small", "model.attention=false", "model.copy=false"),  # the paper's, at small's size
}
DEPTHS = (1, 2, 4)
BEAMS = (1, 2, 12)


@dataclass(frozen=True)
class Study:
    minutes: float  # training minutes per s2s run
    architecture: str  # a key of ARCHITECTURES
    seeds: tuple[int, ...]
    test_sentences: int
    gan_minutes: float
    classifier_epochs: int
    work: Path
    out: Path

    def s2s_runs(self) -> dict[str, tuple[str, ...]]:
        """Run name → its overrides: every depth reversed, and 2 layers in plain order, per seed."""
        runs = {}
        for seed in self.seeds:
            for layers in DEPTHS:
                runs[f"reversed-{layers}l-seed{seed}"] = (f"model.num_layers={layers}", "model.reverse_source=true")
            runs[f"plain-2l-seed{seed}"] = ("model.num_layers=2", "model.reverse_source=false")
        return {name: (*overrides, f"train.seed={name.rsplit('seed', 1)[1]}") for name, overrides in runs.items()}

    def settings(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("work", "out")}

    def claim_work_dir(self) -> str:
        """Record this study's settings in its work dir; what differs from a study already there, if any."""
        record = self.work / "study.json"
        mine = json.loads(json.dumps(self.settings()))  # tuples as lists, as read back
        if record.is_file():
            theirs = json.loads(record.read_text())
            return ", ".join(f"{k} {theirs.get(k)} here, {v} asked" for k, v in mine.items() if theirs.get(k) != v)
        self.work.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(mine) + "\n")
        return ""

    def budget_minutes(self) -> float:
        """What the study should take: training, plus ~40% for start-up, evaluation and the classifier."""
        return 1.4 * (len(self.s2s_runs()) * self.minutes + self.gan_minutes) + 3 * self.classifier_epochs


def add_parser(jobs) -> None:
    p = jobs.add_parser(
        NAME,
        help="re-run the papers' claims at small scale and write docs/REPRODUCTION.md",
        description=__doc__.split("\n\n")[0] + " Defaults take about 90 minutes on 2 CPU cores; it prints its "
        "budget first. Runs are kept in --work-dir and reused.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--minutes-per-run", type=float, default=5.0, help="training minutes of each s2s run")
    p.add_argument(
        "--architecture",
        choices=sorted(ARCHITECTURES),
        default="small",
        help="small: the small preset (attention, copying); paper: the paper's model (neither) at small's size",
    )
    p.add_argument("--seeds", type=int, default=2, help="seeds per s2s configuration (at least 2: the spread)")
    p.add_argument("--test-sentences", type=int, default=1000, help="newstest2014 sentences tested (0: all 3003)")
    p.add_argument("--gan-minutes", type=float, default=20.0, help="training minutes of the GAN")
    p.add_argument("--classifier-epochs", type=int, default=3, help="the MNIST classifier behind FCD")
    p.add_argument("--work-dir", type=Path, default=PROJECT_ROOT / "runs" / "reproduce")
    p.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "REPRODUCTION.md")
    p.set_defaults(run=run, parser=p)


def run(args: argparse.Namespace) -> int:
    if args.seeds < 2 or args.minutes_per_run <= 0 or args.gan_minutes <= 0 or args.test_sentences < 0:
        args.parser.error("--seeds must be at least 2, the minutes positive, --test-sentences >= 0")
    study = Study(
        minutes=args.minutes_per_run,
        architecture=args.architecture,
        seeds=tuple(range(1, args.seeds + 1)),
        test_sentences=args.test_sentences,
        gan_minutes=args.gan_minutes,
        classifier_epochs=args.classifier_epochs,
        work=args.work_dir,
        out=args.out,
    )
    if mismatch := study.claim_work_dir():
        args.parser.error(f"{study.work} holds a study with other settings ({mismatch}): pass another --work-dir")
    started = time.monotonic()
    say(
        f"{NAME}: {len(study.s2s_runs())} s2s runs of {study.minutes:g} min, a GAN of {study.gan_minutes:g} min: "
        f"about {study.budget_minutes():.0f} minutes; work in {study.work}"
    )
    results = {"s2s": train_s2s(study), "gan": train_gan(study)}
    results["evaluations"] = evaluate_s2s(study)
    reproduction.write(study, results)
    say(f"{NAME}: wrote {study.out}; this invocation took {(time.monotonic() - started) / 60:.1f} minutes")
    return 0


def launcher_json(args: list[str], record: Path) -> dict:
    """Run ``python -m launcher.main ARGS`` unless ``record`` holds its summary already; its output
    goes to ``record``'s .log, its summary line (with ``study_seconds``, how long it took) to ``record``."""
    if record.is_file():
        return json.loads(record.read_text())
    record.parent.mkdir(parents=True, exist_ok=True)
    say(f"{NAME}: {' '.join(args[:3])} ... → {record.parent.name}/{record.name}")
    started, log_file = time.monotonic(), record.with_suffix(".log")
    with open(log_file, "w") as log:
        command = [sys.executable, "-m", "launcher.main", *args]
        result = subprocess.run(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
    if result.returncode != 0:
        raise SystemExit(f"error: {' '.join(args[:2])} failed (exit {result.returncode}): see {log_file}")
    summary = {**json.loads(result.stdout.strip().splitlines()[-1]), "study_seconds": time.monotonic() - started}
    record.write_text(json.dumps(summary) + "\n")
    return summary


def train_s2s(study: Study) -> dict[str, dict]:
    runs = {}
    for name, overrides in study.s2s_runs().items():
        run_dir = study.work / "s2s" / name
        args = [
            "s2s",
            *ARCHITECTURES[study.architecture],
            "--run-dir",
            str(run_dir),
            f"max_minutes={study.minutes}",
            "metrics.port=0",
        ]
        args += ["eval.every_steps=200", *overrides]
        runs[name] = {**launcher_json(args, run_dir / "summary.json"), "run_dir": str(run_dir)}
    return runs


def evaluate(study: Study, name: str, checkpoints: list[str], beam: int) -> dict:
    args = ["evaluate", "--beam", str(beam), "--limit", str(study.test_sentences), "--no-progress"]
    for checkpoint in checkpoints:
        args += ["--checkpoint", checkpoint]
    return launcher_json(args, study.work / "evaluations" / f"{name}-beam{beam}.json")


def evaluate_s2s(study: Study) -> dict[str, dict]:
    """Every run at beam 2; the first seed's 2-layer reversed model at every beam; the ensemble."""
    runs = {name: str(study.work / "s2s" / name) for name in study.s2s_runs()}
    found = {name: evaluate(study, name, [run], 2) for name, run in runs.items()}
    first, second = (f"reversed-2l-seed{seed}" for seed in study.seeds[:2])
    for beam in BEAMS:
        found[f"{first}-beam{beam}"] = evaluate(study, first, [runs[first]], beam)
    found["ensemble"] = evaluate(study, "ensemble", [runs[first], runs[second]], 2)
    return found


def train_gan(study: Study) -> dict:
    run_dir = study.work / "gan"
    args = ["gan", "--preset", "paper-mnist", "--run-dir", str(run_dir), f"max_minutes={study.gan_minutes}"]
    trained = launcher_json([*args, "metrics.port=0"], run_dir / "summary.json")
    classifier = study.work / "classifier.pt"
    accuracy = launcher_json(
        ["train-classifier", "--epochs", str(study.classifier_epochs), "--out", str(classifier), "--no-progress"],
        study.work / "classifier.json",
    )
    evaluated = launcher_json(
        ["evaluate-gan", "--checkpoint", str(run_dir), "--classifier", str(classifier)], run_dir / "evaluation.json"
    )
    return {"training": trained, "classifier": accuracy, "evaluation": evaluated, "run_dir": str(run_dir)}
