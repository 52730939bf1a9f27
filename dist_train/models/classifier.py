"""A small MNIST classifier (the pytorch/examples network): what FCD and class coverage read.

Its 128-d penultimate activations are the features of the Fréchet distance; its predictions give
class coverage. The project trains it itself (``launcher.main train-classifier``), so GAN scores
need no downloaded weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MnistClassifier(nn.Module):
    """28×28 grey images in [0, 1] → 10 class logits; ``features`` gives the 128-d layer before them."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.hidden = nn.Linear(64 * 12 * 12, 128)
        self.output = nn.Linear(128, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(images))))  # (batch, 64, 24, 24)
        x = F.dropout(F.max_pool2d(x, 2).flatten(1), 0.25, self.training)
        return F.relu(self.hidden(x))  # (batch, 128)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.output(F.dropout(self.features(images), 0.5, self.training))
