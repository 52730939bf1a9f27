"""Sutskever et al. (2014), Figure 3: BLEU on the test set (the paper's: newstest2014) by sentence
length (left) and by how rare the sentence's words are (right).

The hypotheses come from one decoding of the test sentences (``translate``'s beam search); they are
scored twice, grouped two ways, with the project's BLEU (``dist_train.evaluation.bleu``: sacreBLEU
on detokenized text and BLEU on Moses tokens, the paper's kind), each group as its own corpus.

- **Length**: the source's length in tokens as the checkpoint's tokenizer splits it (Moses tokens,
  punctuation included, as the paper's tokenized corpus counted words; pieces for a sentencepiece
  model), in the paper's bins, read off its x axis: ≤7, 8-12, 13-17, 18-22, 23-28, 29-35, 36+.
- **Word rank**: each source token's rank in the training vocabulary (1 = the most frequent word;
  a word outside the vocabulary ranks one past its rarest word; a sentencepiece model's pieces rank
  by id, its own score order), averaged over the sentence. As in the paper, whose x axis is the
  test sentences sorted by that average, the sorted sentences are cut into groups of equal size:
  six by default, about 500 sentences each on the full 3,003 (the paper's tick spacing).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a cluster node
import matplotlib.pyplot as plt  # noqa: E402

from data_shards.vocab import SPECIALS, UNK_ID  # noqa: E402
from dist_train.evaluation import bleu  # noqa: E402
from dist_train.translation import TextCodec  # noqa: E402

LENGTH_BINS = ((0, 7), (8, 12), (13, 17), (18, 22), (23, 28), (29, 35), (36, None))  # tokens, both ends included
NUM_RANK_BINS = 6

Groups = list[tuple[str, list[int]]]  # (bin label, indices of its sentences)


def word_ranks(ids: list[int], vocab_size: int) -> list[int]:
    """Each token id's frequency rank (1: the most frequent word); ``<unk>`` ranks past the rarest."""
    unknown = vocab_size - len(SPECIALS) + 1
    return [unknown if i == UNK_ID else i - len(SPECIALS) + 1 for i in ids]


def average_rank(ids: list[int], vocab_size: int) -> float:
    ranks = word_ranks(ids, vocab_size)
    return sum(ranks) / len(ranks) if ranks else 0.0


def length_groups(lengths: list[int], bins=LENGTH_BINS) -> Groups:
    """The paper's length bins, each with the sentences whose length falls in it (maybe none)."""
    groups = []
    for low, high in bins:
        label = f"≤{high}" if low == 0 else f"{low}+" if high is None else f"{low}-{high}"
        groups.append((label, [i for i, n in enumerate(lengths) if low <= n and (high is None or n <= high)]))
    return groups


def quantile_groups(values: list[float], num_bins: int = NUM_RANK_BINS) -> Groups:
    """The sentences sorted by ``values``, cut into ``num_bins`` groups of (nearly) equal size (fewer
    when there are fewer sentences), each labelled by its range of values."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    cuts = [k * len(order) // num_bins for k in range(num_bins + 1)]
    groups = []
    for start, end in zip(cuts, cuts[1:]):
        members = order[start:end]
        if members:
            groups.append((f"{values[members[0]]:.0f}-{values[members[-1]]:.0f}", members))
    return groups


def scored(groups: Groups, hypotheses: list[str], references: list[str], tgt_lang: str) -> list[dict]:
    """Each group's BLEU as one corpus, and its size; an empty group's BLEU is None."""
    rows = []
    for label, members in groups:
        scores = bleu([hypotheses[i] for i in members], [references[i] for i in members], tgt_lang) if members else {}
        rows.append(
            {
                "bin": label,
                "num_sentences": len(members),
                "bleu": scores.get("bleu"),
                "bleu_tokenized": scores.get("bleu_tokenized"),
            }
        )
    return rows


def bleu_by(
    sources: list[str],
    references: list[str],
    hypotheses: list[str],
    src: TextCodec,
    tgt_lang: str,
    *,
    num_rank_bins: int = NUM_RANK_BINS,
) -> dict:
    """BLEU of ``hypotheses`` (one per source) by source length and by average word rank, and overall."""
    if not len(sources) == len(references) == len(hypotheses) > 0:
        raise ValueError(f"{len(sources)} sources, {len(references)} references, {len(hypotheses)} hypotheses")
    source_ids = [src.encode(line) for line in sources]
    lengths = [len(ids) for ids in source_ids]
    ranks = [average_rank(ids, len(src.vocab)) for ids in source_ids]
    return {
        "figure": "Sutskever et al. 2014, Figure 3",
        "num_sentences": len(sources),
        **{k: v for k, v in bleu(hypotheses, references, tgt_lang).items() if k != "bleu_signature"},
        "by_length": scored(length_groups(lengths), hypotheses, references, tgt_lang),
        "by_rank": scored(quantile_groups(ranks, num_rank_bins), hypotheses, references, tgt_lang),
        "length": "source tokens as the checkpoint's tokenizer splits them",
        "rank": f"source tokens' mean frequency rank in the {len(src.vocab) - len(SPECIALS)}-word vocabulary, "
        "<unk> one past the rarest; sentences sorted by it and cut into equal groups",
    }


def plot_bleu_by(data: dict, path: Path) -> Path:
    """Two line charts, BLEU against the length bins and the rank groups, each point with its count."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    panels = (
        (axes[0], data["by_length"], "sentence length (source tokens)"),
        (axes[1], data["by_rank"], "average word frequency rank (sentences sorted, equal groups)"),
    )
    for ax, rows, xlabel in panels:
        positions = range(len(rows))
        for name, label in (("bleu", "sacreBLEU (detokenized)"), ("bleu_tokenized", "BLEU (Moses tokens)")):
            ax.plot(
                positions, [r[name] if r[name] is not None else float("nan") for r in rows], marker="o", label=label
            )
        highest = max((r[name] or 0.0 for r in rows for name in ("bleu", "bleu_tokenized")), default=0.0)
        for x, row in zip(positions, rows):
            ax.annotate(f"n={row['num_sentences']}", (x, 0), textcoords="offset points", xytext=(0, 4), ha="center")
        ax.set_xticks(list(positions), [r["bin"] for r in rows])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("BLEU")
        ax.set_ylim(0, max(highest, 1.0) * 1.15)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(
        f"BLEU by sentence length and word rank, {data['num_sentences']} test sentences (Sutskever et al. Figure 3)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
