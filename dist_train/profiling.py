"""What a user hands a slow step or a full GPU to: the PyTorch profiler over chosen steps, and a memory
snapshot when CUDA runs out of memory.

``profile.steps=A-B`` (either job) records steps A to B on every rank (CPU activity, and CUDA's on a
GPU; operator input shapes; memory) and writes one Chrome trace per rank,
``RUN_DIR/profile/rank-R-steps-A-B.json``: open it in Perfetto (https://ui.perfetto.dev) or
``chrome://tracing``. Each step is marked ``step N`` (the run's own step numbers, also after a resume).

On CUDA, an out-of-memory error first writes ``RUN_DIR/profile/oom-rank-R-step-N.pickle``
(``torch.cuda.memory._dump_snapshot``: every segment and block the caching allocator held), and the
error names it: open it at https://pytorch.org/memory_viz. With ``profile.memory_history=true`` the
allocator records each allocation's stack from the start, so the snapshot says where every block came
from (it costs some speed: off by default).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from data_shards.errors import UserError

FOLDER = "profile"
STEPS = re.compile(r"^(\d+)-(\d+)$")


@dataclass(frozen=True, kw_only=True)
class ProfileConfig:
    steps: str = ""  # "A-B": profile steps A to B (1-based, inclusive) on every rank; "": no profiling
    record_shapes: bool = True  # each operator's input shapes
    memory: bool = True  # allocations and frees (profile_memory)
    with_stack: bool = False  # Python stacks of each operator (large traces)
    memory_history: bool = False  # CUDA: record every allocation's stack, for the out-of-memory snapshot

    def __post_init__(self) -> None:
        if self.steps and self.span() is None:
            raise ValueError(f"profile.steps must be A-B with 1 <= A <= B (e.g. 10-12), not {self.steps!r}")

    def span(self) -> tuple[int, int] | None:
        found = STEPS.match(self.steps.strip())
        if found is None:
            return None
        first, last = int(found.group(1)), int(found.group(2))
        return (first, last) if 1 <= first <= last else None


class StepProfiler:
    """A sink of every step: starts the profiler before step A, marks each step, and after step B writes
    this rank's trace."""

    def __init__(self, cfg: ProfileConfig, run_dir: Path, rank: int, device: torch.device, *, begins_at: int) -> None:
        self.cfg, self.rank, self.device = cfg, rank, device
        self.first, self.last = cfg.span()
        self.trace = run_dir / FOLDER / f"rank-{rank}-steps-{self.first}-{self.last}.json"
        self.profiler: profile | None = None
        self.marker: record_function | None = None
        if begins_at + 1 == self.first:
            self._start()
        elif begins_at >= self.first:
            print(f"profile: rank {rank} resumes at step {begins_at + 1}, past profile.steps={cfg.steps}: "
                  "nothing is profiled", file=sys.stderr)  # fmt: skip

    def observe_step(self, step: int, values: dict[str, float], phases: dict[str, float]) -> None:
        if self.profiler is None:
            if step + 1 == self.first:
                self._start()
            return
        self.marker.__exit__(None, None, None)
        if step >= self.last:
            self._finish()
        else:
            self._mark(step + 1)

    def write(self, step: int, figures: dict) -> None:
        pass

    def close(self) -> None:
        """The run ended inside the span (its horizon, a signal): keep what was recorded."""
        if self.profiler is not None:
            self.marker.__exit__(None, None, None)
            self._finish()

    def _start(self) -> None:
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
        cfg = self.cfg
        self.profiler = profile(activities=activities, record_shapes=cfg.record_shapes, profile_memory=cfg.memory,
                                with_stack=cfg.with_stack)  # fmt: skip
        self.profiler.__enter__()
        self._mark(self.first)

    def _mark(self, step: int) -> None:
        self.marker = record_function(f"step {step}")
        self.marker.__enter__()

    def _finish(self) -> None:
        self.profiler.__exit__(None, None, None)
        self.trace.parent.mkdir(parents=True, exist_ok=True)
        self.profiler.export_chrome_trace(str(self.trace))
        self.profiler = None
        print(f"profile: rank {self.rank} wrote {self.trace} (open it in https://ui.perfetto.dev)", file=sys.stderr)


def start_profiler(cfg: ProfileConfig, run_dir: Path, rank: int, device: torch.device, *, begins_at: int) -> list:
    """This process's step profiler where ``profile.steps`` asks for one; it records the allocator's
    history from here on with ``profile.memory_history`` on CUDA."""
    if cfg.memory_history and device.type == "cuda":
        torch.cuda.memory._record_memory_history(max_entries=200_000)
    return [StepProfiler(cfg, run_dir, rank, device, begins_at=begins_at)] if cfg.steps else []


def out_of_memory(err: torch.OutOfMemoryError, run_dir: Path, rank: int, step: int) -> UserError:
    """The one-line error for CUDA running out of memory at ``step``, after the allocator's snapshot is
    written beside the run's traces."""
    path = run_dir / FOLDER / f"oom-rank-{rank}-step-{step}.pickle"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.cuda.memory._dump_snapshot(str(path))
        where = f"the allocator's snapshot is in {path} (open it at https://pytorch.org/memory_viz)"
    except Exception as failed:  # the snapshot is a help, not the error: say why it is missing
        where = f"no memory snapshot ({type(failed).__name__}: {failed})"
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else "out of memory"
    return UserError(
        None,
        f"CUDA out of memory on rank {rank} at step {step}: {first_line}; {where}; lower data.max_tokens or "
        "data.batch_size, or set train.precision=bf16",
    )
