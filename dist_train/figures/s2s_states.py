"""Sutskever et al. (2014), Figure 2: a 2-D PCA projection of the LSTM hidden states obtained after
reading each phrase: phrases of similar meaning land close together, and the representation is
sensitive to word order (who admires whom) but not to the active/passive voice.

The state is the encoder's top layer's final hidden state h (not the memory cell c): what the
paper projected, and what the decoder's top layer starts from. The phrases are tokenized by the
checkpoint's own source tokenizer and vocabulary, as ``translate`` does, and the model's encoder
reverses them itself when it was trained with ``reverse_source``. Each phrase set gets its own
projection (numpy's SVD of the centred states), as each of the paper's panels does.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a cluster node
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn.utils.rnn import pad_sequence  # noqa: E402

from data_shards.vocab import PAD_ID, UNK_ID  # noqa: E402
from dist_train.translation import Translator  # noqa: E402

# The paper's two panels (English: the model reads English).
PHRASE_SETS = (
    ("John admires Mary", "Mary admires John", "Mary is in love with John", "John is in love with Mary"),
    (
        "I gave her a card in the garden",
        "In the garden , I gave her a card",
        "She was given a card by me in the garden",
        "She gave me a card in the garden",
        "In the garden , she gave me a card",
        "I was given a card by her in the garden",
    ),
)
STATE = "the encoder's top layer's final hidden state h (the decoder's top layer starts from it)"


@torch.no_grad()
def final_hidden_states(translator: Translator, phrases: list[str]) -> np.ndarray:
    """(phrases, hidden) float64: the top encoder layer's h after each phrase, from the translator's
    first model."""
    rows = [translator.src.encode(phrase) for phrase in phrases]
    if not all(rows):
        raise ValueError(f"an empty phrase has no final state: {phrases}")
    tokens = pad_sequence([torch.tensor(row) for row in rows], batch_first=True, padding_value=PAD_ID)
    lengths = torch.tensor([len(row) for row in rows])  # on the host, as the encoder wants them
    state, _ = translator.models[0].encode(tokens.to(translator.device), lengths)
    top_h = state[-1][0][0]  # (batch, hidden): the top layer's (h, c), h, its one direction
    return top_h.double().cpu().numpy()


def pca_2d(points: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """``points`` (n, dim) projected on their first two principal components (n, 2), and the fraction
    of the variance each explains. Fewer than two components (one point, or all alike) pad with 0."""
    centred = points - points.mean(axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    projected = np.zeros((len(points), 2))
    kept = min(2, len(singular))
    projected[:, :kept] = centred @ components[:kept].T
    variance = singular**2
    total = variance.sum()
    explained = [float(v / total) if total > 0 else 0.0 for v in variance[:2]]
    return projected, explained + [0.0] * (2 - len(explained))


def state_projections(translator: Translator, phrase_sets=PHRASE_SETS) -> dict:
    """For each phrase set, every phrase's 2-D point, the source tokens the model read (``<unk>`` where
    the vocabulary lacks a word: such phrases can share a state) and the variance explained."""
    sets = []
    for phrases in phrase_sets:
        points, explained = pca_2d(final_hidden_states(translator, list(phrases)))
        sets.append(
            {
                "phrases": list(phrases),
                "points": points.round(6).tolist(),
                "tokens": [_as_read(translator, phrase) for phrase in phrases],
                "explained_variance": [round(v, 6) for v in explained],
            }
        )
    return {"figure": "Sutskever et al. 2014, Figure 2", "state": STATE, "sets": sets}


def _as_read(translator: Translator, phrase: str) -> list[str]:
    tokens = translator.src.tokenize(phrase)
    return [t if i != UNK_ID else "<unk>" for t, i in zip(tokens, translator.src.vocab.encode(tokens))]


def plot_state_projections(data: dict, path: Path) -> Path:
    """One panel per phrase set, each point labelled with its phrase."""
    sets = data["sets"]
    fig, axes = plt.subplots(1, len(sets), figsize=(7 * len(sets), 5.5), squeeze=False)
    for ax, one in zip(axes.flat, sets):
        points = np.array(one["points"])
        ax.scatter(points[:, 0], points[:, 1], color="tab:blue")
        for (x, y), phrase in zip(points, one["phrases"]):
            ax.annotate(phrase, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=9)
        ax.margins(0.35, 0.2)
        first, second = one["explained_variance"]
        ax.set_xlabel(f"PC 1 ({first:.0%} of the variance)")
        ax.set_ylabel(f"PC 2 ({second:.0%})")
        ax.grid(alpha=0.3)
    fig.suptitle("2-D PCA of the encoder's final top-layer hidden state (Sutskever et al. Figure 2)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
