"""The GAN part of docs/REPRODUCTION.md: the last checkpoint's evaluation, the Parzen estimate of the
checkpoints along the run against training time (and where the paper's 225 would be reached, if the
curve went on as it went), the samples and their nearest training images."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from matplotlib.ticker import ScalarFormatter

from dist_train.reporting import plt, read_jsonl
from launcher.commands.reproduction_claims import NOT_REPRODUCED, REPRODUCED, UNRESOLVED, Claim

PAPER_PARZEN, PAPER_SE = 225.0, 2.0
CLAIM = "The GAN's Parzen estimate on MNIST (test)"


def training_seconds(records: list[dict]) -> dict[int, float]:
    """Logged step → wall seconds of training up to it, summed over the run's attempts (a resumed run
    has several, each beginning with an ``attempt_began`` record)."""
    at, carried, began, last = {}, 0.0, None, 0.0
    for record in records:
        if record.get("attempt_began"):
            carried, began, last = carried + last, record["time"], 0.0
        elif began is not None and "step" in record:
            last = record["time"] - began
            at[record["step"]] = carried + last
    return at


def curve(gan: dict) -> list[tuple[int, float, dict]]:
    """(step, training seconds, evaluation) for each evaluated checkpoint, in order."""
    seconds = training_seconds(read_jsonl(Path(gan["run_dir"]) / "train.jsonl"))
    points = []
    for step, found in sorted(gan["curve"].items(), key=lambda kv: int(kv[0])):
        logged = [s for s in seconds if s <= int(step)]
        points.append((int(step), seconds[max(logged)] if logged else 0.0, found))
    return points


def log_time_fit(points: list[tuple[int, float, dict]]) -> tuple[float, float] | None:
    """Parzen = a + b·log2(seconds), least squares over the later half of the curve: (a, b per doubling)."""
    later = [(math.log2(t), e["parzen_ll"]) for _, t, e in points[len(points) // 2 :] if t > 0]
    if len(later) < 2:
        return None
    mx, my = sum(x for x, _ in later) / len(later), sum(y for _, y in later) / len(later)
    sxx = sum((x - mx) ** 2 for x, _ in later)
    if not sxx:
        return None
    b = sum((x - mx) * (y - my) for x, y in later) / sxx
    return my - b * mx, b


def parzen_claim(points: list[tuple[int, float, dict]]) -> tuple[Claim, str]:
    """The Parzen claim's verdict, and what the curve says: where 225 would be reached."""
    last = points[-1][2]
    fit = log_time_fit(points)
    measured = f"{last['parzen_ll']:.1f} ± {last['parzen_se']:.1f}"
    if last["parzen_ll"] + 2 * last["parzen_se"] >= PAPER_PARZEN - 2 * PAPER_SE:
        return Claim(CLAIM, "225 ± 2", measured, REPRODUCED), ""
    if fit is None:
        return Claim(CLAIM, "225 ± 2", measured, UNRESOLVED), "Too few points along the run to say where it goes."
    if fit[1] <= 2 * last["parzen_se"]:
        story = f"Over the later half of the run the estimate rose {fit[1]:.1f} per doubling of training time:"
        return Claim(CLAIM, "225 ± 2", measured, NOT_REPRODUCED), f"{story} it has flattened below the paper's."
    hours = 2 ** ((PAPER_PARZEN - fit[0]) / fit[1]) / 3600
    story = (
        f"Over the later half of the run the estimate rose {fit[1]:.1f} per doubling of training time; a line"
        f" in log time through those points reaches 225 after about {hours:,.1f} hours of this machine's training"
        " (an extrapolation, not a measurement: GAN training need not go on as it went)."
    )
    return Claim(CLAIM, "225 ± 2", measured, UNRESOLVED), story


def plot(points: list[tuple[int, float, dict]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    minutes = [t / 60 for _, t, _ in points]
    ax.errorbar(minutes, [e["parzen_ll"] for *_, e in points], yerr=[e["parzen_se"] for *_, e in points], marker="o")
    ax.axhline(PAPER_PARZEN, linestyle="--", color="grey", label="the paper: 225 ± 2")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())  # 5, 10, 20 minutes: not 5×10^0
    ax.xaxis.set_minor_formatter(ScalarFormatter())
    ax.set_xlabel("training minutes (log scale)")
    ax.set_ylabel("Parzen log-likelihood (test)")
    ax.set_title("GAN: Parzen estimate against training time")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def gan_section(gan: dict, figures: Path) -> tuple[list[str], list[Claim]]:
    found, trained = gan["evaluation"], gan["training"]
    for key, name in (("grid", "gan-samples.png"), ("nearest_grid", "gan-nearest.png")):
        shutil.copyfile(found[key], figures / name)
    points = curve(gan)
    claim, story = parzen_claim(points)
    plot(points, figures / "gan-parzen.png")
    per_epoch = trained["epochs"] / trained["steps"]
    rows = [
        f"| {step * per_epoch:.1f} | {t / 60:.1f} | {e['parzen_ll']:.1f} ± {e['parzen_se']:.1f} | {e['fcd']:.1f} | "
        f"{e['class_coverage']:.2f} |"
        for step, t, e in points
    ]
    return [
        "## Generative adversarial nets (Goodfellow et al., 2014)",
        "",
        f"`paper-mnist` (the released MLPs, Gaussian noise), {trained['steps']:,} steps",
        f"({trained['epochs']:.1f} epochs) in {trained['train_seconds'] / 60:.0f} minutes; each checkpoint evaluated",
        f"on {found['num_samples']:,} samples.",
        "",
        "| Parzen log-likelihood (test) | σ (from validation) | FCD | class coverage | paper |",
        "|---|---|---|---|---|",
        f"| {found['parzen_ll']:.1f} ± {found['parzen_se']:.1f} | {found['parzen_sigma']:.3f} | {found['fcd']:.1f} | "
        f"{found['class_coverage']:.2f} | 225 ± 2 |",
        "",
        f"Verdict: **{claim.verdict}**. FCD: Fréchet distance on the features of the project's MNIST classifier "
        f"(test accuracy {gan['classifier']['test_accuracy']:.4f}); lower is better, 0 for the test set itself.",
        "",
        "### Parzen estimate against training time",
        "",
        "| epochs | training minutes | Parzen | FCD | class coverage |",
        "|---|---|---|---|---|",
        *rows,
        "",
        story,
        "",
        "![Parzen against training time](reproduction/gan-parzen.png)",
        "",
        "Samples, and rows of 5 samples with (right, outlined in yellow) the training image nearest the sample",
        "beside it, as in the paper's Figure 2: a model that copied its training set would show twins there.",
        "",
        "![samples](reproduction/gan-samples.png) ![nearest](reproduction/gan-nearest.png)",
        "",
    ], [claim]
