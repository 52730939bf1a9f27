"""``evaluate-gan``: the paper's Parzen log-likelihood, FCD and class coverage of a GAN checkpoint."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from dist_train.checkpoint import newest_in
from dist_train.gan_metrics import class_coverage, frechet_distance, nearest, parzen_score
from dist_train.inference import load_model
from dist_train.models.gan import GanModelConfig, sample_noise
from dist_train.trainers.classifier import ClassifierConfig, images_of, load_classifier, pixels
from dist_train.trainers.gan.samples import image_grid, save_png, to_uint8
from launcher.commands.common import add_threads_flag, print_summary, record_evaluation, say, use_threads
from launcher.commands.train_classifier import DEFAULT_PATH, ensure_classifier
from launcher.commands.translate import add_device_flag, inference_device
from launcher.default_data import mnist_shards

NAME = "evaluate-gan"
MNIST_SHAPE = (1, 28, 28)


def add_parser(jobs) -> None:
    p = jobs.add_parser(
        NAME,
        help="Parzen log-likelihood (the paper's), FCD and class coverage of a GAN; prints one JSON line",
        description="Draw --num-samples images from a gan checkpoint's generator (its EMA if it has one), "
        "fit the paper's Parzen window to them with sigma chosen on the validation images from the "
        "released grid (10 values, 0.1 to 1), and report the test images' mean log-likelihood ± standard "
        "error. For 28×28 grey images also the Fréchet distance between the test images' and the samples' "
        "features of the project's own MNIST classifier (trained first if --classifier is missing) and "
        "the fraction of classes the samples cover. Saves a grid of the first 100 samples.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint, or a run directory (its newest)")
    p.add_argument("--num-samples", type=int, default=10_000, help="generated images (the paper: 10,000)")
    p.add_argument("--valid", type=Path, default=None, metavar="SHARD_DIR", help="default: MNIST's valid split")
    p.add_argument("--test", type=Path, default=None, metavar="SHARD_DIR", help="default: MNIST's test split")
    p.add_argument(
        "--data-root", type=Path, default=None, help="raw MNIST (else $MNIST_ROOT, else ../shared/data/mnist)"
    )
    p.add_argument("--classifier", type=Path, default=DEFAULT_PATH, help="for FCD and class coverage")
    p.add_argument("--no-ema", action="store_true", help="sample from the trained generator, not its EMA")
    p.add_argument("--grid", type=Path, default=None, help="default: <run dir>/samples/evaluate.png")
    p.add_argument(
        "--train",
        type=Path,
        default=None,
        metavar="SHARD_DIR",
        help="training images for the nearest-neighbour figure (the paper's Figure 2: each row's last column is "
        "the training image nearest the sample beside it); default: MNIST's train split for MNIST-sized samples",
    )
    p.add_argument("--seed", type=int, default=0)
    add_device_flag(p)
    add_threads_flag(p)
    p.set_defaults(run=run, parser=p)


@torch.no_grad()
def generate(
    checkpoint: Path, num: int, seed: int, use_ema: bool, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, GanModelConfig]:
    """``num`` samples (num, channels, height, width) in [0, 1] from a gan checkpoint's generator, made on
    ``device``. The noise is drawn on the host, so a seed gives the same samples on any device."""
    loaded = load_model(checkpoint, "gan", "evaluate-gan", device, ema=use_ema)
    cfg = GanModelConfig(**loaded.checkpoint.model_config)
    noise = torch.Generator().manual_seed(seed)
    low, high = cfg.pixel_range
    batches = [loaded.model(sample_noise(cfg, min(1000, num - i), noise, device)) for i in range(0, num, 1000)]
    return (torch.cat(batches) - low) / (high - low), cfg


def classifier_figures(args, samples: torch.Tensor, test_images: torch.Tensor) -> dict:
    """FCD, class coverage and the classifier's accuracy, computed on the samples' device."""
    _, accuracy = ensure_classifier(args.classifier, ClassifierConfig(), None, None, args.data_root, progress=True)
    classifier = load_classifier(args.classifier)[0].to(samples.device)
    with torch.no_grad():
        test_features = torch.cat([classifier.features(pixels(x.to(samples.device))) for x in test_images.split(1000)])
        sample_features = torch.cat([classifier.features(x) for x in samples.split(1000)])
        predicted = torch.cat([classifier.output(f) for f in sample_features.split(1000)]).argmax(1)
    return {
        "fcd": round(frechet_distance(test_features, sample_features), 4),
        "class_coverage": class_coverage(predicted, 10),
        "classifier_test_accuracy": round(accuracy, 4),
    }


YELLOW = (255, 210, 0)


def nearest_figure(samples: torch.Tensor, train_images: torch.Tensor, rows: int = 6, columns: int = 5) -> np.ndarray:
    """The paper's Figure 2: ``rows`` rows of ``columns`` samples, each row ending with the training
    image nearest its last sample, that column outlined in yellow (RGB). Made on the host."""
    shown = samples[: rows * columns].cpu()
    last = shown[columns - 1 :: columns]
    closest = pixels(train_images[nearest(last, pixels(train_images))])
    tiles = torch.cat([shown.view(rows, columns, *shown.shape[1:]), closest[:, None]], dim=1).flatten(0, 1)
    grid = image_grid(to_uint8(tiles, (0.0, 1.0)), columns=columns + 1)
    return outline_last_column(grid, tile=tiles.shape[-1] + 1, rows=rows)


def outline_last_column(grid: np.ndarray, tile: int, rows: int) -> np.ndarray:
    """``grid`` (from image_grid, 1-pixel borders, tiles ``tile`` apart) in RGB with the borders of its
    last column yellow."""
    rgb = np.repeat(grid, 3, axis=2) if grid.shape[-1] == 1 else grid.copy()
    left, right = rgb.shape[1] - 1 - tile, rgb.shape[1] - 1
    rgb[:, [left, right]] = YELLOW
    rgb[np.arange(rows + 1) * tile, left : right + 1] = YELLOW
    return rgb


def nearest_path(grid: Path) -> Path:
    return grid.with_name(f"{grid.stem}-nearest{grid.suffix}")


def run(args: argparse.Namespace) -> int:
    if args.num_samples < 2:
        args.parser.error("--num-samples must be at least 2")
    use_threads(args)
    started = time.monotonic()
    device = inference_device(args.device)
    checkpoint = newest_in(args.checkpoint)
    samples, cfg = generate(checkpoint, args.num_samples, args.seed, not args.no_ema, device)
    valid_images, _ = images_of(args.valid or mnist_shards("valid", args.data_root, NAME))
    test_images, _ = images_of(args.test or mnist_shards("test", args.data_root, NAME))
    if tuple(valid_images.shape[1:]) != tuple(samples.shape[1:]):
        args.parser.error(
            f"the generator makes {tuple(samples.shape[1:])} images, the data are {tuple(valid_images.shape[1:])}"
        )
    say(f"{NAME}: Parzen window on {len(samples)} samples, {len(valid_images)} valid, {len(test_images)} test images")
    valid, test = (pixels(images.to(device)) for images in (valid_images, test_images))  # moved as uint8
    figures = parzen_score(samples, valid, test)
    if tuple(samples.shape[1:]) == MNIST_SHAPE:
        figures.update(classifier_figures(args, samples, test_images))
    grid_path = args.grid or checkpoint.parent.parent / "samples" / "evaluate.png"
    save_png(image_grid(to_uint8(samples[:100], (0.0, 1.0))), grid_path)
    train = args.train or (
        mnist_shards("train", args.data_root, NAME) if tuple(samples.shape[1:]) == MNIST_SHAPE else None
    )
    if train is not None:
        figures["nearest_grid"] = str(save_png(nearest_figure(samples, images_of(train)[0]), nearest_path(grid_path)))
    summary = {
        "job": NAME,
        "checkpoint": str(checkpoint),
        "arch": cfg.arch,
        "num_samples": len(samples),
        "device": str(device),
        **{k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()},
        "grid": str(grid_path),
        "seconds": round(time.monotonic() - started, 1),
    }
    print_summary(summary)
    record_evaluation(checkpoint, summary)
    return 0
