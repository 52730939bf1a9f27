"""Batches as the trainers receive them, and how samples are decoded and padded into them."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, fields

import numpy as np
import torch
from PIL import Image

from data_shards.errors import DataError
from data_shards.vocab import PAD_ID


@dataclass
class TextBatch:
    src_tokens: torch.Tensor  # (batch, max_src_len) int64, PAD_ID-padded
    src_lengths: torch.Tensor  # (batch,)
    tgt_tokens: torch.Tensor  # (batch, max_tgt_len)
    tgt_lengths: torch.Tensor  # (batch,)
    sample_ids: torch.Tensor  # (batch,) global index of each sample in the shard set
    src_text: list[str]  # the pairs' text when the reader has with_text, else empty
    tgt_text: list[str]

    @property
    def num_tokens(self) -> int:
        """Source + target tokens without padding (the paper's words/s count)."""
        return int(self.src_lengths.sum() + self.tgt_lengths.sum())

    def __len__(self) -> int:
        return len(self.sample_ids)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TextBatch:
        return _to(self, device, non_blocking)


@dataclass
class ImageBatch:
    images: torch.Tensor  # (batch, channels, height, width) uint8
    labels: torch.Tensor  # (batch,) int64
    sample_ids: torch.Tensor  # (batch,)

    def __len__(self) -> int:
        return len(self.sample_ids)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ImageBatch:
        return _to(self, device, non_blocking)


def _to(batch, device, non_blocking):
    moved = {f.name: getattr(batch, f.name) for f in fields(batch)}
    for name, value in moved.items():
        if isinstance(value, torch.Tensor):
            moved[name] = value.to(device, non_blocking=non_blocking)
    return type(batch)(**moved)


def as_torch(batch):
    """The same batch with every numpy array as a tensor (no copy).

    Collation runs in DataLoader workers and builds batches of numpy arrays: they travel to the
    training process pickled in one message, over ten times faster than tensors, which go through
    a shared-memory file each. The reader converts them on arrival.
    """
    fields_ = {f.name: getattr(batch, f.name) for f in fields(batch)}
    return type(batch)(**{k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in fields_.items()})


def _pad(sequences: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    padded = np.full((len(sequences), int(lengths.max())), PAD_ID, dtype=np.int64)
    for row, ids in zip(padded, sequences):
        row[: len(ids)] = ids
    return padded, lengths


def collate_text(samples: list[dict], sample_ids: np.ndarray, with_text: bool = False) -> TextBatch:
    pairs = [json.loads(bytes(s["pair.json"])) for s in samples]
    src_tokens, src_lengths = _pad([p["src_ids"] for p in pairs])
    tgt_tokens, tgt_lengths = _pad([p["tgt_ids"] for p in pairs])
    return TextBatch(
        src_tokens=src_tokens,
        src_lengths=src_lengths,
        tgt_tokens=tgt_tokens,
        tgt_lengths=tgt_lengths,
        sample_ids=sample_ids.astype(np.int64),
        src_text=[p["src"] for p in pairs] if with_text else [],
        tgt_text=[p["tgt"] for p in pairs] if with_text else [],
    )


def decode_image(payload) -> np.ndarray:
    with Image.open(io.BytesIO(payload)) as image:
        array = np.asarray(image)
    return array[:, :, None] if array.ndim == 2 else array  # (height, width, channels)


def collate_images(samples: list[dict], sample_ids: np.ndarray, with_text: bool = False) -> ImageBatch:
    images = [decode_image(s["png"]) for s in samples]
    if len({im.shape for im in images}) != 1:
        raise DataError(
            None,
            f"images of different sizes in one batch ({sorted({im.shape for im in images})}): reshard them at one size",
        )
    return ImageBatch(
        images=np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2)),
        labels=np.array([int(bytes(s["cls"])) for s in samples], dtype=np.int64),
        sample_ids=sample_ids.astype(np.int64),
    )


COLLATE = {"text-pairs": collate_text, "images": collate_images}
