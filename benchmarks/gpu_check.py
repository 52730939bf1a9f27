"""GPU acceptance in one command (``make gpu-check``): every check that needs a real GPU, PASS or FAIL
each, with its figures; about 8 minutes on one H100/H200. Without a GPU it says so and runs nothing.

    make gpu-check                       # or: python benchmarks/gpu_check.py [--data-root DIR] [--only NAME ...]

The checks, in order (each a subprocess with its own time limit, so one that hangs fails alone):
  cuda-parity      the CUDA variants of the layout tests: the paper layout on 8 logical devices wrapped
                   onto the visible GPUs against the plain model (loss, every gradient, beam search)
  resume           a stopped and resumed tiny run equals the uninterrupted one (train.deterministic=true)
  bench-s2s-*      paper fp32, paper bf16, small: words/s, MFU against the device's measured matmul peak
  bench-gan-*      paper-mnist, dcgan-32: images/s
  preflight        devices, versions, matmul peak, copy and all-reduce bandwidth, reader, disk
  fp16             precision=fp16 with the loss scaler: finite loss, the updates it skipped counted
  zero2            DeepSpeed ZeRO-2 on the GPU
  pipeline         the paper layout + wavefront on 8 logical devices against the plain model: overhead

On a machine lent without the project's data or packages: copy ../shared/data into the repository as
an ignored folder and pass ``--data-root`` (or DATA=... to make); missing Python packages are named in
the FAIL line of the checks that need them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAPER_VOCAB = ("vocab.src_vocab_size=80000", "vocab.tgt_vocab_size=80000")  # as large as the sample's vocabulary


@dataclass
class Check:
    name: str
    command: list[str]
    timeout_s: int
    judge: Callable[[dict], str] = lambda summary: ""  # '' when the figures are right, else what is wrong
    figures: tuple[str, ...] = ()  # summary keys to print
    needs: tuple[str, ...] = ()  # Python packages it imports
    env: dict[str, str] = field(default_factory=dict)


def launcher(*args: str) -> list[str]:
    return [sys.executable, "-m", "launcher.main", *args]


def finite(key: str) -> Callable[[dict], str]:
    return lambda s: "" if math.isfinite(float(s.get(key, "nan"))) else f"{key} is {s.get(key)}"


def positive(key: str, below: float = math.inf) -> Callable[[dict], str]:
    def judge(summary: dict) -> str:
        value = float(summary.get(key, 0))
        return "" if 0 < value <= below else f"{key} = {value} (expected in (0, {below}])"

    return judge


def checks(data_root: Path, work: Path) -> list[Check]:
    shards = work / "shards" / "giga-fren-train"  # bench s2s shards the giga-fren sample here first
    tiny = ["s2s", "--preset", "tiny", "--data", str(shards), "--resume", "never", "metrics.port=0"]
    bench = ["bench", "--data-root", str(data_root)]
    return [
        Check("bench-s2s-small", launcher(*bench, "s2s", "--preset", "small", "--steps", "20", "--profile"), 240,
              positive("mfu", 1.0), ("words_per_s", "mfu", "gemm_peak_flops")),
        Check("bench-s2s-paper-fp32", launcher(*bench, "s2s", "--preset", "paper", "--steps", "10", *PAPER_VOCAB),
              240, positive("mfu", 1.0), ("words_per_s", "mfu", "step_time_s")),
        Check("bench-s2s-paper-bf16", launcher(*bench, "s2s", "--preset", "paper", "--steps", "10", *PAPER_VOCAB,
              "train.precision=bf16"), 240, positive("mfu", 1.0), ("words_per_s", "mfu", "step_time_s")),
        Check("cuda-parity", [sys.executable, "-m", "pytest", "-q", "-x", "tests/test_pipeline.py", "-k", "cuda"], 300),
        Check("resume", [sys.executable, "-m", "pytest", "-q", "-x", "tests/test_s2s_train.py", "-k",
              "stop_and_resume"], 300),
        Check("bench-gan-paper-mnist", launcher(*bench, "gan", "--preset", "paper-mnist"), 180,
              positive("images_per_s"), ("images_per_s",)),
        Check("bench-gan-dcgan-32", launcher(*bench, "gan", "--preset", "dcgan-32"), 180,
              positive("images_per_s"), ("images_per_s",)),
        Check("preflight", [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
              "-m", "launcher.main", "preflight", "--data", str(shards), "--run-dir", str(work / "preflight")], 180),
        Check("fp16", launcher(*tiny, "--run-dir", str(work / "fp16"), "max_steps=40", "train.precision=fp16"),
              180, finite("words_per_s"), ("words_per_s", "skipped_steps")),
        Check("zero2", launcher(*tiny, "--run-dir", str(work / "zero2"), "max_steps=20", "parallel.engine=deepspeed",
              "parallel.deepspeed_config=cluster/deepspeed/zero2.json"), 240, positive("words_per_s"),
              ("words_per_s", "replicas_in_sync"), needs=("deepspeed",)),
        Check("pipeline", launcher(*bench, "pipeline", "--preset", "paper", "--steps", "4", *PAPER_VOCAB), 300,
              lambda s: "" if float(s.get("overhead", 9)) < 0.5 else f"overhead {s.get('overhead')}",
              ("plain_step_s", "pipelined_step_s", "overhead")),
    ]  # fmt: skip


def missing(packages: tuple[str, ...]) -> list[str]:
    import importlib.util

    return [p for p in packages if importlib.util.find_spec(p) is None]


def run(check: Check, env: dict[str, str]) -> dict:
    if absent := missing(("sentencepiece", "sacremoses", "webdataset", "prometheus_client", *check.needs)):
        return {"check": check.name, "ok": False, "why": f"not installed: {', '.join(absent)} (carry their wheels)"}
    started = time.monotonic()
    try:
        done = subprocess.run(check.command, cwd=ROOT, env={**env, **check.env}, capture_output=True, text=True,
                              timeout=check.timeout_s)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"check": check.name, "ok": False, "why": f"no answer within {check.timeout_s} s"}
    seconds = round(time.monotonic() - started, 1)
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])[-600:]
        return {"check": check.name, "ok": False, "seconds": seconds, "why": f"exit {done.returncode}: {tail}"}
    summary = last_json(done.stdout)
    why = check.judge(summary) if summary or check.figures else ""
    figures = {key: summary.get(key) for key in check.figures}
    return {"check": check.name, "ok": not why, "seconds": seconds, **({"why": why} if why else {}), **figures}


def last_json(stdout: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {}


def device_line() -> str | None:
    """The GPU as torch sees it, or None when there is none."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    cudnn = torch.backends.cudnn.version()
    return (
        f"{torch.cuda.device_count()} x {props.name} ({props.total_memory / 2**30:.0f} GiB), "
        f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {cudnn}, "
        f"NCCL {'.'.join(map(str, torch.cuda.nccl.version()))}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=None, help="the shared data (default: ../shared/data)")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "runs" / "gpu-check", help="shards, runs, report")
    parser.add_argument("--only", nargs="*", default=None, metavar="NAME", help="run only these checks")
    args = parser.parse_args(argv)
    device = device_line()
    if device is None:
        print("gpu-check: no GPU is visible (torch.cuda.is_available() is False): nothing to check here", flush=True)
        return 0
    data_root = (args.data_root or Path(os.environ.get("DIST_TRAIN_DATA", ROOT.parent / "shared" / "data"))).resolve()
    work = args.work_dir.resolve()
    env = {**os.environ, "DIST_TRAIN_DATA": str(data_root), "DIST_TRAIN_SHARDS": str(work / "shards")}
    env |= {"PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))}
    print(f"gpu-check: {device}; data {data_root}", flush=True)
    results = []
    for check in checks(data_root, work):
        if args.only and check.name not in args.only:
            continue
        result = run(check, env)
        results.append(result)
        figures = {k: v for k, v in result.items() if k not in ("check", "ok", "why")}
        line = f"{'PASS' if result['ok'] else 'FAIL'} {check.name:<22} {json.dumps(figures)}"
        print(line + (f"  -- {result['why']}" if "why" in result else ""), flush=True)
    work.mkdir(parents=True, exist_ok=True)
    report = {"device": device, "passed": sum(r["ok"] for r in results), "failed": sum(not r["ok"] for r in results)}
    (work / "report.json").write_text(json.dumps({**report, "checks": results}, indent=1) + "\n")
    print(json.dumps(report), flush=True)
    return 0 if report["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
