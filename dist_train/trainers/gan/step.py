"""What one gan step is made of: D on a real and a fake batch in one call, G's loss through a frozen D,
the step's figures, and the streams an update's random draws are keyed by (``data.micro_batches``)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

D_DROPOUT, D_NOISE, G_DROPOUT, G_NOISE = range(4)  # MicroBatchRng's streams: an update's D and G halves


def mean(figures: list[torch.Tensor], sizes: list[int]) -> torch.Tensor:
    """The mean over an update's images of per-batch means."""
    return sum(figure * size for figure, size in zip(figures, sizes)) / sum(sizes)


@contextlib.contextmanager
def frozen(module: nn.Module):
    """No parameter gradients for ``module`` inside: G's loss reads D without training it."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


class RealAndFake(nn.Module):
    """D on a real and a fake batch in one forward call: what an engine wraps, so that one forward
    and one backward carry both halves of D's loss."""

    wraps_module = True  # ``unwrap`` peels it

    def __init__(self, discriminator: nn.Module) -> None:
        super().__init__()
        self.module = discriminator

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.module(real), self.module(fake)


@dataclass
class GanStep:
    """One step's figures; the losses and D's outputs stay on the device until a logging interval reads them."""

    images: int
    d_loss: torch.Tensor
    d_real: torch.Tensor  # mean D(x) on the real images
    d_fake: torch.Tensor  # mean D(G(z)) on the fakes D was trained on
    g_loss: torch.Tensor | None  # None on a step without a G update
    lr: float
    applied: bool = True  # False when an update was skipped (non-finite gradients, fp16 overflow)

    def summed(self) -> dict[str, float | torch.Tensor]:
        n, g_updated = self.images, self.g_loss is not None
        return {
            "images": n,
            "d_loss_sum": self.d_loss * n,
            "d_real_sum": self.d_real * n,
            "d_fake_sum": self.d_fake * n,
            "g_loss_sum": self.g_loss * n if g_updated else 0.0,
            "g_images": n if g_updated else 0,
        }

    def values(self) -> dict[str, float]:
        return {
            "samples": self.images,
            "images": self.images,
            "learning_rate": self.lr,
            "skipped_steps": int(not self.applied),
        }
