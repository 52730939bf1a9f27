"""The decoding part of docs/REPRODUCTION.md's s2s section: beam sizes on each of the first two seeds'
main models, and those two models as an ensemble; each claim with its verdict."""

from __future__ import annotations

from launcher.commands.reproduction_claims import NOT_REPRODUCED, REPRODUCED, UNRESOLVED, Claim, verdict
from launcher.commands.reproduction_s2s import PAPER, change

MEMBERS = "the ensemble and its members' range"


def beam_verdicts(found: dict[int, list[dict]], translates: bool) -> tuple[str, str]:
    """Per seed (paired, each model against itself): beam 2 over greedy; beam 2 giving at least half
    of beam 12's gain over greedy. Every seed one way: reproduced (or not); else not resolved."""
    if not translates:
        return UNRESOLVED, UNRESOLVED
    b1, b2, b12 = ([e["bleu"] for e in found[beam]] for beam in (1, 2, 12))
    beam2 = [after - before for before, after in zip(b1, b2)]
    most = [(y - x) >= (z - x) / 2 if z > x else None for x, y, z in zip(b1, b2, b12)]

    return paired([g > 0 if g else None for g in beam2]), paired(most)


def paired(holds: list[bool | None]) -> str:
    """The verdict from each model's own comparison (None: that model says nothing either way)."""
    if all(h is True for h in holds):
        return REPRODUCED
    if all(h is False for h in holds):
        return NOT_REPRODUCED
    return UNRESOLVED


def beam_and_ensemble(study, evaluations: dict, translates: bool) -> tuple[list[str], list[Claim]]:
    """Beams 1, 2 and 12 on each of the first two seeds' main reversed models; those two together."""
    models = [study.main_run(seed) for seed in study.seeds[:2]]
    found = {beam: [evaluations[f"{model}-beam{beam}"] for model in models] for beam in (1, 2, 12)}
    lines = ["### Beam size", "", "| beam | " + " | ".join(f"test BLEU, {m}" for m in models) + " | decoding seconds |",
             "|---|" + "---|" * len(models) + "---|"]  # fmt: skip
    for beam, row in found.items():
        seconds = sum(e["translate_seconds"] for e in row) / len(row)
        lines.append(f"| {beam} | " + " | ".join(f"{e['bleu']:.2f}" for e in row) + f" | {seconds:.0f} |")
    beam2, most = beam_verdicts(found, translates)
    slower = sum(e["translate_seconds"] for e in found[12]) / sum(e["translate_seconds"] for e in found[2])
    gains = ", ".join(f"{b2['bleu'] - b1['bleu']:+.2f}" for b1, b2 in zip(found[1], found[2]))
    claims = [
        Claim("Beam 2 scores higher BLEU than greedy", "most of beam 12's gain", f"{gains} (per model)", beam2),
        Claim("Beam 2 gives most of beam 12's gain", PAPER["beam"], f"beam 12 decodes {slower:.1f}× as long", most),
    ]
    ensemble = evaluations["ensemble"]
    members = [evaluations[model] for model in models]
    lines += [
        "",
        f"Each model against itself (paired): beam 2 over greedy **{beam2}**; beam 2 with at least half of beam",
        f"12's gain over greedy **{most}**. Beam 12 decodes {slower:.1f}× as long as beam 2.",
        "",
        "### Ensemble",
        "",
        "| models | test BLEU | test perplexity |",
        "|---|---|---|",
        *[f"| {label} | {e['bleu']:.2f} | {e['perplexity']:.2f} |" for label, e in (*zip(models, members),
                                                                              ("both (ensemble)", ensemble))],
    ]  # fmt: skip
    ppl_before, ppl_after = [m["perplexity"] for m in members], [ensemble["perplexity"]]
    bleu_before, bleu_after = [m["bleu"] for m in members], [ensemble["bleu"]]
    claims += [
        Claim("An ensemble of 2 raises BLEU over each member", PAPER["ensemble"],
              f"{sum(bleu_before) / 2:.2f} → {ensemble['bleu']:.2f}",
              verdict(bleu_before, bleu_after, lower_is_better=False) if translates else UNRESOLVED),
        Claim("An ensemble of 2 lowers test perplexity below each member's", "not reported",
              f"{sum(ppl_before) / 2:.2f} → {ensemble['perplexity']:.2f}", verdict(ppl_before, ppl_after)),
    ]  # fmt: skip
    measured = change("perplexity (the members' mean → the ensemble)", ppl_before, ppl_after, ranges=MEMBERS)
    measured += "; " + change("BLEU", bleu_before, bleu_after, ranges=MEMBERS)
    beam = study.plan.eval_beam
    return [*lines, "", f"Measured: {measured}. Beam {beam}. Paper (BLEU): {PAPER['ensemble']}.", ""], claims
