"""Running the study's steps here, one after another, or one of them inside its Slurm job; and the
results the document is written from, read back from the steps' records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from dist_train.atomic_files import atomic_write
from dist_train.distributed import local_cores
from launcher.commands.common import say
from launcher.paths import PROJECT_ROOT
from launcher.study.plan import Step, Study, steps

NAME = "reproduce"


def span(started: float) -> dict:
    """A step's time: how long it took (``study_seconds``) and when it ended (``finished_at``, Unix time),
    from which the document tells the study's wall time and how many steps ran at once."""
    seconds = time.monotonic() - started
    return {"study_seconds": seconds, "finished_at": time.time()}


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
    summary = {**json.loads(result.stdout.strip().splitlines()[-1]), **span(started)}
    atomic_write(record, json.dumps(summary) + "\n")
    return summary


def with_threads(step: Step, threads: int) -> tuple[str, ...]:
    """``step``'s arguments with its intra-op threads set (0: the command's default, the cores it may use)."""
    if not threads or not step.args:
        return step.args
    return (*step.args, f"train.threads={threads}" if step.job in ("s2s", "gan") else f"--threads={threads}")


def run_step(study: Study, step: Step, threads: int = 0) -> dict:
    """One step, here, on ``threads`` threads (0: the cores it may use); its record (the step is skipped when that
    exists already)."""
    if step.args:
        return launcher_json(with_threads(step, threads), step.record, study.environment())
    if step.done():
        return json.loads(step.record.read_text())
    started = time.monotonic()
    summary = {"data": shard_data, "write": write_document}[step.name](study)
    atomic_write(step.record, json.dumps({**summary, **span(started)}) + "\n")
    return summary


def run_here(study: Study, lanes: int = 1) -> None:
    """Every step, ``lanes`` at a time (each on its share of the cores), a step as soon as the steps it
    needs are done; the longest first (the graph lists the GAN's training before the s2s runs)."""
    todo, done = {s.name: s for s in steps(study)}, set()
    threads = max(1, local_cores() // lanes) if lanes > 1 else 0
    with ThreadPoolExecutor(max_workers=lanes) as pool:
        running = {}
        while todo or running:
            for name, step in list(todo.items()):
                if len(running) < lanes and all(need in done for need in step.after):
                    running[pool.submit(run_step, study, step, threads)] = name
                    del todo[name]
            if not running:
                raise SystemExit(f"error: the study's steps {sorted(todo)} wait on steps that are not in it")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                future.result()  # a failed step stops the study (what is done stays done)
                done.add(running.pop(future))


def shard_data(study: Study) -> dict:
    """Every shard set the study's steps read by default, made once into the study's own folder before
    any of them starts (steps running at once on a cluster would otherwise each shard them)."""
    from launcher.default_data import mnist_shards, wmt14_shards

    os.environ.update(study.environment())
    train, dev = wmt14_shards(study.raw_data, NAME, in_domain_dev=study.plan.in_domain)
    assert study.dev_shards in (None, dev), f"the s2s steps read {study.dev_shards}, the data step made {dev}"
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
    curve = {name.rsplit("-", 1)[1]: record for name, record in found.items() if name.startswith("gan/curve/")}
    gan = {"training": found["gan/train"], "classifier": found["gan/classifier"], "evaluation": found["gan/evaluate"],
           "curve": {**curve, str(study.gan_curve()[-1]): found["gan/evaluate"]}}  # fmt: skip
    figures = {kind: found[f"figures/{kind}"] for kind in ("s2s", "gan")}
    return {"s2s": runs, "evaluations": evaluations, "gan": {**gan, "run_dir": str(study.work / "gan")},
            "figures": figures}  # fmt: skip


def write_document(study: Study) -> dict:
    from launcher.commands import reproduction

    reproduction.write(study, results(study))
    say(f"{NAME}: wrote {study.out}")
    return {"written": str(study.out)}
