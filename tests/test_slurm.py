"""The Slurm batch scripts on a real 2-node Slurm (cluster/local/slurm.sh: munge, slurmctld and two
slurmd on localhost): a tiny s2s run across both nodes (one process group, one process on each),
preempted: USR1 → checkpoint → requeue → the rerun resumes from that checkpoint and finishes, every
step taken exactly once."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest
from conftest import train_log
from local_cluster import install_or_skip, poll, script, start

from data_shards.shard_text import ShardTextConfig, shard_text
from launcher.paths import PROJECT_ROOT, shared_data


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports that are free now."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            first = s.getsockname()[1]
        if first + count < 65000 and all(is_free(first + i) for i in range(count)):
            return first
    raise RuntimeError("no free ports")


def is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """The environment every Slurm command of these tests runs with."""
    base = tmp_path_factory.mktemp("slurm")
    env = {"BASE": str(base), "NODES": "2", "CTLD_PORT": str(free_ports(1)), "SLURMD_PORT0": str(free_ports(2))}
    install_or_skip("slurm.sh", **env)
    start("slurm.sh", **env)
    yield {**os.environ, "SLURM_CONF": str(base / "slurm.conf")}
    script("slurm.sh", "stop", **env)


def slurm_command(env, *args) -> str:
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def job_args(data, *extra) -> list[str]:
    return ["--preset", "tiny", "--data", str(data), "threads=1", "metrics.port=0", *extra]


def summaries(log: str) -> list[dict]:
    """The jobs' summary lines (srun merges the tasks' stdout and stderr: a line may not start with one)."""
    return [json.loads(found) for found in re.findall(r'\{"checkpoint": .*\}', log)]


@pytest.mark.slow
def test_preempted_job_checkpoints_requeues_onto_fewer_nodes_and_resumes_without_losing_a_step(
    slurm, newstest_small_shards, tmp_path
):
    run_dir, steps = tmp_path / "run", 150
    env = {**slurm, "RUN_DIR": str(run_dir), "SBATCH_OUTPUT": str(tmp_path / "%x-%j.out")}
    submit = [sys.executable, "-m", "launcher.main", "submit", "s2s", "--nodes", "2", "--wait", "--"]
    submit += job_args(newstest_small_shards, f"max_steps={steps}", "log_every=1")
    job = subprocess.Popen(submit, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        logged = run_dir / "train.jsonl"
        poll(lambda: logged.exists() and len(logged.read_text().splitlines()) >= 15, timeout=180, what="15 steps")
        job_id = slurm_command(env, "squeue", "-h", "-t", "RUNNING", "-o", "%i").split()[0]
        slurm_command(env, "scancel", "--batch", "--signal=USR1", job_id)  # what --signal=B:USR1@120 sends
        poll(lambda: "Restarts=1" in slurm_command(env, "scontrol", "show", "job", job_id), timeout=120, what="requeue")
        # A requeued job waits ~2 minutes before it is eligible again; let it start sooner, but only once
        # both nodes have let the first run go and a new second has begun: slurmd refuses a job credential
        # made in the same second as its revocation ("Job credential revoked", seen once in CI).
        poll(lambda: set(slurm_command(env, "sinfo", "-h", "-N", "-o", "%t").split()) == {"idle"}, timeout=120,
             what="both nodes idle")  # fmt: skip
        time.sleep(2)
        slurm_command(env, "scontrol", "update", f"JobId={job_id}", "NumNodes=1-1", "NumTasks=1")  # onto fewer nodes
        slurm_command(env, "scontrol", "update", f"JobId={job_id}", "StartTime=now")
        out, err = job.communicate(timeout=300)
    finally:
        job.kill()
    text = next(tmp_path.glob("s2s-*.out")).read_text()
    assert job.returncode == 0, err + text[-3000:]
    assert re.search(r"batch: job \d+ \(restart 0\) on n\[1-2\]", text)
    assert "s2s: 2 replica(s)" in text  # one process on each node, one process group
    first, second = summaries(text)
    assert first["replicas_in_sync"] is True and second["replicas_in_sync"] is True
    stop = first["steps"]
    assert first["stopped_by_signal"] == "SIGUSR1" and 15 <= stop < steps
    assert first["checkpoint"].endswith(f"step-{stop:08d}.pt")
    assert "restart 1" in text and second["steps"] == steps and "stopped_by_signal" not in second
    assert second["resumed_on"] == f"1 replica(s) from 2 at step {stop}"  # no flag: the requeue path finds it
    records = train_log(run_dir)
    assert [r["step"] for r in records if "loss" in r] == list(range(1, steps + 1))  # each step once
    assert json.loads(out.strip().splitlines()[-1])["slurm_job_id"] == job_id


def test_submit_renders_only_the_site_specific_lines(tmp_path):
    render = [sys.executable, "-m", "launcher.main", "submit", "gan", "--nodes", "4", "--gpus-per-node", "8"]
    render += [
        "--partition",
        "gpu",
        "--time",
        "2-00:00:00",
        "--dry-run",
        "--",
        "--preset",
        "paper-mnist",
        "max_minutes=60",
    ]
    result = subprocess.run(render, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    script_text, command = result.stdout.rsplit("# sbatch", 1)
    template = (PROJECT_ROOT / "cluster" / "slurm" / "gan.sbatch").read_text()
    changed = {(a, b) for a, b in zip(template.splitlines(), script_text.splitlines()) if a != b}
    assert changed == {
        ("#SBATCH --nodes=2", "#SBATCH --nodes=4"),
        ("##SBATCH --gpus-per-node=8", "#SBATCH --gpus-per-node=8"),
        ("##SBATCH --partition=gpu", "#SBATCH --partition=gpu"),
        ("#SBATCH --time=24:00:00", "#SBATCH --time=2-00:00:00"),
        (
            "GPUS_PER_NODE=${GPUS_PER_NODE:-0}   # as --gpus-per-node; 0: CPU processes (NPROC_PER_NODE of them)",
            "GPUS_PER_NODE=${GPUS_PER_NODE:-8}   # as --gpus-per-node; 0: CPU processes (NPROC_PER_NODE of them)",
        ),
    }
    assert command.split()[-3:] == ["--preset", "paper-mnist", "max_minutes=60"]


def test_the_paper_study_as_a_slurm_graph_dry_run(tmp_path):
    """`reproduce --scale paper --submit --dry-run`: every step of the papers' tables, each after what it
    needs, the training jobs over 4 nodes of 8 GPUs (the s2s job in the paper's 8-GPU layout)."""
    command = ["reproduce", "--scale", "paper", "--submit", "--dry-run", "--nodes", "4", "--gpus-per-node", "8",
               "--devices-per-replica", "8", "--work-dir", str(tmp_path / "study")]  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "launcher.main", *command], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    steps = {
        name: (job, after)
        for name, job, after in re.findall(r"^## (\S+)  \((\w+); after: (.*)\)$", result.stdout, re.M)
    }
    runs = (
        {f"reversed-{d}l-seed1" for d in (1, 2, 3)} | {f"reversed-4l-seed{k}" for k in range(1, 6)} | {"plain-4l-seed1"}
    )
    assert {name for name in steps if name.startswith("train/")} == {f"train/{run}" for run in runs}
    evaluations = {name for name in steps if name.startswith("evaluate/")}
    beams = {f"evaluate/reversed-4l-seed{k}-beam{b}" for b in (1, 2, 12) for k in (1, 2)}
    assert beams | {"evaluate/ensemble-5-beam12"} <= evaluations
    assert {"prepare-wmt14", "data", "gan/train", "gan/classifier", "gan/evaluate", "write"} <= set(steps)
    # the GAN's 250 epochs of 500 steps, a checkpoint kept and evaluated at each eighth: Parzen against time
    curve = {name for name in steps if name.startswith("gan/curve/")}
    assert curve == {f"gan/curve/step-{15625 * k}" for k in range(1, 8)}
    assert steps["gan/curve/step-15625"][1] == "gan/train, gan/classifier"
    sbatch = {name: line for name, line in re.findall(r"^## (\S+) .*?\n(?:.*\n)*?# (sbatch .*)$", result.stdout, re.M)}
    ensemble = sbatch["evaluate/ensemble-5-beam12"]
    assert ensemble.count("<train/reversed-4l-seed") == 5 and "--dependency=afterok:" in ensemble
    assert "<prepare-wmt14>" in sbatch["data"] and "<data>" in sbatch["train/plain-4l-seed1"]
    assert "--summary-file" in sbatch["train/plain-4l-seed1"] and "--preset paper" in sbatch["train/plain-4l-seed1"]
    assert "train.checkpoint_every_steps=15625" in sbatch["gan/train"]
    assert "#SBATCH --nodes=4" in result.stdout and "DEVICES_PER_REPLICA=${DEVICES_PER_REPLICA:-8}" in result.stdout
    assert "DEVICES_PER_REPLICA=${DEVICES_PER_REPLICA:-1}" in result.stdout  # the gan's replica: one GPU
    assert not (tmp_path / "study").exists(), "a dry run submits and writes nothing"


@pytest.mark.slow
def test_the_tiny_study_runs_as_a_slurm_graph_to_its_document_and_a_second_submit_reruns_nothing(
    slurm, newstest_small_shards, mnist_5k_shards, tmp_path
):
    work, out = tmp_path / "study", tmp_path / "docs" / "REPRODUCTION.md"
    (work / "shards").mkdir(parents=True)  # the data step reuses shard sets already there: small ones here
    (work / "shards" / "wmt14-train").symlink_to(newstest_small_shards)
    (work / "shards" / "mnist-train").symlink_to(mnist_5k_shards)
    dev = [tmp_path / f"dev.{side}" for side in ("en", "fr")]
    for path, side in zip(dev, ("en", "fr")):  # 100 pairs of giga-fren's val split: each run's dev perplexity
        lines = shared_data() / "wmt14-en-fr" / "train-giga-fren-head30000" / "original-split" / f"val.{side}"
        path.write_text("".join(lines.read_text().splitlines(keepends=True)[:100]))
    shard_text(ShardTextConfig(src=(dev[0],), tgt=(dev[1],), out=work / "shards" / "giga-fren-val",
                               vocab_from=newstest_small_shards, progress=False))  # fmt: skip
    command = [sys.executable, "-m", "launcher.main", "reproduce", "--scale", "tiny", "--work-dir", str(work),
               "--out", str(out), "--nodes", "1"]  # fmt: skip
    first = subprocess.run([*command, "--submit"], cwd=PROJECT_ROOT, env=slurm, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    submitted = json.loads(first.stdout.strip().splitlines()[-1])
    assert set(submitted["steps"].values()) == {"submitted"} and len(submitted["jobs"]) > 20
    poll(lambda: out.is_file() or stuck(slurm), timeout=900, what="the study's document")
    assert out.is_file(), status(command, slurm)
    text = out.read_text()
    assert "# Reproduction" in text and "| 4 layers rather than 2 lower test perplexity |" in text
    assert "--scale tiny" in text and "### Parzen estimate against training time" in text
    assert "dev: giga-fren's own val split" in text and "sentences of giga-fren's own test split" in text
    for figure in ("s2s_states", "s2s_bleu_by", "gan_interpolation"):  # drawn from the study's models, copied beside it
        assert (
            f"![{figure}](reproduction/{figure}.png)" in text
            and (out.parent / "reproduction" / f"{figure}.png").is_file()
        )
    assert all(state == "done" for state in status(command, slurm).values())
    assert not (work / "shards" / "wmt14-dev").exists(), "with --dev given, newstest2013 is not sharded"
    trained = (work / "slurm").glob("study-train-*.out")
    assert all("1 thread(s) each" in f.read_text() for f in trained), "each job as many threads as its CPUs"
    again = subprocess.run([*command, "--submit"], cwd=PROJECT_ROOT, env=slurm, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert set(json.loads(again.stdout.strip().splitlines()[-1])["steps"].values()) == {"done"}
    assert slurm_command(slurm, "squeue", "-h").strip() == "", "nothing was submitted the second time"


def stuck(env) -> bool:
    """Whether the study can go no further: its queue is empty, or a job ended without its step (Slurm then
    never starts the jobs after it)."""
    queue = slurm_command(env, "squeue", "-h", "-o", "%i %r")
    return not queue.strip() or "DependencyNeverSatisfied" in queue


def status(command: list[str], env) -> dict[str, str]:
    shown = subprocess.run([*command, "--status"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    return dict(line.split(None, 1) for line in shown.stdout.splitlines() if line.strip())
