"""``train-classifier``: the MNIST classifier whose features FCD and class coverage use."""

from __future__ import annotations

import argparse
from pathlib import Path

from dist_train.checkpoint import read_checkpoint
from dist_train.trainers.classifier import ClassifierConfig, save_classifier, train_classifier
from launcher.commands.common import add_threads_flag, make_config, print_summary, say, use_threads
from launcher.default_data import mnist_shards
from launcher.paths import PROJECT_ROOT

NAME = "train-classifier"
DEFAULT_PATH = PROJECT_ROOT / "runs" / "mnist-classifier" / "classifier.pt"


def add_parser(jobs) -> None:
    p = jobs.add_parser(
        NAME,
        help="train the MNIST classifier that evaluate-gan's FCD and class coverage use",
        description="Train a small convolutional MNIST classifier (Adam, on all 60,000 training images) and "
        "save it with its test accuracy; evaluate-gan reads its 128-d features (FCD) and predictions "
        "(class coverage), so GAN scores need no downloaded weights.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=DEFAULT_PATH, help="where the classifier is saved")
    p.add_argument(
        "--train",
        type=Path,
        nargs="+",
        default=None,
        metavar="SHARD_DIR",
        help="training image shards; default: MNIST's train and valid splits (60,000 images)",
    )
    p.add_argument("--test", type=Path, default=None, metavar="SHARD_DIR", help="default: MNIST's test split")
    p.add_argument(
        "--data-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="raw MNIST (else $MNIST_ROOT, else ../shared/data/mnist)",
    )
    defaults = ClassifierConfig()
    p.add_argument("--epochs", type=int, default=defaults.num_epochs)
    p.add_argument("--lr-decay", type=float, default=defaults.lr_decay, help="Adam's rate (1e-3) × this each epoch")
    p.add_argument("--max-shift", type=int, default=defaults.max_shift, help="augmentation: random shifts of N pixels")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    add_threads_flag(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=run, parser=p)


def run(args: argparse.Namespace) -> int:
    cfg = make_config(
        args.parser,
        ClassifierConfig,
        num_epochs=args.epochs,
        batch_size=args.batch_size,
        lr_decay=args.lr_decay,
        max_shift=args.max_shift,
    )
    use_threads(args)
    path, accuracy = ensure_classifier(
        args.out, cfg, args.train, args.test, args.data_root, not args.no_progress, retrain=True
    )
    print_summary({"job": NAME, "classifier": str(path), "test_accuracy": round(accuracy, 4)})
    return 0


def ensure_classifier(
    path: Path,
    cfg: ClassifierConfig,
    train: list[Path] | None,
    test: Path | None,
    data_root: Path | None,
    progress: bool,
    retrain: bool = False,
) -> tuple[Path, float]:
    """The classifier at ``path``, trained there first if it is missing (or ``retrain``)."""
    if path.is_file() and not retrain:
        return path, read_checkpoint(path, "classifier", "scoring generated digits").test_accuracy
    train = train or [mnist_shards("train", data_root, NAME), mnist_shards("valid", data_root, NAME)]
    test = test or mnist_shards("test", data_root, NAME)
    say(f"{NAME}: {cfg.num_epochs} epoch(s) on {', '.join(map(str, train))}")
    model, accuracy = train_classifier(cfg, train, test, progress=progress)
    say(f"{NAME}: test accuracy {accuracy:.4f}, saved to {path}")
    return save_classifier(model, accuracy, path), accuracy
