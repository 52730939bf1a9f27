"""Batches as the trainers receive them, and how samples are decoded and padded into them."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from PIL import Image

from data_shards.errors import UserError
from data_shards.vocab import PAD_ID


@dataclass
class TextBatch:
    src_tokens: torch.Tensor  # (batch, max_src_len) int64, PAD_ID-padded
    src_lengths: torch.Tensor  # (batch,) int64, stays on the host (see to())
    tgt_tokens: torch.Tensor  # (batch, max_tgt_len)
    tgt_lengths: torch.Tensor  # (batch,) int64, stays on the host
    sample_ids: torch.Tensor  # (batch,) global index of each sample in the shard set
    src_text: list[str]  # the pairs' text when the reader has with_text, else empty
    tgt_text: list[str]
    corrupt_samples: int = 0  # planned samples left out as corrupt (ReaderConfig.skip_corrupt)
    update_samples: int = 0  # samples in this batch's update, all replicas together (data.micro_batches; else 0)

    @property
    def num_tokens(self) -> int:
        """Source + target tokens without padding (the paper's words/s count)."""
        return int(self.src_lengths.sum() + self.tgt_lengths.sum())

    def __len__(self) -> int:
        return len(self.sample_ids)

    def to(self, device: torch.device | str, non_blocking: bool = True) -> TextBatch:
        """The token tensors on ``device``; lengths and sample ids stay on the host, where the model
        sorts by length (``src_lengths.cpu()``) and the trainer counts words without waiting for the
        device. From pinned memory (``pin_memory()``) the copies overlap the step before."""
        return _to(self, ("src_tokens", "tgt_tokens"), device, non_blocking)

    def pin_memory(self) -> TextBatch:
        """The batch with every tensor in page-locked memory: the DataLoader calls it when the
        reader pins (``ShardReader(pin_memory=True)``)."""
        return _pinned(self)


@dataclass
class ImageBatch:
    images: torch.Tensor  # (batch, channels, height, width) uint8
    labels: torch.Tensor  # (batch,) int64
    sample_ids: torch.Tensor  # (batch,)
    corrupt_samples: int = 0  # planned samples left out as corrupt (ReaderConfig.skip_corrupt)
    update_samples: int = 0  # samples in this batch's update, all replicas together (data.micro_batches; else 0)

    def __len__(self) -> int:
        return len(self.sample_ids)

    def to(self, device: torch.device | str, non_blocking: bool = True) -> ImageBatch:
        """Images and labels on ``device``; sample ids stay on the host."""
        return _to(self, ("images", "labels"), device, non_blocking)

    def pin_memory(self) -> ImageBatch:
        """The batch with every tensor in page-locked memory (see ``TextBatch.pin_memory``)."""
        return _pinned(self)


def _to(batch, names: tuple[str, ...], device, non_blocking: bool):
    """``batch`` with the tensors ``names`` on ``device``. ``non_blocking`` is safe for these
    host-to-device copies: from pinned memory the caching host allocator keeps the source alive
    until the copy is done, and from pageable memory CUDA stages it before returning."""
    moved = {name: getattr(batch, name).to(device, non_blocking=non_blocking) for name in names}
    return replace(batch, **moved)


def _pinned(batch):
    """``batch`` with every tensor pinned; a worker's numpy arrays become pinned tensors (the
    DataLoader pins before the reader converts them)."""
    batch = as_torch(batch)
    pinned = {f.name: getattr(batch, f.name) for f in fields(batch)}
    return type(batch)(**{k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in pinned.items()})


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


def decode_pair(sample: dict) -> dict:
    """A text shard's sample: ``{"src", "tgt", "src_ids", "tgt_ids"}``."""
    pair = json.loads(bytes(sample["pair.json"]))
    if not all(isinstance(pair.get(k), list) for k in ("src_ids", "tgt_ids")):
        raise ValueError("src_ids and tgt_ids must be lists")
    return pair


def collate_text(pairs: list[dict], sample_ids: np.ndarray, with_text: bool = False) -> TextBatch:
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


def decode_labelled_image(sample: dict) -> tuple[np.ndarray, int]:
    """An image shard's sample: (height × width × channels uint8, class)."""
    return decode_image(sample["png"]), int(bytes(sample["cls"]))


def collate_images(items: list[tuple[np.ndarray, int]], sample_ids: np.ndarray, with_text: bool = False) -> ImageBatch:
    images = [image for image, _ in items]
    if len({im.shape for im in images}) != 1:
        raise UserError(
            None,
            f"images of different sizes in one batch ({sorted({im.shape for im in images})}): reshard them at one size",
        )
    return ImageBatch(
        images=np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2)),
        labels=np.array([label for _, label in items], dtype=np.int64),
        sample_ids=sample_ids.astype(np.int64),
    )


# per kind: decode one sample (any exception: it is corrupt), then collate decoded samples into a batch
DECODE = {"text-pairs": decode_pair, "images": decode_labelled_image}
COLLATE = {"text-pairs": collate_text, "images": collate_images}
