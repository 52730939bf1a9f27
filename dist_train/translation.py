"""Checkpoints → a translator: tokenize, encode, beam-search (one model or an ensemble), detokenize.

With attention, an output ``<unk>`` is replaced by the source token it attended to most (Luong et
al., 2015): names and numbers outside the vocabulary come through instead of ``<unk>``.

Everything decoding needs (config, vocabularies, tokenizer settings, sentencepiece models) is in
the checkpoint, so one file is enough to translate.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import torch
from tqdm import tqdm

from data_shards.batches import TextBatch
from data_shards.textio import normalize
from data_shards.vocab import PAD_ID, UNK_ID, Vocab
from dist_train.decoding import BeamConfig, Hypothesis, beam_search
from dist_train.inference import load_model
from dist_train.trainers.s2s.batch import model_inputs


class TextCodec:
    """One side's text ↔ ids, as the training shards tokenized it."""

    def __init__(self, tokens: list[str], tokenizer: dict, side: str, spm_model: torch.Tensor | None) -> None:
        self.vocab = Vocab(tokens)
        self.kind, self.lang = tokenizer["kind"], tokenizer[f"{side}_lang"]
        if self.kind == "sentencepiece":
            import sentencepiece as spm

            self._spm = spm.SentencePieceProcessor(model_proto=bytes(spm_model.numpy()))
        else:
            from sacremoses import MosesDetokenizer, MosesTokenizer

            self._tokenizer, self._detokenizer = MosesTokenizer(lang=self.lang), MosesDetokenizer(lang=self.lang)

    def tokenize(self, text: str) -> list[str]:
        text = normalize(text)
        if self.kind == "sentencepiece":
            return self._spm.encode(text, out_type=str)
        return self._tokenizer.tokenize(text, escape=False)

    def encode(self, text: str) -> list[int]:
        return self.vocab.encode(self.tokenize(text))

    def decode(self, ids: list[int]) -> str:
        return self.detokenize(self.vocab.decode(ids))

    def detokenize(self, tokens: list[str]) -> str:
        if self.kind == "sentencepiece":
            return self._spm.decode_pieces(tokens)
        return self._detokenizer.detokenize(tokens)


def _padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, longest) PAD_ID-padded tokens and (rows,) lengths, on the host."""
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    tokens = torch.full((len(rows), max(int(lengths.max()), 1)), PAD_ID, dtype=torch.long)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return tokens, lengths


def _by_length(rows: list[list[int]], batch_size: int) -> Iterator[list[int]]:
    """Indices of non-empty rows in batches of similar length (longest first)."""
    order = sorted((i for i, r in enumerate(rows) if r), key=lambda i: -len(rows[i]))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


class Translator:
    """Checkpoints' models on ``device``, decoding and scoring there. Source lengths stay on the host:
    the encoder sorts by them, and a device copy would make every batch wait for the device."""

    def __init__(self, checkpoints: list[Path], *, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        loaded = [load_model(Path(p), "s2s", "translating", self.device) for p in checkpoints]
        vocab = loaded[0].checkpoint.vocab
        for path, other in zip(checkpoints[1:], loaded[1:]):
            if other.checkpoint.vocab.tokens != vocab.tokens:
                raise ValueError(
                    f"{path}: an ensemble needs one vocabulary, and this one differs from {checkpoints[0]}"
                )
        self.models = [one.model for one in loaded]
        spm = vocab.spm_models
        self.src = TextCodec(vocab.tokens["src"], vocab.tokenizer, "src", spm.get("src"))
        self.tgt = TextCodec(vocab.tokens["tgt"], vocab.tokenizer, "tgt", spm.get("tgt"))

    @property
    def vocab_sizes(self) -> tuple[int, int]:
        return len(self.src.vocab), len(self.tgt.vocab)

    def translate(
        self,
        lines: list[str],
        beam: BeamConfig,
        *,
        batch_size: int = 32,
        replace_unk: bool = True,
        progress: bool = False,
    ) -> list[str]:
        """One detokenized translation per input line (an empty line gives an empty line)."""
        source_tokens = [self.src.tokenize(line) for line in lines]
        rows = [self.src.vocab.encode(tokens) for tokens in source_tokens]
        outputs = [""] * len(lines)
        batches = list(_by_length(rows, batch_size))
        for batch in tqdm(batches, desc=f"translate (beam {beam.beam})", unit="batch", disable=not progress):
            tokens, lengths = _padded([rows[i] for i in batch])
            for i, hypothesis in zip(batch, beam_search(self.models, tokens.to(self.device), lengths, beam)):
                outputs[i] = self.tgt.detokenize(self.target_tokens(hypothesis, source_tokens[i], replace_unk))
        return outputs

    def target_tokens(self, hypothesis: Hypothesis, source: list[str], replace_unk: bool) -> list[str]:
        """The hypothesis as target tokens; each ``<unk>`` → its most attended source token, if asked."""
        tokens = self.tgt.vocab.decode(hypothesis.tokens)
        if not replace_unk or hypothesis.attended is None:
            return tokens
        return replace_unknowns(tokens, hypothesis, source)

    @torch.no_grad()
    def perplexity(self, sources: list[str], references: list[str], *, batch_size: int = 64) -> float:
        """exp(mean NLL per reference token incl. </s>); an ensemble's probabilities are averaged."""
        pairs = [(self.src.encode(s), self.tgt.encode(r)) for s, r in zip(sources, references)]
        pairs = [(s, r) for s, r in pairs if s]
        nll, count = torch.zeros((), dtype=torch.float64, device=self.device), 0
        for batch in _by_length([s for s, _ in pairs], batch_size):
            inputs = model_inputs(_text_batch([pairs[i] for i in batch]), self.vocab_sizes, self.device)
            log_probs = torch.stack([-m(*inputs.as_args()) for m in self.models])  # (models, tokens)
            nll -= (torch.logsumexp(log_probs, dim=0) - math.log(len(self.models))).sum()
            count += inputs.num_targets
        return math.exp(nll.item() / max(count, 1))  # the one wait for the device


def _text_batch(pairs: list[tuple[list[int], list[int]]]) -> TextBatch:
    """(source ids, reference ids) pairs as the reader would batch them, on the host."""
    src_tokens, src_lengths = _padded([src for src, _ in pairs])
    tgt_tokens, tgt_lengths = _padded([tgt for _, tgt in pairs])
    ids = torch.arange(len(pairs))
    return TextBatch(src_tokens, src_lengths, tgt_tokens, tgt_lengths, sample_ids=ids, src_text=[], tgt_text=[])


def replace_unknowns(tokens: list[str], hypothesis: Hypothesis, source: list[str]) -> list[str]:
    """Each ``<unk>`` of ``tokens`` (the hypothesis decoded) → the source token it attended to most."""
    return [
        source[position] if token_id == UNK_ID and position < len(source) else token
        for token, token_id, position in zip(tokens, hypothesis.tokens, hypothesis.attended)
    ]
