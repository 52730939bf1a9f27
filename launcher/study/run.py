"""Running the study's steps here, one after another, or one of them inside its Slurm job; and the
results the document is written from, read back from the steps' records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from dist_train.atomic_files import atomic_write
from launcher.commands.common import say
from launcher.paths import PROJECT_ROOT
from launcher.study.plan import Step, Study, steps

NAME = "reproduce"


def launcher_json(args: tuple[str, ...], record: Path, env: dict[str, str]) -> dict:
    """Run ``python -m launcher.main ARGS`` unless ``record`` holds its summary already; its output goes
    to ``record``'s .log, its summary line (with ``study_seconds``, how long it took) to ``record``."""
    if record.is_file():
        return json.loads(record.read_text())
    record.parent.mkdir(parents=True, exist_ok=True)
    say(f"{NAME}: {' '.join(args[:3])} ... → {record.parent.name}/{record.name}")
    started, log_file = time.monotonic(), record.with_suffix(".log")
    with open(log_file, "w") as log:
        command = [sys.executable, "-m", "launcher.main", *args]
        result = subprocess.run(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
                                env={**os.environ, **env})  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"error: {' '.join(args[:2])} failed (exit {result.returncode}): see {log_file}")
    summary = {**json.loads(result.stdout.strip().splitlines()[-1]), "study_seconds": time.monotonic() - started}
    atomic_write(record, json.dumps(summary) + "\n")
    return summary


def run_step(study: Study, step: Step) -> dict:
    """One step, here; its record (the step is skipped when that exists already)."""
    if step.args:
        return launcher_json(step.args, step.record, study.environment())
    if step.done():
        return json.loads(step.record.read_text())
    started = time.monotonic()
    summary = {"data": shard_data, "write": write_document}[step.name](study)
    atomic_write(step.record, json.dumps({**summary, "study_seconds": time.monotonic() - started}) + "\n")
    return summary


def run_here(study: Study) -> None:
    for step in steps(study):
        run_step(study, step)


def shard_data(study: Study) -> dict:
    """Every shard set the study's steps read by default, made once into the study's own folder before
    any of them starts (steps running at once on a cluster would otherwise each shard them)."""
    from launcher.default_data import mnist_shards, wmt14_shards

    os.environ.update(study.environment())
    train, dev = wmt14_shards(study.raw_data, NAME)
    mnist = {split: str(mnist_shards(split, None, NAME)) for split in ("train", "valid", "test")}
    return {"wmt14_train": str(train), "wmt14_dev": str(dev), "mnist": mnist}


def results(study: Study) -> dict:
    """What the document is written from: every step's record, keyed as the document reads them."""
    found = {step.name: json.loads(step.record.read_text()) for step in steps(study) if step.args}
    runs = {name: {**found[f"train/{name}"], "run_dir": str(study.work / "s2s" / name)} for name in study.s2s_runs()}
    evaluations = {
        name.removeprefix("evaluate/"): record for name, record in found.items() if name.startswith("evaluate/")
    }
    beam = f"-beam{study.plan.eval_beam}"
    for name in (*study.s2s_runs(), "ensemble"):  # each run (and the ensemble of two) at the scale's beam, by name
        evaluations[name] = evaluations[name + beam]
    gan = {"training": found["gan/train"], "classifier": found["gan/classifier"], "evaluation": found["gan/evaluate"]}
    figures = {kind: found[f"figures/{kind}"] for kind in ("s2s", "gan")}
    return {"s2s": runs, "evaluations": evaluations, "gan": {**gan, "run_dir": str(study.work / "gan")},
            "figures": figures}  # fmt: skip


def write_document(study: Study) -> dict:
    from launcher.commands import reproduction

    reproduction.write(study, results(study))
    say(f"{NAME}: wrote {study.out}")
    return {"written": str(study.out)}
