"""shard-index: the manifest (and length index) of a webdataset folder that our tools did not write, so
that our reader trains on it exactly as on shards of ``shard-text`` or ``shard-images``.

The tars may come from ``webdataset.ShardWriter`` or any tool that writes webdataset's convention
(consecutive members ``<key>.<field>``), with our fields in every sample: ``pair.json`` for text (``src``
and ``tgt``, the text; ``src_ids`` and ``tgt_ids``, its ids in the vocabularies of ``--vocab-from``),
``png`` (or any image PIL reads) and ``cls`` for images. Which tars, in which order: every ``*.tar`` of
the folder by name, or a pattern in webdataset's brace notation (``train-{000000..000009}.tar``). Every
sample is decoded as training will decode it before a manifest is written: a sample that does not fit
is an error naming its shard, not a failure hours into a run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm
from webdataset.shardlists import expand_urls

from data_shards.batches import DECODE
from data_shards.errors import UserError
from data_shards.manifest import MANIFEST, load_manifest, sha256_file, write_manifest
from data_shards.shard_text import LENGTHS, PAIR_FIELD
from data_shards.tario import ShardInfo, read_samples

KINDS = {"text-pairs": {PAIR_FIELD}, "images": {"png", "cls"}}  # a kind's fields, each in every sample
FIELDS = {
    "text-pairs": {PAIR_FIELD: "src, tgt: text; src_ids, tgt_ids: token ids"},
    "images": {"png": "image", "cls": "class index (decimal text)"},
}


@dataclass(frozen=True)
class ShardIndexConfig:
    folder: Path
    shards: str = ""  # which tars of the folder, in brace notation ("": every *.tar, sorted by name)
    vocab_from: Path | None = None  # text: the shard set whose vocabularies the ids index
    overwrite: bool = False  # replace a manifest already there
    progress: bool = True


def shard_names(folder: Path, pattern: str) -> list[str]:
    """The tars ``pattern`` names (webdataset's brace expansion), each of them there; every ``*.tar``."""
    if not folder.is_dir():
        raise UserError(folder, "is not a folder")
    names = expand_urls(pattern) if pattern else sorted(p.name for p in folder.glob("*.tar"))
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise UserError(folder / missing[0], f"is named by --shards {pattern!r} but is not there")
    if not names:
        raise UserError(folder, "holds no *.tar shards")
    return names


def kind_of(fields: set[str], where: Path) -> str:
    for kind, needed in KINDS.items():
        if needed <= fields:
            return kind
    wanted = " or ".join("+".join(sorted(f)) for f in KINDS.values())
    raise UserError(where, f"its first sample has fields {sorted(fields)}; the reader needs {wanted}")


def shard_index(cfg: ShardIndexConfig) -> dict:
    """Index ``cfg.folder``; returns the manifest written into it."""
    folder = Path(cfg.folder)
    if (folder / MANIFEST).exists() and not cfg.overwrite:
        raise UserError(folder / MANIFEST, "already exists; pass --overwrite to index the folder again")
    names = shard_names(folder, cfg.shards)
    index = Index(folder)
    for name in tqdm(names, desc="index shards", unit="shard", disable=not cfg.progress):
        index.add(name)
    if index.kind == "text-pairs":
        return index.write_text(cfg.vocab_from)
    return index.write_images()


class Index:
    """The shards read so far: each one's entry, and what the manifest says of their samples."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.kind = folder, None
        self.shards: list[ShardInfo] = []
        self.lengths: list[tuple[int, int]] = []  # text: (source, target) ids of each sample
        self.max_ids = [0, 0]  # text: the largest id on each side
        self.classes: set[int] = set()  # images
        self.shapes: set[tuple[int, ...]] = set()

    def add(self, name: str) -> None:
        path = self.folder / name
        data = path.read_bytes()
        samples = read_samples(data, path)
        if self.kind is None and samples:
            self.kind = kind_of(set(samples[0]), path)
        for k, sample in enumerate(samples):
            try:
                self._count(DECODE[self.kind](sample))
            except Exception as err:  # what a malformed payload raises (json, PIL, a missing field)
                raise UserError(path, f"sample {k} is not {self.kind}: {type(err).__name__}: {err}") from err
        digest = hashlib.sha256(data).hexdigest()
        self.shards.append(ShardInfo(name=name, num_samples=len(samples), num_bytes=len(data), sha256=digest))

    def _count(self, item) -> None:
        if self.kind == "text-pairs":
            if not all(isinstance(item.get(key), str) for key in ("src", "tgt")):
                raise ValueError("src and tgt must be text")
            self.lengths.append((len(item["src_ids"]), len(item["tgt_ids"])))
            for side, ids in enumerate((item["src_ids"], item["tgt_ids"])):
                self.max_ids[side] = max(self.max_ids[side], max(ids, default=0))
        else:
            image, label = item
            self.classes.add(label)
            self.shapes.add(image.shape)

    def common(self) -> dict:
        num_samples = sum(s.num_samples for s in self.shards)
        if num_samples == 0:
            raise UserError(self.folder, "its shards hold no samples")
        return {"kind": self.kind, "num_samples": num_samples, "shards": [s.to_json() for s in self.shards],
                "fields": FIELDS[self.kind], "indexed_by": "shard-index"}  # fmt: skip

    def write_images(self) -> dict:
        manifest = {**self.common(), "classes": [str(c) for c in range(max(self.classes) + 1)],
                    "image_shape": list(self.shapes.pop()) if len(self.shapes) == 1 else None}  # fmt: skip
        write_manifest(self.folder, manifest)
        return manifest

    def write_text(self, vocab_from: Path | None) -> dict:
        """The lengths index, the vocabularies of ``vocab_from`` (which the ids index) and the manifest,
        the manifest last: a folder is a shard set once its manifest is there."""
        if vocab_from is None:
            raise UserError(self.folder, "holds text pairs: give --vocab-from SHARD_DIR, the vocabularies of its ids")
        theirs = load_manifest(vocab_from)
        vocab = {}
        for k, side in enumerate(("src", "tgt")):
            entry = theirs["vocab"][side]
            if self.max_ids[k] >= entry["size"]:
                raise UserError(self.folder, f"has {side} id {self.max_ids[k]}; {vocab_from} has {entry['size']} words")
            shutil.copyfile(Path(vocab_from) / entry["file"], self.folder / entry["file"])
            vocab[side] = {key: entry[key] for key in ("file", "size", "sha256")}
        for model in theirs["tokenizer"].get("models", {}).values():  # sentencepiece: what decoding needs
            shutil.copyfile(Path(vocab_from) / model, self.folder / model)
        lengths = self.folder / LENGTHS
        staged = lengths.with_name(f".{LENGTHS}.{os.getpid()}")
        with open(staged, "wb") as f:
            np.save(f, np.asarray(self.lengths, dtype=np.int32).reshape(-1, 2))
        staged.replace(lengths)
        tokenizer = {**theirs["tokenizer"], "vocab_from": str(vocab_from)}
        manifest = {**self.common(), "lengths": {"file": LENGTHS, "sha256": sha256_file(lengths)}, "vocab": vocab,
                    "specials": theirs["specials"], "tokenizer": tokenizer}  # fmt: skip
        write_manifest(self.folder, manifest)
        return manifest
