"""Goodfellow et al. (2014): a generator and a discriminator, as the paper's released MNIST config
built them, and a DCGAN-style convolutional pair (Radford et al., 2016) for 32×32 colour images.

Architecture only: who wraps them in DDP, which loss and which update order, is the trainer's.
Images are (batch, channels, height, width): in [0, 1] for ``paper-mnist`` (the sigmoid output),
in [-1, 1] for ``dcgan-32`` (tanh), as ``GanModelConfig.pixel_range`` says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from data_shards.checks import above, at_least

Architecture = Literal["paper-mnist", "dcgan-32"]


@dataclass(frozen=True, kw_only=True)
class GanModelConfig:
    arch: Architecture = "paper-mnist"
    z_dim: int = 100
    # uniform on [-√3, √3] (DESIGN.md, the paper's description) or N(0, 1): the released mnist.yaml sets
    # no noise, so its Generator's default, gaussian, is what produced the paper's samples
    noise: Literal["uniform", "gaussian"] = "uniform"
    # paper-mnist (the released config, adversarial/mnist.yaml)
    g_hidden: int = 1200
    g_init_range: float = 0.05
    d_units: int = 240
    d_pieces: int = 5  # maxout pieces per unit
    d_init_range: float = 0.005
    d_input_keep: float = 0.8  # dropout: keep probability on D's input ...
    d_hidden_keep: float = 0.5  # ... and on its hidden layers' outputs
    # dcgan-32
    g_channels: int = 256  # the generator's widest (first) feature map
    d_channels: int = 64  # the discriminator's narrowest (first) feature map

    def __post_init__(self) -> None:
        if self.arch not in ("paper-mnist", "dcgan-32"):
            raise ValueError(f"model.arch must be paper-mnist or dcgan-32, not {self.arch!r}")
        if self.noise not in ("uniform", "gaussian"):
            raise ValueError(f"model.noise must be uniform or gaussian, not {self.noise!r}")
        at_least(self, "model", 1, "z_dim", "g_hidden", "d_units", "d_pieces", "g_channels", "d_channels")
        above(self, "model", 0, "g_init_range", "d_init_range")
        if not (0 < self.d_input_keep <= 1 and 0 < self.d_hidden_keep <= 1):
            raise ValueError("model.d_input_keep and model.d_hidden_keep are keep probabilities in (0, 1]")

    @property
    def pixel_range(self) -> tuple[float, float]:
        return (0.0, 1.0) if self.arch == "paper-mnist" else (-1.0, 1.0)


def sample_noise(cfg: GanModelConfig, num: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """z (num, z_dim): uniform on [-√3, √3] or standard normal (both unit variance), as ``cfg.noise`` says;
    drawn on ``generator``'s device (a generator on the GPU: no host-to-device copy per step), then
    moved to ``device`` if that is another."""
    where = generator.device if generator is not None else device
    if cfg.noise == "uniform":
        uniform = torch.rand(num, cfg.z_dim, generator=generator, device=where)
        return ((uniform * 2 - 1) * math.sqrt(3)).to(device)
    return torch.randn(num, cfg.z_dim, generator=generator, device=where).to(device)


# --- paper-mnist ------------------------------------------------------------------------------


class Maxout(nn.Module):
    """A linear map to ``units × pieces`` outputs, then the max over each unit's pieces."""

    def __init__(self, inputs: int, units: int, pieces: int) -> None:
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(inputs, units * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(-1, self.units, self.pieces).amax(dim=-1)  # (batch, units)


class MlpGenerator(nn.Module):
    """z → ReLU 1200 → ReLU 1200 → sigmoid 784, reshaped to (batch, 1, 28, 28)."""

    def __init__(self, cfg: GanModelConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.image_shape = image_shape
        self.hidden = nn.Sequential(
            nn.Linear(cfg.z_dim, cfg.g_hidden), nn.ReLU(), nn.Linear(cfg.g_hidden, cfg.g_hidden), nn.ReLU()
        )
        self.output = nn.Linear(cfg.g_hidden, math.prod(image_shape))
        for layer in (self.hidden[0], self.hidden[2], self.output):
            nn.init.uniform_(layer.weight, -cfg.g_init_range, cfg.g_init_range)
            nn.init.zeros_(layer.bias)

    def init_output_bias(self, mean_image: torch.Tensor) -> None:
        """The released config's output bias: the logit of each pixel's mean over the training set
        (clipped to [0.001, 0.999]), so G starts at the data's average image."""
        mean = mean_image.reshape(-1).clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            self.output.bias.copy_(torch.log(mean / (1 - mean)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.output(self.hidden(z))).view(-1, *self.image_shape)


class MaxoutDiscriminator(nn.Module):
    """maxout 240×5 → maxout 240×5 → sigmoid unit, with dropout on its input and hidden layers.

    Returns logits (batch,): the trainer's BCE takes logits, which is the sigmoid's loss computed
    stably."""

    def __init__(self, cfg: GanModelConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.input_drop, self.hidden_drop = 1 - cfg.d_input_keep, 1 - cfg.d_hidden_keep
        self.h0 = Maxout(math.prod(image_shape), cfg.d_units, cfg.d_pieces)
        self.h1 = Maxout(cfg.d_units, cfg.d_units, cfg.d_pieces)
        self.output = nn.Linear(cfg.d_units, 1)
        for layer in (self.h0.linear, self.h1.linear, self.output):
            nn.init.uniform_(layer.weight, -cfg.d_init_range, cfg.d_init_range)
            nn.init.zeros_(layer.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.dropout(images.flatten(1), self.input_drop, self.training)  # inverted: scaled by 1/keep
        x = F.dropout(self.h0(x), self.hidden_drop, self.training)
        x = F.dropout(self.h1(x), self.hidden_drop, self.training)
        return self.output(x).squeeze(-1)


# --- dcgan-32 ---------------------------------------------------------------------------------


class ConvGenerator(nn.Module):
    """z → 4×4×C → 8×8×C/2 → 16×16×C/4 → 32×32×channels (transposed convolutions, batch norm,
    ReLU, tanh), DCGAN's recipe at 32×32."""

    def __init__(self, cfg: GanModelConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        c = cfg.g_channels
        self.project = nn.Sequential(
            nn.ConvTranspose2d(cfg.z_dim, c, 4, 1, 0, bias=False), nn.BatchNorm2d(c), nn.ReLU()
        )
        self.upsample = nn.Sequential(
            *_up(c, c // 2), *_up(c // 2, c // 4), nn.ConvTranspose2d(c // 4, image_shape[0], 4, 2, 1), nn.Tanh()
        )
        _dcgan_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.project(z[:, :, None, None]))


class ConvDiscriminator(nn.Module):
    """32×32×channels → 16×16×C → 8×8×2C → 4×4×4C → logit (strided convolutions, batch norm after
    the first, LeakyReLU 0.2). Returns logits (batch,)."""

    def __init__(self, cfg: GanModelConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        c = cfg.d_channels
        self.features = nn.Sequential(
            nn.Conv2d(image_shape[0], c, 4, 2, 1),
            nn.LeakyReLU(0.2),
            *_down(c, 2 * c),
            *_down(2 * c, 4 * c),
        )
        self.output = nn.Conv2d(4 * c, 1, 4, 1, 0)
        _dcgan_init(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.output(self.features(images)).flatten()


def _up(inputs: int, outputs: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(inputs, outputs, 4, 2, 1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU()]


def _down(inputs: int, outputs: int) -> list[nn.Module]:
    return [nn.Conv2d(inputs, outputs, 4, 2, 1, bias=False), nn.BatchNorm2d(outputs), nn.LeakyReLU(0.2)]


def _dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialization: convolutions N(0, 0.02), batch-norm scales N(1, 0.02), shifts 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def build_gan(cfg: GanModelConfig, image_shape: tuple[int, int, int]) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) for images of ``image_shape`` (channels, height, width)."""
    if cfg.arch == "paper-mnist":
        return MlpGenerator(cfg, image_shape), MaxoutDiscriminator(cfg, image_shape)
    if image_shape[1:] != (32, 32):
        raise ValueError(
            f"dcgan-32 makes 32×32 images; the data's are {image_shape[1]}×{image_shape[2]}: "
            "shard them with shard-images --resolution 32"
        )
    return ConvGenerator(cfg, image_shape), ConvDiscriminator(cfg, image_shape)
