"""shard-images: image sets → PNG + class webdataset shards with the same manifest as text."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from data_shards.errors import UserError
from data_shards.image_sources import IMAGE_FORMATS, IMAGE_SUFFIXES, detect, other_files
from data_shards.manifest import StagedOutput, file_entry, write_manifest
from data_shards.tario import ShardWriter


@dataclass(frozen=True, kw_only=True)
class ShardImagesConfig:
    input: tuple[Path, ...]
    out: Path
    format: str = "auto"
    shard_size: int = 10_000
    overwrite: bool = False
    progress: bool = True
    skip: int = 0  # of all inputs' images in order, leave out the first ``skip`` ...
    limit: int = 0  # ... and keep at most ``limit`` after them (0: all): a train/valid split of one file
    resolution: int = 0  # > 0: centre-crop each image to a square and resize it to resolution × resolution
    colour: str = "keep"  # keep | rgb | gray: make every image RGB or grayscale (L)

    def __post_init__(self) -> None:
        if not self.input:
            raise ValueError("give at least one --input path")
        if self.format not in IMAGE_FORMATS:
            raise ValueError(f"--format must be one of {IMAGE_FORMATS}, not {self.format!r}")
        if self.shard_size < 1:
            raise ValueError("--shard-size must be at least 1")
        if self.skip < 0 or self.limit < 0:
            raise ValueError("--skip and --limit must be >= 0")
        if self.resolution < 0:
            raise ValueError("--resolution must be >= 0 (0: keep each image's size)")
        if self.colour not in COLOURS:
            raise ValueError(f"--colour must be one of {COLOURS}, not {self.colour!r}")

    def keeps(self, index: int) -> bool:
        return index >= self.skip and (not self.limit or index < self.skip + self.limit)


COLOURS = ("keep", "rgb", "gray")


def transform(image: np.ndarray, resolution: int, colour: str) -> np.ndarray:
    """``image`` (height, width[, 3]) uint8, converted to ``colour`` and, with a ``resolution``,
    centre-cropped to a square and resized to it (Lanczos), as StyleGAN's dataset tool does."""
    if not resolution and colour == "keep":
        return image
    picture = Image.fromarray(image)
    if colour != "keep":
        picture = picture.convert("RGB" if colour == "rgb" else "L")
    if resolution:
        side = min(picture.size)
        left, top = (picture.width - side) // 2, (picture.height - side) // 2
        picture = picture.crop((left, top, left + side, top + side))
        picture = picture.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(picture)


def encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


@dataclass(kw_only=True)
class _Seen:
    shapes: set = field(default_factory=set)
    max_label: int = -1
    read: int = 0  # images read from the inputs, kept or not


def _write_source(source, classes, writer: ShardWriter, bar, seen: _Seen, cfg: ShardImagesConfig) -> dict:
    """Write one input's images (those ``cfg`` keeps); returns its manifest entry."""
    before = writer.num_samples
    for image, label in source.images(classes):
        seen.read += 1
        if not cfg.keeps(seen.read - 1):
            continue
        image = transform(image, cfg.resolution, cfg.colour)
        writer.write({"png": encode_png(image), "cls": str(label).encode()})
        seen.shapes.add(image.shape)
        seen.max_label = max(seen.max_label, label)
        bar.update()
    count = writer.num_samples - before
    if source.path.is_file():
        return file_entry(source.path, format=source.format, num_records=count)
    return {"path": str(source.path), "format": source.format, "num_records": count}


def shard_images(cfg: ShardImagesConfig) -> dict:
    """Run the whole job; returns the manifest it wrote to ``cfg.out``."""
    sources = detect(list(cfg.input), cfg.format)
    folder_classes = sorted({c for s in sources for c in s.classes() or ()}) or None
    for source in sources:
        if source.format == "folder" and not source.classes():
            suffixes = " ".join(sorted(IMAGE_SUFFIXES))
            raise UserError(source.path, f"holds no images (files named {suffixes}, in <class>/ folders)")
    seen, inputs = _Seen(), []
    with StagedOutput(cfg.out, cfg.overwrite) as staging:
        writer = ShardWriter(staging, cfg.shard_size)
        with tqdm(desc="shard images", unit="img", unit_scale=True, disable=not cfg.progress) as bar:
            for source in sources:
                inputs.append(_write_source(source, folder_classes, writer, bar, seen, cfg))
                if source.labels is not None:
                    inputs.append(file_entry(source.labels, format="mnist-idx labels"))
        shards = writer.close()
        if writer.num_samples == 0:
            raise UserError(cfg.input[0], "holds no images")
        manifest = {
            "kind": "images",
            "num_samples": writer.num_samples,
            "shards": [s.to_json() for s in shards],
            "fields": {"png": "image (PNG, L or RGB)", "cls": "class index (decimal text)"},
            "classes": folder_classes or [str(i) for i in range(seen.max_label + 1)],
            "image_shape": list(seen.shapes.pop()) if len(seen.shapes) == 1 else None,
            "selection": {"skip": cfg.skip, "limit": cfg.limit},
            "transform": {"resolution": cfg.resolution, "colour": cfg.colour},
            "inputs": inputs,
            "left_out_files": dict(sum((other_files(s.path) for s in sources if s.format == "folder"), Counter())),
        }
        write_manifest(staging, manifest)
    return manifest
