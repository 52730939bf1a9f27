"""The papers' claims against what the study measured: each one reproduced (the paper's direction, with
every seed's figure apart from every other's), not reproduced (the opposite direction, apart), or not
resolved at this budget (the seeds' ranges overlap); and what the learning curves say about it."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from dist_train.reporting import read_jsonl

REPRODUCED, NOT_REPRODUCED, UNRESOLVED = "reproduced", "not reproduced", "not resolved at this budget"


@dataclass(frozen=True)
class Claim:
    """One row of the document's claims table."""

    claim: str
    paper: str
    measured: str
    verdict: str

    def row(self) -> str:
        return f"| {self.claim} | {self.paper} | {self.measured} | **{self.verdict}** |"


def verdict(before: list[float], after: list[float], lower_is_better: bool = True) -> str:
    """Whether ``after`` is better than ``before`` with every value of one apart from every value of the
    other (reproduced), worse and apart (not reproduced), or neither."""
    low, high = (after, before) if lower_is_better else (before, after)
    if max(low) < min(high):
        return REPRODUCED
    if max(high) < min(low):
        return NOT_REPRODUCED
    return UNRESOLVED


def claims_table(claims: list[Claim]) -> list[str]:
    return [
        "| claim | paper | here (mean over seeds) | verdict |",
        "|---|---|---|---|",
        *[claim.row() for claim in claims],
        "",
    ]


def dev_curves(run_dirs: dict[str, Path], config_of) -> dict[str, dict[int, list[float]]]:
    """Configuration → evaluated step → the dev perplexity of each of its seeds there (steps that every
    seed of the configuration logged)."""
    found: dict[str, dict[int, list[float]]] = {}
    for name, run_dir in run_dirs.items():
        for record in read_jsonl(Path(run_dir) / "train.jsonl"):
            if "dev_ppl" in record:
                found.setdefault(config_of(name), {}).setdefault(record["step"], []).append(record["dev_ppl"])
    seeds = {config: max(len(v) for v in at.values()) for config, at in found.items()}
    return {config: {s: v for s, v in sorted(at.items()) if len(v) == seeds[config]} for config, at in found.items()}


def curve_story(worse: dict[int, list[float]], better: dict[int, list[float]], names: tuple[str, str]) -> str:
    """What two configurations' dev curves say, ``better`` being the one the paper expects lower: from
    which evaluated step on every seed of one stays below every seed of the other (or that their ranges
    still overlap at the end), and how the gap between the means moved."""
    steps = sorted(set(worse) & set(better))
    if not steps:
        return "No dev evaluations in common."
    gaps = {s: statistics.mean(worse[s]) - statistics.mean(better[s]) for s in steps}
    middle, last = steps[len(steps) // 2], steps[-1]
    movement = (
        f"the gap between the means ({names[0]} − {names[1]}) went from {gaps[middle]:+.2f} at step {middle:,} "
        f"to {gaps[last]:+.2f} at step {last:,}"
    )
    for low, high, (a, b) in ((better, worse, names[::-1]), (worse, better, names)):
        apart = [s for s in steps if max(low[s]) < min(high[s])]
        since = next((s for s in steps if all(t in apart for t in steps if t >= s)), None)
        if since is not None:
            return f"Dev curves: {a} below {b} for every seed from step {since:,} on; {movement}."
    return f"Dev curves: the seeds' ranges still overlap at step {last:,}; {movement}."
