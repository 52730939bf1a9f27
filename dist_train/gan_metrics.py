"""Offline GAN scores that need no downloaded weights: the paper's Parzen-window log-likelihood, a
Fréchet distance on our own classifier's features (FCD), and class coverage.

Parzen (Goodfellow et al. 2014, §5, after Breuleux et al. 2011): fit an isotropic Gaussian kernel
density to generated samples, pick σ by the mean log-likelihood of validation images over a log
grid, report the test images' mean log-likelihood and its standard error. Distances come from one
matmul per batch of images, reused for every σ of the grid. Everything is computed on the samples'
device (images are moved there batch by batch); only the figures returned come back to the host.
"""

from __future__ import annotations

import math

import torch

PAPER_SIGMAS = torch.logspace(-1, 0, 10).tolist()  # the released parzen_ll.py's grid: 0.1 … 1, 10 values


def squared_distances(images: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """(images, samples) ‖x − s‖², from (n, d) and (m, d), accumulated in float64 on the samples' device."""
    images, samples = images.to(samples.device, non_blocking=True).double(), samples.double()
    return ((images**2).sum(1, keepdim=True) + (samples**2).sum(1) - 2 * images @ samples.T).clamp_min(0)


def nearest(samples: torch.Tensor, images: torch.Tensor, batch: int = 10_000) -> torch.Tensor:
    """For each sample, the index of the nearest image (Euclidean, on flattened pixels): the paper's
    Figure 2 shows it beside the samples, to show they are not memorised training images."""
    samples = samples.flatten(1)
    best = torch.full((len(samples),), float("inf"), dtype=torch.float64, device=samples.device)
    index = torch.zeros(len(samples), dtype=torch.long, device=samples.device)
    for start in range(0, len(images), batch):
        distances = squared_distances(images[start : start + batch].flatten(1), samples)
        closest, where = distances.min(0)
        better = closest < best  # torch.where, not a boolean index: that would wait for the device
        best, index = torch.where(better, closest, best), torch.where(better, where + start, index)
    return index


def parzen_log_likelihoods(
    images: torch.Tensor, samples: torch.Tensor, sigmas: list[float], batch_size: int = 200
) -> torch.Tensor:
    """(len(sigmas), n) log p_σ(x) of each image under the Gaussian kernel density on ``samples``:
    log Σ_i exp(−‖x − s_i‖² / 2σ²) − log m − (d/2) log(2πσ²)."""
    num_samples, dim = samples.shape
    sigma = torch.tensor(sigmas, dtype=torch.float64, device=samples.device).view(-1, 1, 1)
    out = []
    for start in range(0, len(images), batch_size):
        distances = squared_distances(images[start : start + batch_size], samples)  # (batch, m)
        kernel = torch.logsumexp(-distances.unsqueeze(0) / (2 * sigma**2), dim=2)  # (sigmas, batch)
        out.append(kernel - math.log(num_samples) - dim / 2 * torch.log(2 * math.pi * sigma[:, :, 0] ** 2))
    return torch.cat(out, dim=1)


def parzen_score(
    samples: torch.Tensor, valid: torch.Tensor, test: torch.Tensor, sigmas: list[float] = PAPER_SIGMAS
) -> dict[str, float]:
    """σ chosen on ``valid``, then the mean log-likelihood of ``test`` ± its standard error."""
    valid_ll = parzen_log_likelihoods(valid.flatten(1), samples.flatten(1), sigmas).mean(dim=1)
    best = int(valid_ll.argmax())
    test_ll = parzen_log_likelihoods(test.flatten(1), samples.flatten(1), [sigmas[best]])[0]
    return {
        "parzen_ll": float(test_ll.mean()),
        "parzen_se": float(test_ll.std() / math.sqrt(len(test_ll))),
        "parzen_sigma": sigmas[best],
        "parzen_valid_ll": float(valid_ll[best]),
    }


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """‖μa − μb‖² + Tr(Ca + Cb − 2 (Ca Cb)^½) between Gaussians fitted to two (n, d) feature sets.

    Tr (Ca Cb)^½ = Σ √λ(Ca^½ Cb Ca^½): a symmetric positive semi-definite eigenproblem, in float64."""
    a, b = features_a.double(), features_b.double()
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    return float(((mean_a - mean_b) ** 2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross)


def class_coverage(predicted: torch.Tensor, num_classes: int, share: float = 0.1) -> float:
    """The fraction of classes that get at least ``share`` of a uniform share of the samples (10%
    of n / classes by default): 1.0 when every class is generated, lower under mode collapse."""
    counts = torch.bincount(predicted, minlength=num_classes)
    return int((counts >= share * len(predicted) / num_classes).sum()) / num_classes
