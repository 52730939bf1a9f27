"""``preflight``'s verdict: which process lags its peers or failed a measurement, as a table for people
and a dict for the JSON line."""

from __future__ import annotations

import dataclasses
import statistics

from dist_train.preflight import ProcessReport

LOWER_IS_BETTER = ("allreduce_latency_us",)  # figures where a larger value is the worse one
SLOW_FACTOR = 2.0  # a figure below half its peers' median (or a latency above twice it) is named


@dataclasses.dataclass(frozen=True)
class Finding:
    """Something wrong with one process: ``what`` says which figure or measurement, and by how much."""

    node: str
    node_rank: int
    rank: int
    what: str


def find_problems(reports: list[ProcessReport]) -> list[Finding]:
    """Failed measurements, figures far from their peers' median, and run directories without room
    for the checkpoints the job keeps; by rank."""
    found = [*failed(reports), *lagging(reports), *short_of_disk(reports)]
    return sorted(found, key=lambda f: f.rank)


def finding(report: ProcessReport, what: str) -> Finding:
    return Finding(report.node_name, report.node_rank, report.rank, what)


def failed(reports: list[ProcessReport]) -> list[Finding]:
    return [finding(r, f"{name} failed: {error}") for r in reports for name, error in r.failures.items()]


def lagging(reports: list[ProcessReport]) -> list[Finding]:
    """Each figure of each process against the median of the same figure on the other processes."""
    found = []
    for report in reports:
        for name, value in report.figures.items():
            peers = [r.figures[name] for r in reports if r is not report and name in r.figures]
            if not peers:
                continue
            median = statistics.median(peers)
            if name in LOWER_IS_BETTER:
                if value > SLOW_FACTOR * median:
                    found.append(finding(report, f"{name} {human(name, value)} is above twice its peers' median "
                                                 f"({human(name, median)})"))  # fmt: skip
            elif value < median / SLOW_FACTOR:
                found.append(finding(report, f"{name} {human(name, value)} is below half its peers' median "
                                             f"({human(name, median)})"))  # fmt: skip
    return found


def short_of_disk(reports: list[ProcessReport]) -> list[Finding]:
    found = []
    for report in reports:
        disk = report.details.get("disk")
        if disk and not disk["enough"]:
            found.append(
                finding(
                    report,
                    f"disk: {disk['free_bytes'] / 1024**3:.1f} GiB free in {disk['path']} holds "
                    f"{disk['checkpoints_that_fit']} checkpoint(s) of {disk['checkpoint_bytes'] / 1024**3:.2f} GiB; "
                    f"the job needs {disk['checkpoints_needed']} ({disk['checkpoint_source']})",
                )
            )
    return found


def human(name: str, value: float) -> str:
    """A figure in the unit its name implies: FLOP/s, bytes/s, µs, tokens or samples per second."""
    if name.startswith("matmul_flops"):
        return f"{value / 1e12:.2f} TFLOP/s" if value >= 1e12 else f"{value / 1e9:.1f} GFLOP/s"
    if "bytes_per_s" in name or "busbw" in name:
        return f"{value / 1e9:.2f} GB/s"
    if name.endswith("_us"):
        return f"{value:.0f} µs"
    return f"{value:,.0f}/s"


def summary(reports: list[ProcessReport], problems: list[Finding]) -> dict:
    """The JSON line: every process's report, the problems found, and whether there were none."""
    return {
        "job": "preflight",
        "world_size": len(reports),
        "num_nodes": len({(r.node_rank, r.node_name) for r in reports}),
        "processes": [dataclasses.asdict(r) for r in reports],
        "problems": [dataclasses.asdict(p) for p in problems],
        "ok": not problems,
    }


def table(reports: list[ProcessReport], problems: list[Finding]) -> str:
    """One row per process: its best matmul rate per precision, slowest copy, all-reduce bus bandwidth
    at the largest size, latency, reader speed and checkpoints that fit; then the problems."""
    names = sorted({name for r in reports for name in r.figures})
    matmuls = sorted({name.split(".")[1] for name in names if name.startswith("matmul_flops.")})
    busbw = [n for n in names if n.startswith("allreduce_busbw.")]
    largest = max(busbw, key=lambda n: int(n.split(".")[1].removesuffix("MiB")), default=None)
    header = ["node", "rank", "device", *(f"matmul {p}" for p in matmuls), "copy (slowest)"]
    header += ["all-reduce busbw" + (f" {largest.split('.')[1]}" if largest else ""), "latency", "reader", "disk"]
    rows = [header]
    for r in reports:
        f = r.figures
        best = {p: max((v for k, v in f.items() if k.startswith(f"matmul_flops.{p}.")), default=None) for p in matmuls}
        copies = [v for k, v in f.items() if k.startswith("copy_bytes_per_s.")]
        reader = f.get("reader_tokens_per_s") or f.get("reader_samples_per_s")
        disk = r.details.get("disk")
        rows.append([
            f"{r.node_name}/{r.node_rank}", str(r.rank), device_name(r),
            *(cell("matmul_flops", best[p]) for p in matmuls), cell("bytes_per_s", min(copies, default=None)),
            cell("busbw", f.get(largest)) if largest else "-", cell("latency_us", f.get("allreduce_latency_us")),
            "-" if reader is None else f"{reader:,.0f}/s",
            "-" if not disk else f"{disk['free_bytes'] / 1024**3:.0f} GiB, {disk['checkpoints_that_fit']} ckpt",
        ])  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths)) for row in rows]
    lines.append(f"{len(problems)} problem(s)" + (":" if problems else ": every process is within 2× of its peers"))
    lines += [f"  node {p.node} ({p.node_rank}), rank {p.rank}: {p.what}" for p in problems]
    return "\n".join(lines)


def cell(name: str, value: float | None) -> str:
    return "-" if value is None else human(name, value)


def device_name(report: ProcessReport) -> str:
    info = report.info
    if info.get("kind") == "cuda":
        gpus = info.get("gpus") or [{}]
        return f"{len(gpus)}× {gpus[0].get('name') or 'GPU'}"
    return (info.get("cpu_model") or "cpu")[:28]
