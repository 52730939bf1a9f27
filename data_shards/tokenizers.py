"""Tokenizers that run inside shard-text's worker processes.

``word``: the Moses tokenizer (sacremoses), as in the paper's pipeline; no escaping, case kept.
``sentencepiece``: a unigram model trained in-process on the corpus (bounded sample).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

from data_shards.vocab import BOS, BOS_ID, EOS, EOS_ID, PAD, PAD_ID, UNK, UNK_ID, Vocab

# sentencepiece samples this many sentences for training; memory stays bounded on any corpus.
SPM_TRAINING_SENTENCES = 2_000_000
# A fixed thread count keeps the trained model byte-identical whatever --workers is.
SPM_TRAINING_THREADS = 4


class WordTokenizer:
    def __init__(self, lang: str) -> None:
        from sacremoses import MosesTokenizer

        self.lang = lang
        self._moses = MosesTokenizer(lang=lang)

    def __call__(self, text: str) -> list[str]:
        return self._moses.tokenize(text, escape=False)


class PieceTokenizer:
    def __init__(self, model_path: Path) -> None:
        import sentencepiece as spm

        self._spm = spm.SentencePieceProcessor(model_file=str(model_path))

    def __call__(self, text: str) -> list[str]:
        return self._spm.encode(text, out_type=str)


def train_sentencepiece(sentences: Iterator[str], vocab_size: int, model_path: Path, seed: int = 0) -> Vocab:
    """Train a unigram model whose ids 0..3 are our specials; returns its vocabulary."""
    import sentencepiece as spm

    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=sentences,
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        hard_vocab_limit=False,
        input_sentence_size=SPM_TRAINING_SENTENCES,
        shuffle_input_sentence=True,
        num_threads=SPM_TRAINING_THREADS,
        minloglevel=2,
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        pad_piece=PAD,
        unk_piece=UNK,
        bos_piece=BOS,
        eos_piece=EOS,
    )
    model_path.write_bytes(model.getvalue())
    processor = spm.SentencePieceProcessor(model_file=str(model_path))
    return Vocab(processor.id_to_piece(i) for i in range(processor.get_piece_size()))


def moses_version() -> str:
    from importlib.metadata import version

    return version("sacremoses")


def sentencepiece_version() -> str:
    from importlib.metadata import version

    return version("sentencepiece")
