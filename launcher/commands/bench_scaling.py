"""Data-parallel scaling for ``bench all``: the s2s job launched as users launch it, one process
against two (``torchrun --standalone``), each with one thread, on the same shards. Words/s come from
the job's own log, all replicas summed, leaving out the first logging interval (start-up, warm-up)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from launcher.paths import PROJECT_ROOT


def ddp_scaling(data: Path, *, preset: str = "small", steps: int = 40, log_every: int = 10) -> dict:
    one = training_words_per_s(data, 1, preset=preset, steps=steps, log_every=log_every)
    two = training_words_per_s(data, 2, preset=preset, steps=steps, log_every=log_every)
    return {
        "preset": preset,
        "one_process_words_per_s": round(one, 1),
        "two_processes_words_per_s": round(two, 1),
        "speedup": round(two / one, 3),
        "efficiency": round(two / (2 * one), 3),
        "threads_per_process": 1,
        "steps": steps,
        "timed_steps": steps - log_every,
    }


def training_words_per_s(data: Path, processes: int, *, preset: str, steps: int, log_every: int) -> float:
    """The mean of the logged words/s after the first interval of a ``steps``-step run."""
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as run_dir:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
        job = ["-m", "launcher.main", "s2s", "--preset", preset, "--data", str(data), "--run-dir", run_dir]
        job += ["--resume", "never", f"max_steps={steps}", f"log_every={log_every}", "threads=1", "metrics.port=0"]
        result = subprocess.run([*launcher, *job], cwd=PROJECT_ROOT, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"the {processes}-process s2s run failed: {result.stderr.strip()[-2000:]}")
        records = [json.loads(line) for line in (Path(run_dir) / "train.jsonl").read_text().splitlines()]
    rates = [r["words_per_s"] for r in records if "words_per_s" in r][1:]
    if not rates:
        raise RuntimeError(f"steps={steps} with log_every={log_every} leaves no interval after the first")
    return statistics.mean(rates)
