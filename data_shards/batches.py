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
    src_text: list[str]
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


def _pad(sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    padded = np.full((len(sequences), int(lengths.max())), PAD_ID, dtype=np.int64)
    for row, ids in zip(padded, sequences):
        row[: len(ids)] = ids
    return torch.from_numpy(padded), torch.from_numpy(lengths)


def collate_text(samples: list[dict], sample_ids: np.ndarray) -> TextBatch:
    pairs = [json.loads(bytes(s["pair.json"])) for s in samples]
    src_tokens, src_lengths = _pad([p["src_ids"] for p in pairs])
    tgt_tokens, tgt_lengths = _pad([p["tgt_ids"] for p in pairs])
    return TextBatch(
        src_tokens=src_tokens,
        src_lengths=src_lengths,
        tgt_tokens=tgt_tokens,
        tgt_lengths=tgt_lengths,
        sample_ids=torch.from_numpy(sample_ids.astype(np.int64)),
        src_text=[p["src"] for p in pairs],
        tgt_text=[p["tgt"] for p in pairs],
    )


def decode_image(payload) -> np.ndarray:
    with Image.open(io.BytesIO(payload)) as image:
        array = np.asarray(image)
    return array[:, :, None] if array.ndim == 2 else array  # (height, width, channels)


def collate_images(samples: list[dict], sample_ids: np.ndarray) -> ImageBatch:
    images = [decode_image(s["png"]) for s in samples]
    if len({im.shape for im in images}) != 1:
        raise DataError(
            None,
            f"images of different sizes in one batch ({sorted({im.shape for im in images})}): reshard them at one size",
        )
    return ImageBatch(
        images=torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
        labels=torch.tensor([int(bytes(s["cls"])) for s in samples], dtype=torch.int64),
        sample_ids=torch.from_numpy(sample_ids.astype(np.int64)),
    )


COLLATE = {"text-pairs": collate_text, "images": collate_images}
