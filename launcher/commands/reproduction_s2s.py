"""The s2s part of docs/REPRODUCTION.md: the reversal, depth, beam and ensemble tables from the study's
runs and evaluations, each claim's verdict, what the dev curves say, the budget caveat, and the plot."""

from __future__ import annotations

import statistics
from pathlib import Path

from dist_train.reporting import plot_panels, read_jsonl
from launcher.commands.reproduction_claims import UNRESOLVED, Claim, curve_story, dev_curves, verdict

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
    return f"{study.steps:,} steps" if study.steps else "its recipe's epochs"


def config_of(name: str) -> str:
    return name.rsplit("-seed", 1)[0]


def by_config(study, evaluations: dict, key: str) -> dict[str, list[float]]:
    """Configuration → each seed's ``key`` (configurations whose evaluations lack it are left out)."""
    grouped: dict[str, list[float]] = {}
    for name in study.s2s_runs():
        grouped.setdefault(config_of(name), []).append(evaluations[name].get(key))
    return {config: values for config, values in grouped.items() if None not in values}


MODEL_TEXT = {  # what each --architecture trains, said before the tables
    "paper": [
        "The paper's model: no attention, no copying; the decoder sees the source only through the",
        "encoder's last state, so the long path from the first source words to the first target words is",
        "there, and reversal's short-cut can show. At the `small` preset's size (layers of 256 cells,",
        "10k-word vocabularies, batches of 32 sentences, Adam 0.003, the last 30% of the steps decaying",
        "the learning rate to 0), on all 40k training pairs up to 100 tokens: the longer the sentences, the",
        "longer the path reversal shortens, and a smaller slice (pairs of ≤ 15 tokens: 9,571) was learnt",
        "by heart within a few epochs, where reversal changed dev perplexity by 2%.",
    ],
    "small": [
        "The `small` preset: layers of 256 cells, 10k-word vocabularies, Adam, with Luong attention and",
        "copying (a pointer-generator), which the paper's model did not have: with them a few CPU-minutes give",
        "a model that translates. Attention also links each target word to its source words directly, the",
        "short path that reversing the source was introduced to create, so reversal matters less here.",
    ],
}


DEV_TEST = {  # the study's in_domain → (its dev set, its test set), as the document names them
    True: ("giga-fren's own val split, 1,500 pairs", "giga-fren's own test split"),
    False: ("newstest2013", "newstest2014"),
}
IN_DOMAIN_TEXT = [
    "",
    "Why giga-fren's held-out splits and not the news sets the paper used: 68% of the training sample is",
    "giga-fren's web text, and on news the dev curves of this model stop improving after ~1,500 steps (the",
    "study of 2026-11-30: 2 layers, newstest2013 perplexity 68.0 reversed and 69.0 plain at step 1,500, 67.1",
    "and 68.4 at 3,000), which leaves nothing for an ablation to move. On giga-fren's val split the same",
    "runs kept falling all 3,000 steps (reversed 51.1 → 29.2 from step 1,500; one probe), so the papers'",
    "effects have room to show. At `--scale paper` the study reads newstest2013 and newstest2014.",
]


def s2s_section(study, results: dict, figures: Path) -> tuple[list[str], list[Claim]]:
    from launcher.commands.reproduction_decoding import beam_and_ensemble

    evaluations, runs = results["evaluations"], results["s2s"]
    ppl, bleu = by_config(study, evaluations, "perplexity"), by_config(study, evaluations, "bleu")
    curves = dev_curves({name: summary["run_dir"] for name, summary in runs.items()}, config_of)
    n = evaluations[next(iter(study.s2s_runs()))]["num_sentences"]
    main = config_of(study.main_run(study.seeds[0]))
    epochs = statistics.mean(runs[name]["epochs"] for name in runs if config_of(name) == main)
    translates = max(max(values) for values in bleu.values()) >= 1.0
    other = by_config(study, evaluations, "perplexity_other_source")
    reversal_lines, reversal_claims = reversal(study, ppl, bleu, other, curves, translates)
    depth_lines, depth_claims = depth(study, ppl, curves)
    decoding_lines, decoding_claims = beam_and_ensemble(study, evaluations, translates)
    lines = [
        "## Sequence to sequence (Sutskever et al., 2014)",
        "",
        *MODEL_TEXT[study.architecture],
        "",
        f"Each run trains {run_budget(study)} ({epochs:.1f} epochs) on the WMT'14 training sample (newstest2008–2011,",
        f"the Europarl and giga-fren heads; dev: {DEV_TEST[study.plan.in_domain][0]}, evaluated every "
        f"{dev_every(curves)} steps), seeds {', '.join(map(str, study.seeds))}.",
        f"Test: perplexity and BLEU (sacreBLEU, detokenized, beam {study.plan.eval_beam} unless said) on the first "
        f"{n} sentences of {DEV_TEST[study.plan.in_domain][1]}. Figures are the mean over seeds with (min–max).",
        *(IN_DOMAIN_TEXT if study.plan.in_domain else []),
        "",
        *budget_caveat(study, bleu, evaluations),
        *reversal_lines,
        *depth_lines,
        *decoding_lines,
        "![dev perplexity](reproduction/s2s-dev.png)",
        "",
    ]
    plot_curves(study, runs, figures / "s2s-dev.png")
    return lines, reversal_claims + depth_claims + decoding_claims


def dev_every(curves: dict) -> str:
    steps = sorted({step for at in curves.values() for step in at})
    return f"{steps[1] - steps[0]:,}" if len(steps) > 1 else "—"


def source_use(ppl: dict, other: dict, configs: tuple[str, ...]) -> list[str]:
    """How much of each configuration's test perplexity its source explains: the references scored beside
    their own sources against beside another sentence's (``evaluate``'s ``perplexity_other_source``)."""
    if not all(config in other for config in configs):
        return []
    said = [f"{config} {spread(ppl[config])} → {spread(other[config])}" for config in configs]
    return [
        "What the models take from their source: test perplexity beside each reference's own source, then beside",
        f"another sentence's: {'; '.join(said)}. Reversal can only change the part the source explains.",
        "",
    ]


def reversal(
    study, ppl: dict, bleu: dict, other: dict, curves: dict, translates: bool
) -> tuple[list[str], list[Claim]]:
    main = config_of(study.main_run(study.seeds[0]))
    plain = main.replace("reversed", "plain")
    paper_ppl, paper_bleu = PAPER["reversal_ppl"].split(" → "), PAPER["reversal_bleu"].split(" → ")
    last = {config: max(curves.get(config, {0: [0.0]})) for config in (plain, main)}
    rows = [
        f"| {order} | {spread(ppl[config])} | {spread(curves[config][last[config]]) if config in curves else '—'} | "
        f"{spread(bleu[config])} | ppl {paper_ppl[i]}, BLEU {paper_bleu[i]} |"
        for i, (order, config) in enumerate((("plain", plain), ("reversed", main)))
    ]
    bleu_verdict = verdict(bleu[plain], bleu[main], lower_is_better=False) if translates else UNRESOLVED
    claims = [
        Claim("Reversing the source lowers test perplexity", PAPER["reversal_ppl"],
              arrow(ppl[plain], ppl[main]), verdict(ppl[plain], ppl[main])),
        Claim("Reversing the source raises test BLEU", PAPER["reversal_bleu"],
              arrow(bleu[plain], bleu[main]) + ("" if translates else " (every BLEU < 1)"), bleu_verdict),
    ]  # fmt: skip
    story = curve_story(curves[plain], curves[main], ("plain", "reversed")) if plain in curves else ""
    source = source_use(ppl, other, (plain, main))
    return [
        "### Reversing the source",
        "",
        f"| source order | test perplexity | dev perplexity at step {last[main]:,} | test BLEU | paper |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Measured: {change('test perplexity', ppl[plain], ppl[main])}; "
        f"{change('test BLEU', bleu[plain], bleu[main])}.",
        f"Verdicts: perplexity **{claims[0].verdict}**, BLEU **{claims[1].verdict}**. {story}",
        "",
        *source,
    ], claims


def depth(study, ppl: dict, curves: dict) -> tuple[list[str], list[Claim]]:
    """The depths (reversed), every run the same number of steps: test perplexity, each added layer's
    verdict and what the dev curves say about it."""
    depths = study.plan.depths
    lines = ["### Depth", "", "| layers | test perplexity | change per layer added | paper |", "|---|---|---|---|"]
    claims, stories = [], []
    for k, layers in enumerate(depths):
        config, per_layer = f"reversed-{layers}l", ""
        if k:
            fewer = depths[k - 1]
            before, after = ppl[f"reversed-{fewer}l"], ppl[config]
            per_layer = f"{(statistics.mean(after) / statistics.mean(before)) ** (1 / (layers - fewer)) - 1:+.1%}"
            claims.append(Claim(f"{layers} layers rather than {fewer} lower test perplexity", PAPER["depth"],
                                arrow(before, after), verdict(before, after)))  # fmt: skip
            if f"reversed-{fewer}l" in curves and config in curves:
                names = (f"{fewer} layer{'s' * (fewer > 1)}", f"{layers} layers")
                stories.append(curve_story(curves[f"reversed-{fewer}l"], curves[config], names))
        lines.append(f"| {layers} | {spread(ppl[config])} | {per_layer} | {PAPER['depth'] if k == 1 else ''} |")
    said = "; ".join(f"{c.claim}: **{c.verdict}**" for c in claims)
    return [
        *lines,
        "",
        "Every run took the same number of steps; a deeper model starts slower, and the paper compared them at",
        f"convergence (4 layers of 1000 cells, 12M sentence pairs). Verdicts: {said}.",
        *stories,
        "",
    ], claims


def arrow(before: list[float], after: list[float]) -> str:
    a, b = statistics.mean(before), statistics.mean(after)
    return f"{a:.2f} → {b:.2f} ({b / a - 1:+.1%})" if a else f"{a:.2f} → {b:.2f}"


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
            "are not evidence of the paper's effects.**",
            "",
        ]
    return [
        f"**At {run_budget(study)} per run no model has learned to translate yet (every BLEU is below 1):",
        "the BLEU, beam and ensemble figures below are noise, not the paper's effects, and their claims are",
        "not resolved here; test perplexity carries the evidence.**",
        "",
    ]


def plot_curves(study, runs: dict, path: Path) -> None:
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
    depth_runs = [name for name in logs if config_of(name).startswith("reversed-")]
    panels = [
        ("dev perplexity: source order", lines(order, "dev_ppl"), True),
        ("dev perplexity: depth (reversed)", lines(depth_runs, "dev_ppl"), True),
        ("training loss (nats/word): source order", lines(order, "loss"), False),
        ("training loss (nats/word): depth (reversed)", lines(depth_runs, "loss"), False),
    ]
    plot_panels(panels, path, "s2s runs of the study (colour: configuration; line style: seed)")
