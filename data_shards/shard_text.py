"""shard-text: parallel corpora → tokenized, filtered, id-encoded webdataset shards.

Three streaming passes keep memory bounded on any corpus size (only the vocabulary counts grow):
  1. count each input's records (catches misaligned files before any work);
  2. normalize, tokenize (in ``workers`` processes, order kept), filter, count words, and
     spill the kept pairs to a temporary file;
  3. build the vocabulary, encode ids, write shards and a per-sample length index.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_shards.errors import UserError
from data_shards.manifest import StagedOutput, file_entry, load_manifest, sha256_file, write_manifest
from data_shards.tario import ShardWriter
from data_shards.textio import ParallelInput, language_of, normalize, parallel_inputs
from data_shards.tokenize_pairs import FilterCounts, Side, tokenize_all
from data_shards.tokenizers import (
    moses_version,
    sentencepiece_version,
    train_sentencepiece,
)
from data_shards.vocab import BOS_ID, EOS_ID, PAD_ID, SPECIALS, UNK_ID, Vocab

VOCAB_KINDS = ("word", "sentencepiece")
SPILL = "tokenized.tmp.tsv"
LENGTHS = "lengths.npy"
# One tar member per pair: a member costs 512+ bytes of header and padding, so one JSON member
# keeps the shards ~4x smaller than one member per field, and webdataset's .decode() reads it.
PAIR_FIELD = "pair.json"


@dataclass(frozen=True, kw_only=True)
class ShardTextConfig:
    src: tuple[Path, ...]
    tgt: tuple[Path, ...] = ()
    out: Path
    vocab: str = "word"
    src_vocab_size: int = 160_000  # the paper's §3 vocabulary; a small corpus simply keeps every word
    tgt_vocab_size: int = 80_000
    src_lang: str = ""  # "" = from the file name (train.en → en)
    tgt_lang: str = ""
    max_len: int = 100
    max_len_ratio: float = 3.0
    shard_size: int = 10_000
    workers: int = 2
    overwrite: bool = False
    tsv_columns: tuple[int, int] = (0, 1)
    vocab_from: Path | None = None  # reuse the tokenizer and vocabulary of this shard folder
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.src:
            raise ValueError("give at least one --src file")
        if self.vocab not in VOCAB_KINDS:
            raise ValueError(f"--vocab must be one of {VOCAB_KINDS}, not {self.vocab!r}")
        for name in ("max_len", "shard_size", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')}={getattr(self, name)}: must be at least 1")
        for name in ("src_vocab_size", "tgt_vocab_size"):
            if getattr(self, name) <= len(SPECIALS):
                raise ValueError(
                    f"--{name.replace('_', '-')}={getattr(self, name)}: must be more than the {len(SPECIALS)} "
                    "special tokens, or nothing but them is left"
                )
        if self.max_len_ratio < 1:
            raise ValueError("--max-len-ratio must be at least 1 (it bounds longer/shorter)")


def _side_language(explicit: str, paths: list[Path], side: str) -> str:
    if explicit:
        return explicit
    langs = {language_of(p) for p in paths} - {None}
    if len(langs) == 1:
        return langs.pop()
    return "en" if side == "src" else "fr"  # the paper's direction when names don't tell


def _train_pieces(inputs: list[ParallelInput], side: str, size: int, staging: Path, seed: int) -> tuple[Path, Vocab]:
    sentences = (s for inp in inputs for s in map(normalize, getattr(inp, side).records()) if s)
    model = staging / f"spm.{side}.model"
    vocab = train_sentencepiece(sentences, size, model, seed=seed)
    vocab.save(staging / f"vocab.{side}.txt")
    return model, vocab


def _write_shards(cfg: ShardTextConfig, spill: Path, staging: Path, vocabs: tuple[Vocab, Vocab], num_kept: int):
    writer = ShardWriter(staging, cfg.shard_size)
    lengths = np.lib.format.open_memmap(staging / LENGTHS, mode="w+", dtype=np.int32, shape=(num_kept, 2))
    bar = tqdm(total=num_kept, desc="write shards", unit="pair", unit_scale=True, disable=not cfg.progress)
    with open(spill, encoding="utf-8") as lines, bar:
        for i, line in enumerate(lines):
            bar.update()
            src_tokens, tgt_tokens, src, tgt = line.rstrip("\n").split("\t")
            src_ids, tgt_ids = vocabs[0].encode(src_tokens.split(" ")), vocabs[1].encode(tgt_tokens.split(" "))
            lengths[i] = len(src_ids), len(tgt_ids)
            pair = {"src": src, "tgt": tgt, "src_ids": src_ids, "tgt_ids": tgt_ids}
            writer.write({PAIR_FIELD: json.dumps(pair, ensure_ascii=False, separators=(",", ":")).encode()})
    lengths.flush()
    del lengths
    return writer.close()


def _reuse_sides(folder: Path, staging: Path) -> tuple[Side, Side, tuple[Vocab, Vocab]]:
    """Tokenizers and vocabularies of an existing shard set (for dev and test sets)."""
    manifest = load_manifest(folder)
    if manifest.get("kind") != "text-pairs":
        raise UserError(folder, "--vocab-from needs a folder written by shard-text")
    tokenizer, sides, vocabs = manifest["tokenizer"], [], []
    for side in ("src", "tgt"):
        vocab_file = manifest["vocab"][side]["file"]
        shutil.copyfile(folder / vocab_file, staging / vocab_file)
        vocabs.append(Vocab.load(staging / vocab_file))
        model = None
        if tokenizer["kind"] == "sentencepiece":
            model = staging / tokenizer["models"][side]
            shutil.copyfile(folder / model.name, model)
        sides.append(Side(lang=tokenizer[f"{side}_lang"], kind=tokenizer["kind"], model=model))
    return sides[0], sides[1], (vocabs[0], vocabs[1])


def _new_sides(cfg: ShardTextConfig, inputs: list[ParallelInput], staging: Path):
    """Tokenizers for a new vocabulary; sentencepiece vocabularies are trained here, word ones later."""
    src_lang = _side_language(cfg.src_lang, [i.src.path for i in inputs], "src")
    tgt_lang = _side_language(cfg.tgt_lang, [i.tgt.path for i in inputs], "tgt")
    if cfg.vocab == "word":
        return Side(lang=src_lang, kind="word"), Side(lang=tgt_lang, kind="word"), None
    src_model, src_vocab = _train_pieces(inputs, "src", cfg.src_vocab_size, staging, cfg.seed)
    tgt_model, tgt_vocab = _train_pieces(inputs, "tgt", cfg.tgt_vocab_size, staging, cfg.seed)
    src = Side(lang=src_lang, kind="sentencepiece", model=src_model)
    tgt = Side(lang=tgt_lang, kind="sentencepiece", model=tgt_model)
    return src, tgt, (src_vocab, tgt_vocab)


def shard_text(cfg: ShardTextConfig) -> dict:
    """Run the whole job; returns the manifest it wrote to ``cfg.out``."""
    inputs = parallel_inputs(list(cfg.src), list(cfg.tgt) or None, cfg.tsv_columns)
    with tqdm(inputs, desc="check inputs", unit="file", disable=not cfg.progress) as bar:
        sizes = [inp.check_aligned() for inp in bar]
    with StagedOutput(cfg.out, cfg.overwrite) as staging:
        if cfg.vocab_from is not None:
            src, tgt, vocabs = _reuse_sides(cfg.vocab_from, staging)
        else:
            src, tgt, vocabs = _new_sides(cfg, inputs, staging)
        spill = staging / SPILL
        limits = (cfg.max_len, cfg.max_len_ratio)
        counts, src_words, tgt_words = tokenize_all(
            inputs, src, tgt, spill, total=sum(sizes), limits=limits, workers=cfg.workers, progress=cfg.progress
        )
        if counts.kept == 0:
            raise UserError(cfg.src[0], f"no sentence pair is left after filtering ({_describe(counts)})")
        if vocabs is None:
            vocabs = (
                Vocab.most_frequent(src_words, cfg.src_vocab_size),
                Vocab.most_frequent(tgt_words, cfg.tgt_vocab_size),
            )
            vocabs[0].save(staging / "vocab.src.txt")
            vocabs[1].save(staging / "vocab.tgt.txt")
        shards = _write_shards(cfg, spill, staging, vocabs, counts.kept)
        spill.unlink()
        manifest = _manifest(cfg, inputs, sizes, counts, shards, (src, tgt), vocabs, (src_words, tgt_words), staging)
        write_manifest(staging, manifest)
    return manifest


def _describe(counts: FilterCounts) -> str:
    return ", ".join(f"{k}={v}" for k, v in vars(counts).items())


def _coverage(vocab: Vocab, words: Counter) -> float:
    total = sum(words.values())
    return sum(n for w, n in words.items() if w in vocab.ids) / total if total else 0.0


def _manifest(cfg, inputs, sizes, counts, shards, sides, vocabs, words, staging: Path) -> dict:
    tokenizer = {
        "kind": sides[0].kind,
        "src_lang": sides[0].lang,
        "tgt_lang": sides[1].lang,
        "normalization": "NFC, whitespace collapsed",
    }
    if cfg.vocab_from is not None:
        tokenizer["vocab_from"] = str(cfg.vocab_from)
    if sides[0].kind == "word":
        tokenizer.update(library="sacremoses", version=moses_version(), escape=False)
    else:
        tokenizer.update(
            library="sentencepiece",
            version=sentencepiece_version(),
            model_type="unigram",
            models={"src": sides[0].model.name, "tgt": sides[1].model.name},
        )
    vocab = {
        side: {
            "file": f"vocab.{side}.txt",
            "size": len(v),
            "sha256": sha256_file(staging / f"vocab.{side}.txt"),
            "token_coverage": round(_coverage(v, w), 6),
        }
        for side, v, w in zip(("src", "tgt"), vocabs, words)
    }
    return {
        "kind": "text-pairs",
        "num_samples": counts.kept,
        "shards": [s.to_json() for s in shards],
        "fields": {PAIR_FIELD: "src, tgt: normalized text; src_ids, tgt_ids: token ids"},
        "lengths": {"file": LENGTHS, "sha256": sha256_file(staging / LENGTHS)},
        "vocab": vocab,
        "specials": {"pad": PAD_ID, "unk": UNK_ID, "bos": BOS_ID, "eos": EOS_ID},
        "tokenizer": tokenizer,
        "inputs": [
            file_entry(p, format=s.format, side=side, num_records=n)
            for inp, n in zip(inputs, sizes)
            for side, s, p in (("src", inp.src, inp.src.path), ("tgt", inp.tgt, inp.tgt.path))
        ],
        "filters": {"max_len": cfg.max_len, "max_len_ratio": cfg.max_len_ratio, "counts": vars(counts)},
    }
