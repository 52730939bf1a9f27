"""docs/REPRODUCTION.md from the results of one ``reproduce`` run: every number in it is one those
runs measured (their summaries are kept beside it, in docs/reproduction/results.json)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from launcher.commands.common import machine
from launcher.commands.reproduction_claims import REPRODUCED, UNRESOLVED, claims_table
from launcher.commands.reproduction_gan import gan_section
from launcher.commands.reproduction_s2s import s2s_section
from launcher.study.budget import budget_minutes


def figures_section(drawn: dict, figures: Path) -> list[str]:
    """The papers' figures drawn from the study's models (``figures``), copied beside the document."""
    from dist_train.figures import CAPTIONS

    lines = []
    for record in drawn.values():
        for file in map(Path, record.get("files", [])):
            if file.suffix == ".png" and file.stem in CAPTIONS:
                shutil.copyfile(file, figures / file.name)
                lines += [f"{CAPTIONS[file.stem]}.", "", f"![{file.stem}](reproduction/{file.name})", ""]
    if not lines:
        return []
    s2s = drawn.get("s2s", {})
    model = (
        f" (s2s: the first seed's main model, beam {s2s['beam']}, {s2s['num_sentences']} sentences of "
        f"{Path(s2s.get('test_set', 'newstest2014')).name})"
        if s2s
        else ""
    )
    return ["## The papers' figures", "", f"Drawn from the study's models by `figures`{model}.", "", *lines]


HONESTY = """\
## What is and is not comparable

- The paper trained for ten days on 8 GPUs on 12M sentence pairs with 160k/80k vocabularies and 4
  layers of 1000 cells; each run here trains thousands of steps on a 2-core CPU, on 40k pairs, with
  10k-word vocabularies and 256 cells, so absolute perplexity and BLEU are far from the paper's and are
  not comparable. What carries over is the direction of each effect at equal steps: whether reversing
  helps, whether depth helps, how much beam and ensembles add.
- Every s2s run takes the same number of steps, so the ablations compare equal updates; the paper
  compared converged models. A deeper model starts slower, so depth's verdict at a budget this small
  says where the curves stand, not where they end.
- A verdict needs every seed of one side apart from every seed of the other; with two seeds that is
  a range, not an interval, and "not resolved" means the ranges overlap, not that there is no effect.
- The GAN's Parzen estimate is the paper's protocol (10,000 samples, σ from a log grid on the
  validation set, mean over the 10,000 test images); the paper itself warns that the estimator has
  high variance and does not work well in high dimensions.
"""


def cannot_show(study) -> list[str]:
    """What a reduced study says first: what its budget is too small to show."""
    if study.scale != "quick":
        return []
    return [
        f"This is the reduced study (`--scale quick`, about 40 minutes): {study.steps:,} steps a run and "
        f"{study.gan_epochs:g} GAN epochs, a third of the default study's. It cannot show what needs more "
        "updates to appear: a deeper model's passing a shallower one after its slower start, reversal's gain "
        'once the models use their source, the later part of the GAN\'s Parzen curve. Its "not resolved" '
        "verdicts say where the curves stand early; `--scale small` (under 2 hours) is the study this document "
        "is meant to show.",
        "",
    ]


def records(results: dict) -> list[dict]:
    """Every run's and evaluation's summary in the results, once (the first seed's beam-2 evaluation
    serves both as its run's and as the beam table's)."""
    gan = results["gan"]
    found = [*results["s2s"].values(), *results["evaluations"].values(), gan["training"], gan["classifier"],
             gan["evaluation"], *gan.get("curve", {}).values()]  # fmt: skip
    return list({json.dumps(r, sort_keys=True): r for r in found}.values())


def wall_time(found: list[dict]) -> tuple[float, int]:
    """Seconds from the first step's start to the last one's end, and the most steps that ran at once."""
    spans = [(r["finished_at"] - r["study_seconds"], r["finished_at"]) for r in found if "finished_at" in r]
    if not spans:
        return sum(r.get("study_seconds", 0.0) for r in found), 1
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = at_once = 0
    for _, delta in edges:
        running += delta
        at_once = max(at_once, running)
    return max(end for _, end in spans) - min(start for start, _ in spans), at_once


def command_line(study) -> str:
    """The ``reproduce`` flags that make this study again."""
    return (
        f"--scale {study.scale} --architecture {study.architecture} --steps-per-run {study.steps} --seeds "
        f"{len(study.seeds)} --test-sentences {study.test_sentences} --gan-epochs {study.gan_epochs:g} "
        f"--classifier-epochs {study.classifier_epochs}"
    )


def write(study, results: dict) -> None:
    figures = study.out.parent / "reproduction"
    figures.mkdir(parents=True, exist_ok=True)
    m = machine()
    timed = [r["study_seconds"] for r in records(results) if "study_seconds" in r]
    wall, at_once = wall_time(records(results))
    s2s_lines, s2s_claims = s2s_section(study, results, figures)
    gan_lines, gan_claims = gan_section(results["gan"], figures)
    claims = s2s_claims + gan_claims
    tally = {v: sum(c.verdict == v for c in claims) for v in (REPRODUCED, "not reproduced", UNRESOLVED)}
    lines = [
        "# Reproduction",
        "",
        f"Generated by `python -m launcher.main reproduce {command_line(study)}` on "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}; its {len(timed)} runs and evaluations took "
        f"{sum(timed) / 60:.0f} minutes, {wall / 60:.0f} minutes of wall time with up to {at_once} at once "
        f"(its budget: {budget_minutes(study, at_once):.0f}).",
        f"Machine: {m['cpu_model']}, {m['cpus']} CPUs, torch {m['torch']}, {m['gpu'] or 'no GPU'}.",
        "",
        *cannot_show(study),
        "## The claims",
        "",
        "Reproduced: the paper's direction with every seed apart from every other. Not reproduced: the opposite",
        "direction, seeds apart. Not resolved at this budget: the seeds' ranges overlap (the sections below say",
        f"what the curves show). Here: {', '.join(f'{n} {v}' for v, n in tally.items())}.",
        "",
        *claims_table(claims),
        *s2s_lines,
        *gan_lines,
        *figures_section(results.get("figures", {}), figures),
        HONESTY,
    ]
    study.out.write_text("\n".join(lines))
    (figures / "results.json").write_text(json.dumps(results, indent=1) + "\n")
