"""``submit s2s|gan|preflight``: render cluster/slurm/<job>.sbatch for N nodes and G GPUs each, and sbatch it.

Only the script's site-specific block changes: ``--nodes``, ``--gpus-per-node`` (uncommented when
G > 0), ``--partition``/``--account``/``--time`` when given, and the defaults of GPUS_PER_NODE,
NPROC_PER_NODE and DEVICES_PER_REPLICA. The rendered script is kept in runs/slurm/ beside the
job's log; the job's own arguments follow it on sbatch's command line (no shell in between).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import time

from launcher.commands.common import print_summary, say
from launcher.paths import PROJECT_ROOT

NAME = "submit"
TEMPLATES = PROJECT_ROOT / "cluster" / "slurm"
JOBS = ("s2s", "gan", "preflight")


def add_parser(jobs) -> None:
    p = jobs.add_parser(
        NAME,
        help="submit a multi-node s2s, gan or preflight job to Slurm (renders cluster/slurm/<job>.sbatch)",
        description="Render cluster/slurm/JOB.sbatch with the node and GPU counts given, keep it in "
        "runs/slurm/, and submit it with sbatch from the repository root; arguments after the options "
        "go to the job after -- (e.g. -- --preset paper max_minutes=600). The job checkpoints on SIGUSR1/SIGTERM "
        "(Slurm warns 120 s before preemption or the time limit), requeues itself and resumes. preflight "
        "measures every node with the same layout first (e.g. -- --data SHARDS --run-dir /scratch/RUN).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("job", choices=JOBS)
    add_allocation_flags(p)
    p.add_argument("--wait", action="store_true", help="return when the job has ended, requeues included")
    p.add_argument("--dry-run", action="store_true", help="print the rendered script and the command only")
    p.add_argument("job_args", nargs="*", metavar="-- JOB_ARGS", help="the job's arguments and overrides, after --")
    p.set_defaults(run=run, parser=p)


def add_allocation_flags(p) -> None:
    """What a job asks of the cluster, as ``render`` writes it into a script (``submit``, ``reproduce --submit``)."""
    p.add_argument("--nodes", type=int, default=2, help="nodes of a training job (torchrun agents, one per node)")
    p.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per node; 0: CPU processes")
    p.add_argument("--nproc-per-node", type=int, default=1, help="processes per node without GPUs")
    p.add_argument("--devices-per-replica", type=int, default=1, help="8: the paper's layout, one replica per 8 GPUs")
    p.add_argument("--partition", default=None)
    p.add_argument("--account", default=None)
    p.add_argument("--time", default=None, metavar="D-HH:MM:SS", help="time limit (the script's: 24:00:00)")


def render(template: str, args: argparse.Namespace) -> str:
    """The template with the site-specific values of ``args``."""
    if args.nodes < 1 or min(args.gpus_per_node, args.nproc_per_node - 1, args.devices_per_replica - 1) < 0:
        args.parser.error("--nodes, --nproc-per-node and --devices-per-replica must be >= 1, --gpus-per-node >= 0")
    if args.gpus_per_node % args.devices_per_replica:
        args.parser.error("--gpus-per-node must be a multiple of --devices-per-replica")
    directives = {"nodes": str(args.nodes)}
    if args.gpus_per_node:
        directives["gpus-per-node"] = str(args.gpus_per_node)
    for name in ("partition", "account", "time"):
        if getattr(args, name):
            directives[name] = getattr(args, name)
    for name, value in directives.items():
        line = re.compile(rf"^#{{1,2}}SBATCH --{name}=.*$", re.MULTILINE)
        if not line.search(template):
            raise SystemExit(f"error: {TEMPLATES}: no '#SBATCH --{name}=' line to set")
        template = line.sub(f"#SBATCH --{name}={value}", template, count=1)
    defaults = {
        "GPUS_PER_NODE": args.gpus_per_node,
        "NPROC_PER_NODE": args.nproc_per_node,
        "DEVICES_PER_REPLICA": args.devices_per_replica,
    }
    for name, value in defaults.items():
        template = re.sub(rf"^{name}=\$\{{{name}:-[^}}]*\}}", f"{name}=${{{name}:-{value}}}", template, flags=re.M)
    return template


def check_job_args(args: argparse.Namespace) -> None:
    """The submitted job's own arguments, checked as the job will check them (its flags, its config keys
    and values), so that only what the job would accept is rendered and queued; a usage error otherwise."""
    from dist_train.trainers.gan.trainer import GanConfig  # here: the job's modules are needed only for this check
    from dist_train.trainers.s2s.trainer import S2SConfig
    from launcher.commands.training import resolve_config
    from launcher.main import build_parser, parse_args  # which imports this module

    job = parse_args(build_parser(), [args.job, *args.job_args])
    configs = {"s2s": S2SConfig, "gan": GanConfig}
    if args.job in configs:
        resolve_config(job, configs[args.job], args.job)


def run(args: argparse.Namespace) -> int:
    check_job_args(args)
    script = render((TEMPLATES / f"{args.job}.sbatch").read_text(), args)
    out = PROJECT_ROOT / "runs" / "slurm"
    rendered = out / f"{args.job}-{time.strftime('%Y%m%d-%H%M%S')}.sbatch"
    command = ["sbatch", "--parsable", str(rendered), *args.job_args]
    if args.dry_run:
        print(script, end="")
        print("# " + " ".join(command))
        return 0
    if shutil.which("sbatch") is None:
        raise SystemExit("error: sbatch not found: run this on a Slurm login node (or --dry-run)")
    out.mkdir(parents=True, exist_ok=True)  # the jobs' logs go here too (#SBATCH --output)
    rendered.write_text(script)
    say(f"submit: {rendered.relative_to(PROJECT_ROOT)}, {args.nodes} node(s) × {args.gpus_per_node} GPU(s)")
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"error: sbatch failed: {result.stderr.strip()}")
    job_id = result.stdout.strip().split(";")[0]
    code = wait_for(job_id) if args.wait else 0
    print_summary({"job": args.job, "slurm_job_id": job_id, "script": str(rendered), "exit_code": code})
    return code


ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


def wait_for(job_id: str, every: float = 2.0, patience: float = 120.0) -> int:
    """Wait until the job has ended, through its requeues (``sbatch --wait`` may return at one: a
    requeued job passes through an ended state), and give its exit code. ``scontrol`` failing (a
    busy controller times out) is retried for ``patience`` seconds; the job being unknown to the
    controller (forgotten MinJobAge seconds after it ended) ends the wait with its last state."""
    last, ended_polls, failing_since = {}, 0, None
    while True:
        shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True)
        if shown.returncode == 0:
            last, failing_since = dict(re.findall(r"(\w+)=(\S+)", shown.stdout)), None
            ended_polls = ended_polls + 1 if last.get("JobState") in ENDED else 0
            if ended_polls >= 2:  # still ended one poll later: not on its way back to the queue
                return exit_code(last)
        elif "invalid job id" in shown.stderr.lower():
            if last.get("JobState") in ENDED:
                return exit_code(last)
            raise SystemExit(f"error: job {job_id} was forgotten before its end was seen (MinJobAge < {every} s?)")
        else:
            failing_since = failing_since or time.monotonic()
            if time.monotonic() - failing_since > patience:
                failure = shown.stderr.strip()
                raise SystemExit(f"error: job {job_id}: scontrol show job failing for {patience:.0f} s: {failure}")
        time.sleep(every)


def exit_code(fields: dict) -> int:
    code = int(fields.get("ExitCode", "1:0").split(":")[0])
    return code or int(fields.get("JobState") != "COMPLETED")
