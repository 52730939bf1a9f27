"""PyTorch's flight recorder: the last collectives of every process group, dumped where a failure can
be read afterwards, and a first reading of the dumps for the error line.

On NCCL the watchdog dumps on a timeout (``TORCH_NCCL_DUMP_ON_TIMEOUT``); on gloo (recorded too in our
PyTorch) and whenever a collective's failure reaches Python, each process writes its own dump here.
Every process dumps into ``DIR/rank_<R>.json``; torch's analyzer reads a folder of them
(``python -m torch.distributed.flight_recorder.fr_trace DIR``). The reading here is the part that fits in
one line: which collective this rank waits at, and which ranks sent no dump or are behind it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch.distributed as dist

from dist_train.atomic_files import atomic_write

BUFFER_ENTRIES = "2000"  # collectives kept per process


def configure(trace_dir: Path) -> None:
    """Environment for the flight recorder, before the process group starts (a user's own settings win).
    The folder itself is made once the group is joined (``ready``): a process that never joins writes nothing."""
    for name, value in (  # the names PyTorch 2.7 and later read (the older TORCH_NCCL_* ones warn)
        ("TORCH_FR_BUFFER_SIZE", BUFFER_ENTRIES),
        ("TORCH_NCCL_DUMP_ON_TIMEOUT", "1"),
        ("TORCH_FR_DUMP_TEMP_FILE", str(trace_dir / "nccl_rank_")),
    ):
        os.environ.setdefault(name, value)


def ready(trace_dir: Path) -> None:
    """The folder NCCL's watchdog and ``dump`` write into."""
    trace_dir.mkdir(parents=True, exist_ok=True)


def dump(trace_dir: Path, rank: int) -> Path | None:
    """This process's record as ``trace_dir/rank_<rank>.json``; None where this PyTorch cannot dump."""
    try:
        from torch._C._distributed_c10d import _dump_fr_trace_json

        record = _dump_fr_trace_json(True, False)  # with the collectives, completed ones included
    except (ImportError, RuntimeError):
        return None
    ready(trace_dir)
    return atomic_write(trace_dir / f"rank_{rank}.json", record)


def last_collectives(path: Path) -> dict[str, int]:
    """Per process group: the sequence number of the last collective enqueued by the dumping rank."""
    status = json.loads(path.read_text()).get("pg_status", {})
    return {group: int(s.get("last_enqueued_collective", -1)) for group, s in status.items()}


def waiting_at(path: Path) -> str:
    """The newest collective this rank enqueued and did not complete, as ``#N (name)``; '' when none."""
    record = json.loads(path.read_text())
    pending = [e for e in record.get("entries", []) if e.get("state") != "completed" and not e.get("retired")]
    entries = pending or record.get("entries", [])[-1:]
    if not entries:
        return ""
    newest = entries[-1]
    return f"#{newest.get('collective_seq_id')} ({newest.get('profiling_name', '?')})"


def stragglers(trace_dir: Path, rank: int, world_size: int, wait_s: float) -> str:
    """One clause for the error line: the ranks that sent no dump within ``wait_s`` (dead or hung: a
    live rank dumps on its own timeout) and the ranks whose last collective is behind this rank's."""
    mine = trace_dir / f"rank_{rank}.json"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and not all((trace_dir / f"rank_{r}.json").is_file() for r in range(world_size)):
        time.sleep(0.2)
    dumps = {r: trace_dir / f"rank_{r}.json" for r in range(world_size) if (trace_dir / f"rank_{r}.json").is_file()}
    silent = [r for r in range(world_size) if r not in dumps]
    own = last_collectives(mine)
    behind = [
        r
        for r, path in dumps.items()
        if r != rank and any(seq < own.get(group, seq) for group, seq in last_collectives(path).items())
    ]
    parts = [f"rank {rank} waits at collective {waiting_at(mine) or '?'}"]
    if silent:
        parts.append(f"no flight-recorder dump from rank(s) {', '.join(map(str, silent))} within {wait_s:g} s")
    if behind:
        parts.append(f"rank(s) {', '.join(map(str, behind))} behind it")
    return "; ".join(parts) + f" (flight recorder: {trace_dir})"


def record_failure(trace_dir: Path | None, rank: int, world_size: int, wait_s: float = 5.0) -> str:
    """Dump this rank's record and read the folder: the clause for the error line ('' when off)."""
    if trace_dir is None or not dist.is_initialized() or dump(trace_dir, rank) is None:
        return ""
    try:
        return stragglers(trace_dir, rank, world_size, wait_s)
    except (OSError, ValueError):  # a dump another rank is writing, or one from another PyTorch
        return f"flight recorder: {trace_dir}"
