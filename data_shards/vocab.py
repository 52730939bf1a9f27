"""Vocabularies: the paper's most-frequent-words list with ``<unk>``, or a sentencepiece model's.

Every vocabulary starts with the same four special tokens, so ids mean the same in both kinds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIALS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)


class Vocab:
    """Token ↔ id. Unknown tokens map to ``UNK_ID``."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self.tokens = list(tokens)
        if tuple(self.tokens[:4]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}")
        self.ids = {token: i for i, token in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def most_frequent(cls, counts: Counter, size: int) -> Vocab:
        """The ``size - 4`` most frequent tokens after the specials; ties broken by the token."""
        ranked = sorted((t for t in counts if t not in SPECIALS), key=lambda t: (-counts[t], t))
        return cls([*SPECIALS, *ranked[: max(size - len(SPECIALS), 0)]])

    def encode(self, tokens: Iterable[str]) -> list[int]:
        ids = self.ids
        return [ids.get(t, UNK_ID) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[i] for i in ids]

    def save(self, path: Path) -> None:
        path.write_text("".join(f"{t}\n" for t in self.tokens), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Vocab:
        return cls.from_text(path.read_text(encoding="utf-8"))

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        """A vocabulary as ``save`` writes it: one token per line."""
        return cls(text.split("\n")[:-1])


def clamp_vocab(tokens: torch.Tensor, size: int) -> torch.Tensor:
    """Ids past the first ``size`` entries become <unk>: vocabularies are sorted by frequency, so
    this keeps the ``size`` most frequent."""
    return tokens.masked_fill(tokens >= size, UNK_ID)
