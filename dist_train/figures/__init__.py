"""The papers' figures that need no training beyond a checkpoint of ours (``figures``):

- ``s2s_states``: Sutskever et al.'s Figure 2, a 2-D PCA of the encoder's final hidden state for
  the paper's phrase sets;
- ``s2s_bleu_by``: their Figure 3, BLEU on a test set (newstest2014 by default) by sentence length
  and by average word frequency rank;
- ``gan_interpolation``: Goodfellow et al.'s Figure 3, samples along straight lines in z space.

Each module computes plain data (written as JSON beside its PNG) and plots it separately. This
file stays light (no torch): ``report`` reads the names below to link the figures it finds.
"""

from __future__ import annotations

import json
from pathlib import Path

# file stem → caption, in the order a report shows them
CAPTIONS = {
    "s2s_states": "Sutskever et al. Figure 2: 2-D PCA of the encoder's final top-layer hidden state per phrase",
    "s2s_bleu_by": "Sutskever et al. Figure 3: BLEU on the test set by sentence length and by average word rank",
    "gan_interpolation": "Goodfellow et al. Figure 3: samples along straight lines between two points in z space",
}


def write_json(data: dict, path: Path) -> Path:
    """``data`` as indented JSON at ``path`` (its folder made if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
