"""Goodfellow et al. (2014), Figure 3: "digits obtained by linearly interpolating between coordinates
in z space of the full model". Each row walks a straight line from one random z to another in
evenly spaced steps, both ends included; a smooth walk through plausible images says the generator
has not memorized isolated training examples.

The images come from the checkpoint's sampling generator (its moving average when it has one, as
``dist_train.inference.load_model`` gives it), and the end points from the model's own noise
distribution on a seeded host generator, so a seed gives the same figure on any device.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dist_train.models.gan import GanModelConfig, sample_noise
from dist_train.trainers.gan.samples import image_grid, save_png, to_uint8

NUM_ROWS = 8
NUM_STEPS = 11  # odd: the middle column is the midpoint of its row's line


def line_noise(cfg: GanModelConfig, num_rows: int, num_steps: int, seed: int) -> tuple[torch.Tensor, dict]:
    """z (rows, steps, z_dim) on the host: row r is (1 - t)·z_start[r] + t·z_end[r] for ``num_steps``
    evenly spaced t from 0 to 1; and the end points and t as plain lists."""
    if num_rows < 1 or num_steps < 2:
        raise ValueError(f"interpolation needs at least 1 row and 2 steps, not {num_rows} and {num_steps}")
    ends = sample_noise(cfg, 2 * num_rows, torch.Generator().manual_seed(seed))
    start, end = ends[:num_rows], ends[num_rows:]  # (rows, z_dim) each
    t = torch.linspace(0.0, 1.0, num_steps)
    z = (1 - t)[None, :, None] * start[:, None] + t[None, :, None] * end[:, None]  # (rows, steps, z_dim)
    data = {"seed": seed, "t": t.tolist(), "z_start": start.tolist(), "z_end": end.tolist()}
    return z, data


@torch.no_grad()
def interpolate(
    generator: nn.Module, cfg: GanModelConfig, *, num_rows: int = NUM_ROWS, num_steps: int = NUM_STEPS, seed: int = 0
) -> tuple[torch.Tensor, dict]:
    """G along ``num_rows`` seeded lines: images (rows, steps, channels, height, width) on the host, in
    the model's pixel range, and the figure's data (seed, t, each row's end points)."""
    z, data = line_noise(cfg, num_rows, num_steps, seed)
    device = next(generator.parameters()).device
    images = generator(z.flatten(0, 1).to(device)).cpu()  # (rows·steps, channels, height, width)
    figure = {"figure": "Goodfellow et al. 2014, Figure 3", "num_rows": num_rows, "num_steps": num_steps, **data}
    return images.view(num_rows, num_steps, *images.shape[1:]), figure


def save_interpolation(images: torch.Tensor, cfg: GanModelConfig, path: Path) -> Path:
    """The images as a PNG grid: one row per line in z, its steps left to right."""
    return save_png(image_grid(to_uint8(images.flatten(0, 1), cfg.pixel_range), columns=images.shape[1]), path)
