"""The s2s part of docs/REPRODUCTION.md: the reversal, depth, beam and ensemble tables from the study's
runs and evaluations, the measured effects in words, the budget caveat, and the dev-perplexity plot."""

from __future__ import annotations

import statistics
from pathlib import Path

from dist_train.reporting import plot_panels, read_jsonl

PAPER = {  # quoted from the papers, for the tables' last column
    "reversal_ppl": "5.8 → 4.7",
    "reversal_bleu": "25.9 → 30.6",
    "depth": "each layer: perplexity −~10%",
    "beam": "beam 2 gives most of beam 12's gain",
    "ensemble": "30.59 (1 reversed, beam 12) → 33.27 (2, beam 12)",
    "parzen": "225 ± 2",
}


def spread(values: list[float], digits: int = 2) -> str:
    """mean (min–max) over seeds."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def change(label: str, before: list[float], after: list[float], ranges: str = "the seeds' ranges") -> str:
    """A measured effect, "label a → b (+x%; the seeds' ranges do not overlap)": the means, the relative
    change, and whether the ranges of the values behind them keep apart."""
    a, b = statistics.mean(before), statistics.mean(after)
    apart = max(before) < min(after) or max(after) < min(before)
    relative = f"{b / a - 1:+.1%}" if a else f"{b - a:+.2f}"  # from 0 (a BLEU of 0, say): the difference
    return f"{label} {a:.2f} → {b:.2f} ({relative}; {ranges} {'do not overlap' if apart else 'overlap'})"


def run_budget(study) -> str:
    """How long each s2s run of the study trains, in words."""
    if study.minutes:
        return f"{study.minutes:g} minutes"
    return f"to {' '.join(study.plan.s2s_limit)}" if study.plan.s2s_limit else "its recipe's epochs"


def config_of(name: str) -> str:
    return name.rsplit("-seed", 1)[0]


def by_config(study, evaluations: dict, key: str) -> dict[str, list[float]]:
    grouped: dict[str, list[float]] = {}
    for name in study.s2s_runs():
        grouped.setdefault(config_of(name), []).append(evaluations[name][key])
    return grouped


MODEL_TEXT = {  # what each --architecture trains, said before the tables
    "small": [
        "The `small` preset: 2 layers of 256 cells, 10k-word vocabularies, Adam, with Luong attention and",
        "copying (a pointer-generator), which the paper's model did not have: with them a few CPU-minutes give",
        "a model that translates, so BLEU, beam and ensemble effects can show at all. Attention also links",
        "each target word to its source words directly, the short-range dependency that reversing the",
        "source was introduced to create, so reversal should matter less here than in the paper.",
        "(`--architecture paper` runs the same study on the paper's model: no BLEU within minutes.)",
    ],
    "paper": [
        "The paper's model (no attention, no copying) at the `small` preset's size: 2 layers of 256 cells,",
        "10k-word vocabularies, Adam. Within minutes on a CPU it does not learn to translate (BLEU ~0);",
        "perplexity is the figure that carries the effects.",
    ],
}


def dev_at_equal_steps(study, runs: dict) -> tuple[int, dict[str, list[float]]] | None:
    """The dev perplexity of every depth's runs at the last evaluated step that all of them reached."""
    logged = {}
    for name, summary in runs.items():
        if config_of(name).startswith("reversed-"):
            found = read_jsonl(Path(summary["run_dir"]) / "train.jsonl")
            logged[name] = {r["step"]: r["dev_ppl"] for r in found if "dev_ppl" in r}
    common = set.intersection(*(set(steps) for steps in logged.values())) if logged else set()
    if not common:
        return None
    step = max(common)
    grouped: dict[str, list[float]] = {}
    for name, at in logged.items():
        grouped.setdefault(config_of(name), []).append(at[step])
    return step, grouped


def s2s_section(study, results: dict, figures: Path) -> list[str]:
    evaluations, runs = results["evaluations"], results["s2s"]
    ppl, bleu = by_config(study, evaluations, "perplexity"), by_config(study, evaluations, "bleu")
    steps = {}
    for name, summary in runs.items():
        steps.setdefault(config_of(name), []).append(summary["steps"])
    seeds = ", ".join(map(str, study.seeds))
    n = evaluations[next(iter(study.s2s_runs()))]["num_sentences"]
    paper_ppl, paper_bleu = PAPER["reversal_ppl"].split(" → "), PAPER["reversal_bleu"].split(" → ")
    main = config_of(study.main_run(study.seeds[0]))
    plain = main.replace("reversed", "plain")
    lines = [
        "## Sequence to sequence (Sutskever et al., 2014)",
        "",
        *MODEL_TEXT[study.architecture],
        f"Each run trains {run_budget(study)} on the WMT'14 training sample (newstest2008–2011, the",
        "Europarl and giga-fren heads; dev newstest2013), seeds " + seeds + ". Test: perplexity and BLEU",
        f"(sacreBLEU, detokenized, beam {study.plan.eval_beam} unless said) on the first {n} sentences of",
        "newstest2014.",
        "Figures are the mean over seeds with (min–max).",
        "",
        "### Reversing the source",
        "",
        "| source order | steps | test perplexity | test BLEU | paper |",
        "|---|---|---|---|---|",
        *[
            f"| {order} | {spread(steps[config], 0)} | {spread(ppl[config])} | {spread(bleu[config])} | "
            f"ppl {paper_ppl[i]}, BLEU {paper_bleu[i]} |"
            for i, (order, config) in enumerate((("plain", plain), ("reversed", main)))
        ],
        "",
        "Measured: "
        + change("test perplexity", ppl[plain], ppl[main])
        + "; "
        + change("test BLEU", bleu[plain], bleu[main])
        + ".",
        "",
        *budget_caveat(study, bleu, evaluations),
        *depth_table(study.plan.depths, steps, ppl, bleu, dev_at_equal_steps(study, runs)),
        *beam_and_ensemble_tables(study, evaluations),
        "![dev perplexity](reproduction/s2s-dev.png)",
        "",
    ]
    curves(study, runs, figures / "s2s-dev.png")
    return lines


def depth_table(depths: tuple[int, ...], steps: dict, ppl: dict, bleu: dict, equal_steps: tuple | None) -> list[str]:
    """The depths (reversed): at equal minutes (test) and, where the logs allow, at equal steps (dev)."""
    at = f"dev perplexity at step {equal_steps[0]:,}" if equal_steps else "dev perplexity at equal steps"
    lines = [
        "### Depth",
        "",
        f"| layers | steps | test perplexity | change per layer added | test BLEU | {at} |",
        "|---|---|---|---|---|---|",
    ]
    previous = None
    for layers in depths:
        config = f"reversed-{layers}l"
        mean = statistics.mean(ppl[config])
        per_layer = "" if previous is None else f"{(mean / previous[1]) ** (1 / (layers - previous[0])) - 1:+.1%}"
        dev = spread(equal_steps[1][config]) if equal_steps else "not logged"
        lines.append(
            f"| {layers} | {spread(steps[config], 0)} | {spread(ppl[config])} | {per_layer} | {spread(bleu[config])} "
            f"| {dev} |"
        )
        previous = (layers, mean)
    measured = ""
    if equal_steps:
        dev_ppl = equal_steps[1]
        at = {layers: dev_ppl[f"reversed-{layers}l"] for layers in depths}
        pairs = [
            change(f"{'' if k else 'dev perplexity, '}{a} → {b} layers", at[a], at[b])
            for k, (a, b) in enumerate(zip(depths, depths[1:]))
        ]
        measured = f"Measured at step {equal_steps[0]:,}: " + "; ".join(pairs) + ". "
    return [
        *lines,
        "",
        measured + "Equal minutes give a deeper model fewer steps; the last column compares the depths after the same",
        "number of updates (the dev set is evaluated every 200 steps; learning-rate decay is planned per run",
        "from its own speed, so at equal steps the shallower runs are further from their decay).",
        f"Paper: {PAPER['depth']} (4 layers of 1000 cells, 12M sentence pairs).",
        "",
    ]


MEMBERS = "the ensemble and its members' range"


def beam_and_ensemble_tables(study, evaluations: dict) -> list[str]:
    """Beams 1, 2, 12 on the first seed's main reversed model; that model and the second seed's together."""
    first, second = (study.main_run(seed) for seed in study.seeds[:2])
    lines = ["### Beam size", "", "| beam | test BLEU | decoding seconds |", "|---|---|---|"]
    b1, b2, b12 = beams = [evaluations[f"{first}-beam{beam}"] for beam in (1, 2, 12)]
    for beam, found in zip((1, 2, 12), beams):
        lines.append(f"| {beam} | {found['bleu']:.2f} | {found['translate_seconds']:.0f} |")
    slower = b12["translate_seconds"] / b2["translate_seconds"]
    lines += [
        "",
        f"One checkpoint ({first}). Measured: beam 2 against greedy {b2['bleu'] - b1['bleu']:+.2f} BLEU; beam 12",
        f"against beam 2 {b12['bleu'] - b2['bleu']:+.2f}, decoding {slower:.1f}× as long. Paper: {PAPER['beam']}.",
        "",
        "### Ensemble",
        "",
    ]
    lines += ["| models | test BLEU | test perplexity |", "|---|---|---|"]
    for label, found in (
        (first, evaluations[first]),
        (second, evaluations[second]),
        ("both (ensemble)", evaluations["ensemble"]),
    ):
        lines.append(f"| {label} | {found['bleu']:.2f} | {found['perplexity']:.2f} |")
    members = [evaluations[first], evaluations[second]]
    measured = (
        change("perplexity (the members' mean → the ensemble)", [m["perplexity"] for m in members],
               [evaluations["ensemble"]["perplexity"]], ranges=MEMBERS)
        + "; " + change("BLEU", [m["bleu"] for m in members], [evaluations["ensemble"]["bleu"]], ranges=MEMBERS)
    )  # fmt: skip
    beam = study.plan.eval_beam
    return [*lines, "", f"Measured: {measured}. Beam {beam}. Paper (BLEU): {PAPER['ensemble']}.", ""]


def budget_caveat(study, bleu: dict[str, list[float]], evaluations: dict) -> list[str]:
    """Said when the budget was too small for the models to translate (BLEU below 1 everywhere), or
    for some configurations to translate better than copying the source unchanged."""
    best = max(max(values) for values in bleu.values())
    copying = evaluations[next(iter(study.s2s_runs()))].get("bleu_copy_baseline")
    below = [config for config, values in bleu.items() if copying is not None and statistics.mean(values) < copying]
    if best >= 1.0 and not below:
        return []
    if best >= 1.0:
        return [
            f"**At {run_budget(study)} per run the models have only begun to translate: {', '.join(below)}",
            f"score below copying the source unchanged (BLEU {copying:.2f} on these sentences). Here the evidence",
            "is in perplexity differences whose seeds' ranges do not overlap; BLEU differences of a point or so",
            "are not evidence of the paper's effects. Longer runs (`--minutes-per-run`) translate better.**",
            "",
        ]
    return [
        f"**At {run_budget(study)} per run no model has learned to translate yet (every BLEU is below 1):",
        "the BLEU, beam and ensemble figures below are noise, not the paper's effects; test perplexity is the",
        "only signal left, and it favours whatever takes the most steps. Run with a larger",
        "`--minutes-per-run`, or `--architecture small`, for figures that can show the effects.**",
        "",
    ]


def curves(study, runs: dict, path: Path) -> None:
    """Dev perplexity by source order and by depth, training loss by source order: a colour per
    configuration, a line style per seed."""
    logs = {name: read_jsonl(Path(summary["run_dir"]) / "train.jsonl") for name, summary in runs.items()}
    configs = sorted({config_of(name) for name in logs})

    def lines(names, figure):
        return [(name, logs[name], figure, style(name)) for name in names]

    def style(name):
        seed = study.seeds.index(int(name.rsplit("seed", 1)[1]))
        return {"color": f"C{configs.index(config_of(name))}", "linestyle": ("-", "--", ":", "-.")[seed % 4]}

    main = study.main_run(study.seeds[0]).rsplit("-seed", 1)[0]
    order = [name for name in logs if config_of(name) in (main.replace("reversed", "plain"), main)]
    depth = [name for name in logs if config_of(name).startswith("reversed-")]
    panels = [
        ("dev perplexity: source order", lines(order, "dev_ppl"), True),
        ("dev perplexity: depth (reversed)", lines(depth, "dev_ppl"), True),
        ("training loss (nats/word): source order", lines(order, "loss"), False),
    ]
    plot_panels(panels, path, "s2s runs of the study (colour: configuration; line style: seed)")
