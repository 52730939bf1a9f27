"""Sample grids: the generator's images from one fixed z, written as a PNG every N steps, so a run's
progress can be watched image by image (and ``evaluate-gan`` saves the same grid)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from dist_train.models.gan import GanModelConfig, sample_noise


@dataclass(frozen=True, kw_only=True)
class SamplesConfig:
    every_steps: int = 1000  # 0: only at the end of the run
    num_samples: int = 100  # a 10 × 10 grid
    seed: int = 1234  # the fixed z

    def __post_init__(self) -> None:
        if self.every_steps < 0 or self.num_samples < 1:
            raise ValueError("samples.every_steps must be >= 0 and samples.num_samples >= 1")


def to_uint8(images: torch.Tensor, pixel_range: tuple[float, float]) -> np.ndarray:
    """(n, channels, height, width) floats in ``pixel_range`` → (n, height, width, channels) uint8."""
    low, high = pixel_range
    scaled = ((images.detach().float().cpu() - low) / (high - low)).clamp(0, 1) * 255
    return scaled.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def image_grid(images: np.ndarray, columns: int = 0, border: int = 1) -> np.ndarray:
    """(n, height, width, channels) uint8 → one (rows·(h+border)+border, ...) image, tiles row by row."""
    n, height, width, channels = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.full((rows * (height + border) + border, columns * (width + border) + border, channels), 255, np.uint8)
    for i, image in enumerate(images):
        top, left = border + (i // columns) * (height + border), border + (i % columns) * (width + border)
        grid[top : top + height, left : left + width] = image
    return grid


def save_png(grid: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
    return path


@torch.no_grad()
def sample_grid(generator: nn.Module, cfg: GanModelConfig, z: torch.Tensor) -> np.ndarray:
    was_training = generator.training
    generator.eval()
    images = generator(z)
    generator.train(was_training)
    return image_grid(to_uint8(images, cfg.pixel_range))


class SampleWriter:
    """The gan job's evaluator: writes ``samples/step-NNNNNNNN.png`` of ``generator``'s images from a fixed
    z every ``every_steps`` steps and at the end (main process; ``folder`` None elsewhere)."""

    def __init__(
        self,
        cfg: SamplesConfig,
        model_cfg: GanModelConfig,
        folder: Path | None,
        device: torch.device,
        generator: nn.Module,
    ) -> None:
        self.cfg, self.model_cfg, self.folder, self.generator = cfg, model_cfg, folder, generator
        self.z = sample_noise(model_cfg, cfg.num_samples, torch.Generator().manual_seed(cfg.seed), device)

    def maybe_run(self, step: int) -> dict:
        if self.cfg.every_steps and step % self.cfg.every_steps == 0:
            return self.final(step)
        return {}

    def final(self, step: int) -> dict:
        if self.folder is None:
            return {}
        grid = sample_grid(self.generator, self.model_cfg, self.z)
        path = save_png(grid, self.folder / f"step-{step:08d}.png")
        return {"samples": str(path)}
