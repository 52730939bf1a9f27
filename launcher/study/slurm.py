"""The study as a graph of Slurm jobs: every step a job, started after the jobs of the steps it needs
(``--dependency=afterok``). Training steps are the multi-node scripts (``cluster/slurm/s2s.sbatch``,
``gan.sbatch``: preemptible, requeued, resumed); the others run ``reproduce --run-step NAME`` through
``cluster/slurm/step.sbatch``. The study's folder keeps the job id of every step submitted
(``slurm/jobs.json``): submitting again skips the steps that are done, keeps the jobs still queued or
running, and submits the rest."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
from pathlib import Path

from dist_train.atomic_files import atomic_write
from launcher.commands.common import say
from launcher.commands.submit import TEMPLATES, render
from launcher.paths import PROJECT_ROOT
from launcher.study.plan import Step, Study, steps

ALIVE = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED")


def queued(job_ids: list[str]) -> dict[str, str]:
    """The state of each of ``job_ids`` that Slurm still holds (ended ones are absent)."""
    if not job_ids:
        return {}
    shown = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i %T"], capture_output=True, text=True)
    return dict(line.split() for line in shown.stdout.splitlines() if line.strip())


class Ledger:
    """Which Slurm job runs each step (``<work>/slurm/jobs.json``)."""

    def __init__(self, study: Study) -> None:
        self.path = study.work / "slurm" / "jobs.json"
        self.jobs: dict[str, str] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def save(self) -> None:
        atomic_write(self.path, json.dumps(self.jobs, indent=1, sort_keys=True) + "\n")


def job_name(step: Step) -> str:
    return "study-" + re.sub(r"[^A-Za-z0-9.-]+", "-", step.name)


def script_for(study: Study, step: Step, args: argparse.Namespace) -> tuple[str, list[str]]:
    """The rendered batch script of ``step`` and the arguments that follow it on sbatch's command line."""
    if step.job == "step":
        gpus = min(args.gpus_per_node, 1) if step.gpu else 0
        one = argparse.Namespace(**{**vars(args), "nodes": 1, "gpus_per_node": gpus, "nproc_per_node": 1,
                                    "devices_per_replica": 1})  # fmt: skip
        command = ["reproduce", "--work-dir", str(study.work), "--run-step", step.name]
        return render((TEMPLATES / "step.sbatch").read_text(), one), command
    job_args = list(step.args[1:])
    at = job_args.index("--run-dir")  # the script passes RUN_DIR as --run-dir itself
    del job_args[at : at + 2]
    if step.job == "gan":  # a replica is one device: the paper's 8-device layout is the s2s job's
        args = argparse.Namespace(**{**vars(args), "devices_per_replica": 1})
    script = render((TEMPLATES / f"{step.job}.sbatch").read_text(), args)
    return script, ["--summary-file", str(step.record), *job_args]


def sbatch_command(study: Study, step: Step, script: Path, job_args: list[str], after: list[str]) -> list[str]:
    env = {**study.environment(), **({"RUN_DIR": str(step.run_dir)} if step.run_dir else {})}
    command = ["sbatch", "--parsable", f"--job-name={job_name(step)}"]
    command += [
        f"--output={study.work / 'slurm' / '%x-%j.out'}",
        "--export=" + ",".join(["ALL", *map("=".join, env.items())]),
    ]
    if after:
        command.append("--dependency=afterok:" + ":".join(after))
    return [*command, str(script), *job_args]


def submit(study: Study, args: argparse.Namespace) -> dict:
    """Submit every step not done and not queued already; with ``args.dry_run``, print the graph and the
    scripts instead. The steps' states: done, kept (queued or running), submitted."""
    if not args.dry_run and shutil.which("sbatch") is None:
        raise SystemExit("error: sbatch not found: run this on a Slurm login node (or --dry-run)")
    ledger, folder = Ledger(study), study.work / "slurm"
    alive = {} if args.dry_run else queued(list(ledger.jobs.values()))
    ids, states, shown = {}, {}, set()
    for step in steps(study):
        if step.done():
            states[step.name] = "done"
            continue
        if ledger.jobs.get(step.name) in alive:
            ids[step.name], states[step.name] = ledger.jobs[step.name], "kept"
            continue
        text, job_args = script_for(study, step, args)
        script = folder / f"{job_name(step)}.sbatch"
        command = sbatch_command(study, step, script, job_args, [ids[name] for name in step.after if name in ids])
        if args.dry_run:
            ids[step.name] = f"<{step.name}>"
            print_planned(step, text, command, shown)
        else:
            ids[step.name] = sbatch(script, text, command)
            ledger.jobs[step.name] = ids[step.name]
            ledger.save()
        states[step.name] = "submitted"
    counts = {state: list(states.values()).count(state) for state in ("done", "kept", "submitted")}
    say(f"reproduce: {counts['submitted']} step(s) submitted, {counts['kept']} queued already, {counts['done']} done")
    return {"steps": states, "jobs": ids}


def sbatch(script: Path, text: str, command: list[str]) -> str:
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(text)
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"error: sbatch failed for {script.name}: {result.stderr.strip()}")
    return result.stdout.strip().split(";")[0]


def print_planned(step: Step, text: str, command: list[str], shown: set) -> None:
    """A dry run's lines for ``step``: its dependencies and sbatch command, and its script the first time
    it is shown (the steps of one kind share a script: only the arguments after it differ)."""
    print(f"## {step.name}  ({step.job}; after: {', '.join(step.after) or 'nothing'})")
    if text not in shown:
        shown.add(text)
        print(text, end="")
    print("# " + " ".join(command) + "\n")


def status(study: Study) -> dict:
    """Each step: done (its record exists), the state of its job in Slurm, or why it has none."""
    ledger = Ledger(study)
    alive = queued(list(ledger.jobs.values())) if shutil.which("squeue") else {}
    states = {}
    for step in steps(study):
        job = ledger.jobs.get(step.name)
        if step.done():
            states[step.name] = "done"
        elif job in alive:
            states[step.name] = f"{alive[job].lower()} (job {job})"
        elif job is not None:
            states[step.name] = f"not done: job {job} ended without its record ({study.work / 'slurm'})"
        else:
            states[step.name] = "not submitted"
    return states
