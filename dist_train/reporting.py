"""A run's report: PNG plots of its JSONL log and a short markdown summary beside them.

Reads ``<run dir>/train.jsonl`` (the training intervals, dev evaluations and sample grids the
trainer logged) and ``<run dir>/evaluations.jsonl`` (what ``evaluate`` and ``evaluate-gan`` appended:
BLEU; Parzen, FCD, class coverage), and writes ``<run dir>/report/``: ``training.png`` (s2s: loss
and dev perplexity, words/s, learning rate, BLEU; gan: D and G losses, D(x) and D(G(z)), images/s,
learning rate) and ``report.md``. The papers' figures that ``figures`` drew into
``<run dir>/report/figures/`` are linked from ``report.md``; ``report`` itself never decodes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a cluster node
import matplotlib.pyplot as plt  # noqa: E402

from data_shards.errors import UserError  # noqa: E402
from dist_train.figures import CAPTIONS  # noqa: E402

S2S_EVALUATION = ["step", "bleu", "bleu_tokenized", "bleu_copy_baseline", "perplexity", "beam", "num_sentences"]
GAN_EVALUATION = ["step", "parzen_ll", "parzen_se", "parzen_sigma", "fcd", "class_coverage"]


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise UserError(path, f"line {number} is not JSON") from None
    return records


def series(records: list[dict], name: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[name]) for r in records if isinstance(r.get(name), (int, float))]
    return [s for s, _ in points], [v for _, v in points]


def plot_panels(panels: list[tuple[str, list[tuple], bool]], path: Path, title: str) -> None:
    """One figure, a panel per (title, [(label, records, figure name[, matplotlib style])], log scale)."""
    rows = (len(panels) + 1) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(11, 3.6 * rows), squeeze=False)
    for ax, (panel_title, lines, log_scale) in zip(axes.flat, panels):
        for label, records, name, *style in lines:
            steps, values = series(records, name)
            if steps:
                ax.plot(steps, values, marker="o" if len(steps) < 20 else None, label=label, **(style or [{}])[0])
        ax.set_title(panel_title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if log_scale and any(ax.get_lines()):
            ax.set_yscale("log")
        if len(lines) > 1 and any(ax.get_lines()):
            ax.legend()
        if not any(ax.get_lines()):
            ax.set_xticks([]), ax.set_yticks([])
            ax.text(0.5, 0.5, "none in the logs yet", ha="center", va="center", transform=ax.transAxes)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(run_dir: Path) -> dict:
    """Plots and markdown for one run directory; what was written."""
    records = read_jsonl(run_dir / "train.jsonl")
    if not records:
        raise UserError(run_dir / "train.jsonl", "no training log here: is this a run directory?")
    evaluations = read_jsonl(run_dir / "evaluations.jsonl")
    out = run_dir / "report"
    out.mkdir(exist_ok=True)
    gan = any("images_per_s" in r for r in records)
    plot = out / "training.png"
    if gan:
        panels = [
            ("losses", [("D", records, "d_loss"), ("G", records, "g_loss")], False),
            ("discriminator outputs", [("D(x)", records, "d_real"), ("D(G(z))", records, "d_fake")], False),
            ("images/s", [("images/s", records, "images_per_s")], False),
            ("learning rate", [("lr", records, "lr")], False),
            ("Parzen log-likelihood (evaluate-gan)", [("parzen_ll", evaluations, "parzen_ll")], False),
            ("FCD (evaluate-gan)", [("fcd", evaluations, "fcd")], False),
        ]
    else:
        panels = [
            ("perplexity", [("train", records, "ppl"), ("dev", records, "dev_ppl")], True),
            ("words/s (source + target)", [("words/s", records, "words_per_s")], False),
            ("learning rate", [("lr", records, "lr")], False),
            (
                "BLEU (evaluate)",
                [("BLEU", evaluations, "bleu"), ("copy baseline", evaluations, "bleu_copy_baseline")],
                False,
            ),
        ]
    plot_panels(panels, plot, f"{run_dir.name}: {'gan' if gan else 's2s'}")
    markdown = out / "report.md"
    markdown.write_text(summary_markdown(run_dir, records, evaluations, gan, out))
    figures = [str(out / "figures" / f"{stem}.png") for stem in CAPTIONS if (out / "figures" / f"{stem}.png").is_file()]
    return {"plot": str(plot), "markdown": str(markdown), "job": "gan" if gan else "s2s", "figures": figures}


def last(records: list[dict], name: str):
    values = [r[name] for r in records if name in r]
    return values[-1] if values else None


def summary_markdown(run_dir: Path, records: list[dict], evaluations: list[dict], gan: bool, out: Path) -> str:
    training = [r for r in records if "lr" in r]
    seconds = training[-1]["time"] - training[0]["time"] if len(training) > 1 else 0.0
    lines = [f"# {run_dir.name}", "", "![training](training.png)", ""]
    rows = [("steps logged", last(training, "step")), ("wall time between first and last log (s)", round(seconds, 1))]
    if gan:
        rows += [(name, last(training, name)) for name in ("d_loss", "g_loss", "d_real", "d_fake", "images_per_s")]
    else:
        dev = [r["dev_ppl"] for r in records if "dev_ppl" in r]
        rows += [
            ("train perplexity (last)", last(training, "ppl")),
            ("dev perplexity (best)", min(dev) if dev else None),
        ]
        speeds = [r["words_per_s"] for r in training if "words_per_s" in r]
        rows += [("words/s (mean of intervals)", round(sum(speeds) / len(speeds), 1) if speeds else None)]
    lines += ["| figure | value |", "|---|---|"] + [f"| {k} | {v if v is not None else '—'} |" for k, v in rows]
    if evaluations:
        keys = (
            ["step", "parzen_ll", "parzen_se", "fcd", "class_coverage"]
            if gan
            else ["step", "bleu", "bleu_tokenized", "bleu_copy_baseline", "perplexity", "beam", "num_sentences"]
        )
        lines += ["", "## Evaluations", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(str(e.get(k, "—")) for k in keys) + " |" for e in evaluations]
    lines += figures_markdown(out / "figures", out)
    grids = sorted((run_dir / "samples").glob("step-*.png")) if gan else []
    if grids:
        lines += [
            "",
            f"## Samples at step {int(grids[-1].stem.split('-')[1])}",
            "",
            f"![samples]({os.path.relpath(grids[-1], out)})",
        ]
    return "\n".join(lines) + "\n"


def figures_markdown(folder: Path, out: Path) -> list[str]:
    """Links to the papers' figures in ``folder`` (what ``figures`` drew), captioned, with their data;
    nothing when there are none."""
    lines = []
    for stem, caption in CAPTIONS.items():
        png, data = folder / f"{stem}.png", folder / f"{stem}.json"
        if png.is_file():
            link = f" ([data]({os.path.relpath(data, out)}))" if data.is_file() else ""
            lines += ["", f"{caption}{link}", "", f"![{stem}]({os.path.relpath(png, out)})"]
    return ["", "## The papers' figures", *lines] if lines else []
