"""When a collective fails: whether a peer died or stopped answering, and the one line that says so,
naming this rank, what it was doing and what the flight recorder shows (``flight_recorder``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch.distributed as dist

from dist_train import flight_recorder

if TYPE_CHECKING:
    from dist_train.distributed import Topology


class PeerError(RuntimeError):
    """A collective failed because a peer died or stopped answering; ``str()`` is one line."""


# what gloo and NCCL say when a peer is gone (a closed connection) or silent (a timeout)
_PEER_GONE = re.compile(r"timed out|timeout|connection (reset|closed|refused)|broken pipe|closed by peer|EOF", re.I)
# how an error shows that it came from a collective backend: gloo and NCCL name their sources in the message
_BACKEND = re.compile(r"gloo|nccl|c10d|ProcessGroup", re.I)


def peer_failure(err: BaseException, topology: Topology, operation: str) -> PeerError | None:
    """``err`` as a PeerError naming this rank and the ``operation`` that failed, when it is a
    collective's failure in a process group (torch.distributed's own error types, or a backend's
    RuntimeError saying a peer is gone or silent); None for any other error."""
    text = " ".join(str(err).split())
    found = _PEER_GONE.search(text)
    from_backend = isinstance(err, dist.DistError) or (isinstance(err, RuntimeError) and _BACKEND.search(text))
    if not (topology.distributed and from_backend and found):
        return None
    start = max(text.rfind("] ", 0, found.start()), text.rfind(": ", 0, found.start())) + 2  # the backend's words
    cause = text[max(start, 0) :].split(" At: ")[0][:200]
    trace_dir = None if topology.trace_dir is None else Path(topology.trace_dir)
    recorded = flight_recorder.record_failure(trace_dir, topology.rank, topology.world_size)
    return PeerError(
        f"rank {topology.rank} (node {topology.node_name}): {operation} failed: a peer died or did not answer "
        f"within parallel.collective_timeout_s={topology.collective_timeout_s:g} s ({cause})"
        + (f"; {recorded}" if recorded else "")
    )
