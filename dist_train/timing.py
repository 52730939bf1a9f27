"""Timing work on a device honestly: GPU kernels run asynchronously, so a host clock read while they
are queued measures only the queueing. Every figure the benchmarks and ``preflight`` report goes
through here: CUDA events bracketed by ``torch.cuda.synchronize`` on a GPU, ``perf_counter`` on CPU."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch


def as_devices(devices: Iterable[str | torch.device] | str | torch.device) -> list[torch.device]:
    if isinstance(devices, (str, torch.device)):
        devices = [devices]
    return [torch.device(d) for d in devices]


def synchronize(devices: Iterable[str | torch.device] | str | torch.device) -> None:
    """Wait until every CUDA device among ``devices`` has finished its queued work (nothing on CPU)."""
    for device in dict.fromkeys(as_devices(devices)):  # each device once, in order
        if device.type == "cuda":
            torch.cuda.synchronize(device)


class Stopwatch:
    """Seconds between ``start()`` and ``stop()`` of work on ``devices``: the queues are drained at
    both ends, so the time is the work's, not its launch's."""

    def __init__(self, devices: Iterable[str | torch.device] | str | torch.device = "cpu") -> None:
        self.devices = as_devices(devices)
        self._started = 0.0

    def start(self) -> None:
        synchronize(self.devices)
        self._started = time.perf_counter()

    def stop(self) -> float:
        synchronize(self.devices)
        return time.perf_counter() - self._started


def time_calls(fn: Callable[[], object], device: str | torch.device, calls: int) -> float:
    """Seconds that ``calls`` back-to-back calls of ``fn`` take on one ``device``: between two CUDA
    events on a GPU (after draining its queue), by the host clock on CPU."""
    device = torch.device(device)
    if device.type != "cuda":
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return time.perf_counter() - start
    torch.cuda.synchronize(device)
    with torch.cuda.device(device):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        for _ in range(calls):
            fn()
        end.record()
    end.synchronize()
    return begin.elapsed_time(end) / 1000


def best_rate(
    fn: Callable[[], object], work: float, device: str | torch.device, *, seconds: float, windows: int
) -> float:
    """The best of ``windows`` timing windows of ``work`` units per second (FLOPs, bytes), over about
    ``seconds`` in all after a warm-up call. A peak: other load on the machine only lowers a window,
    so the best window is the closest to what the hardware can do. Each window runs at least one call.

    On a GPU a window is a count of calls (from the warm-up's length) between two CUDA events; on CPU
    it runs calls until its share of time has passed, since on a shared machine one call may take
    100× another and a count fixed in advance could run for minutes."""
    device, window = torch.device(device), seconds / max(windows, 1)
    once = time_calls(fn, device, 1)  # warm-up: allocations, kernel selection
    if device.type == "cuda":
        once = min(once, time_calls(fn, device, 1))
        calls = max(1, min(100_000, round(window / max(once, 1e-9))))
        return max(work * calls / max(time_calls(fn, device, calls), 1e-12) for _ in range(windows))
    return max(work * calls / elapsed for calls, elapsed in (_cpu_window(fn, window) for _ in range(windows)))


def _cpu_window(fn: Callable[[], object], seconds: float) -> tuple[int, float]:
    """(calls, seconds) of calling ``fn`` until ``seconds`` have passed (at least once)."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        if (elapsed := time.perf_counter() - start) >= seconds:
            return calls, elapsed
