"""shard-text's second pass: normalize, tokenize (in worker processes, order kept) and filter the
pairs, count their words, and spill the kept ones to a temporary file (``tokenize_all``)."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from tqdm import tqdm

from data_shards.textio import ParallelInput, normalize
from data_shards.tokenizers import PieceTokenizer, WordTokenizer

CHUNK_PAIRS = 2000


@dataclass(kw_only=True)
class FilterCounts:
    input_pairs: int = 0
    empty: int = 0
    too_long: int = 0
    bad_ratio: int = 0
    kept: int = 0

    def add(self, other: dict) -> None:
        for name, value in other.items():
            setattr(self, name, getattr(self, name) + value)


@dataclass(frozen=True, kw_only=True)
class Side:
    lang: str
    kind: str
    model: Path | None = None

    def tokenizer(self):
        return PieceTokenizer(self.model) if self.kind == "sentencepiece" else WordTokenizer(self.lang)


_worker_state: dict = {}


def _init_worker(src: Side, tgt: Side, max_len: int, max_len_ratio: float) -> None:
    _worker_state.update(src=src.tokenizer(), tgt=tgt.tokenizer(), max_len=max_len, ratio=max_len_ratio)


def _tokenize_chunk(pairs: list[tuple[str, str]]) -> tuple[list[str], dict, Counter, Counter]:
    """Normalize, tokenize and filter a chunk; returns spill lines, filter counts, word counts."""
    tok_src, tok_tgt = _worker_state["src"], _worker_state["tgt"]
    max_len, ratio = _worker_state["max_len"], _worker_state["ratio"]
    lines, counts, src_words, tgt_words = [], Counter(), Counter(), Counter()
    for raw_src, raw_tgt in pairs:
        src, tgt = normalize(raw_src), normalize(raw_tgt)
        if not src or not tgt:
            counts["empty"] += 1
            continue
        src_tokens, tgt_tokens = tok_src(src), tok_tgt(tgt)
        n_src, n_tgt = len(src_tokens), len(tgt_tokens)
        if not n_src or not n_tgt:
            counts["empty"] += 1
        elif max(n_src, n_tgt) > max_len:
            counts["too_long"] += 1
        elif max(n_src, n_tgt) > ratio * min(n_src, n_tgt):
            counts["bad_ratio"] += 1
        else:
            counts["kept"] += 1
            src_words.update(src_tokens)
            tgt_words.update(tgt_tokens)
            lines.append(f"{' '.join(src_tokens)}\t{' '.join(tgt_tokens)}\t{src}\t{tgt}\n")
    return lines, counts, src_words, tgt_words


def _chunks(inputs: list[ParallelInput]) -> Iterator[list[tuple[str, str]]]:
    for pairs in (inp.pairs() for inp in inputs):
        while chunk := list(islice(pairs, CHUNK_PAIRS)):
            yield chunk


def tokenize_all(
    inputs: list[ParallelInput],
    src: Side,
    tgt: Side,
    spill: Path,
    *,
    total: int,
    limits: tuple[int, float],
    workers: int,
    progress: bool,
) -> tuple[FilterCounts, Counter, Counter]:
    """Every pair of ``inputs`` normalized, tokenized (in ``workers`` processes, order kept) and filtered by
    ``limits`` (the longest side's tokens, the longer/shorter ratio); the kept ones spilled to ``spill``."""
    counts, src_words, tgt_words = FilterCounts(input_pairs=total), Counter(), Counter()
    init_args = (src, tgt, *limits)
    bar = tqdm(total=total, desc="tokenize", unit="pair", unit_scale=True, disable=not progress)
    with open(spill, "w", encoding="utf-8") as out:
        if workers == 1:
            _init_worker(*init_args)
            results = map(_tokenize_chunk, _chunks(inputs))
            pool = None
        else:
            pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, init_args)
            results = pool.imap(_tokenize_chunk, _chunks(inputs), chunksize=1)
        try:
            for lines, chunk_counts, chunk_src, chunk_tgt in results:
                out.writelines(lines)
                counts.add(chunk_counts)
                src_words.update(chunk_src)
                tgt_words.update(chunk_tgt)
                bar.update(sum(chunk_counts.values()))
        finally:
            if pool is not None:
                pool.terminate()
            bar.close()
    return counts, src_words, tgt_words
