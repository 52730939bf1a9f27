"""What the gan job reads from its image shards: their one image shape, pixels in the model's range,
and the training images' mean (G's output bias starts from it)."""

from __future__ import annotations

from pathlib import Path

import torch

from data_shards import ReaderConfig, ShardReader
from data_shards.errors import UserError
from dist_train.models.gan import GanModelConfig


def image_shape(manifest: dict, folder: str | Path | None = None) -> tuple[int, int, int]:
    """(channels, height, width) of an image shard set (``manifest``, of ``folder``) whose images all
    have one shape; a one-line error naming the folder otherwise."""
    shape = manifest.get("image_shape")
    if not shape:
        raise UserError(
            folder,
            "the gan job needs images of one shape; these shards hold several: "
            "reshard them with shard-images --resolution N (and --colour rgb|gray)",
        )
    return (1, *shape) if len(shape) == 2 else (shape[2], shape[0], shape[1])


def to_pixels(images: torch.Tensor, pixel_range: tuple[float, float]) -> torch.Tensor:
    """uint8 (batch, channels, height, width) → floats in the model's pixel range ([0, 1]: x / 255)."""
    low, high = pixel_range
    return images.float() / 255 * (high - low) + low


@torch.no_grad()
def mean_image(reader: ShardReader, model_cfg: GanModelConfig) -> torch.Tensor:
    """Every training image's mean (all replicas see all of them): G's output bias starts from it."""
    shards = reader.shards
    full = ShardReader(shards, ReaderConfig(batch_size=1000, shuffle=False, bucket_pool=0, num_workers=0))
    total, count = None, 0
    for batch in full:
        pixels = to_pixels(batch.images, model_cfg.pixel_range).sum(dim=0)
        total, count = (pixels if total is None else total + pixels), count + len(batch)
    return total / count
