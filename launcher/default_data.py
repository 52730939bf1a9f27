"""The data a command uses when it is given none: shards made once, under ``runs/shards`` (or
``$DIST_TRAIN_SHARDS``), from the raw data that ``--data-root``, ``$WMT14_ROOT``/``$MNIST_ROOT`` or
``../shared/data`` holds. Every command that falls back on default data asks here."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from data_shards.errors import UserError
from data_shards.mnist import mnist_root, shard_mnist_split
from data_shards.shard_images import ShardImagesConfig, shard_images
from data_shards.shard_text import ShardTextConfig, shard_text
from data_shards.wmt14 import find_test_set, held_out_split, training_pairs, wmt14_root
from launcher.commands.common import say
from launcher.paths import shards_home, shared_data


def shard_once(name: str, job: str, what: str, make: Callable[[Path], object]) -> Path | None:
    """``runs/shards/<name>``, made by ``make(folder)`` the first time it is asked for (saying so, as
    ``job``); None when ``make`` made nothing (optional data the raw data lacks)."""
    out = shards_home() / name
    if not (out / "manifest.json").is_file():
        say(f"{job}: sharding {what} into {out} (once)")
        make(out)
    return out if (out / "manifest.json").is_file() else None


def wmt14_shards(
    data_root: Path | None, job: str, in_domain_dev: bool = False, with_dev: bool = True
) -> tuple[Path, Path | None]:
    """The discovered raw WMT'14 training corpora, and (``with_dev``) a dev set encoded with their
    vocabulary: newstest2013 (the paper's) when the raw data has it, or with ``in_domain_dev`` giga-fren's
    own val split (held out of training; the domain of most of the training sample's pairs)."""
    root = wmt14_root(data_root, dict(os.environ), shared_data())

    def train(out: Path) -> None:
        src, tgt = training_pairs(root)
        shard_text(ShardTextConfig(src=src, tgt=tgt, out=out, overwrite=True))

    train_dir = shard_once("wmt14-train", job, f"the WMT'14 training corpora in {root}", train)
    if not with_dev:
        return train_dir, None
    if in_domain_dev:
        return train_dir, dev_shards("giga-fren-val", held_out_split(root, "val"), train_dir, job)
    try:
        dev_src, dev_ref = find_test_set(root, 2013)
    except UserError:
        say(f"{job}: no newstest2013 under {root}, so no dev set")
        return train_dir, None
    return train_dir, dev_shards("wmt14-dev", (dev_src, dev_ref), train_dir, job)


def dev_shards(name: str, pair: tuple[Path, Path], train_dir: Path, job: str) -> Path:
    """Every sentence of the (source, reference) ``pair``, however long, with ``train_dir``'s vocabulary."""

    def make(out: Path) -> None:
        every_sentence = {"max_len": 1000, "max_len_ratio": 1000.0, "overwrite": True, "progress": False}
        shard_text(ShardTextConfig(src=pair[:1], tgt=pair[1:], out=out, vocab_from=train_dir, **every_sentence))

    return shard_once(name, job, f"the dev set {pair[0]}", make)


def mnist_shards(split: str, data_root: Path | None, job: str) -> Path:
    """MNIST's ``split``: train (the first 50,000 training images), valid (the other 10,000) or test."""
    root = mnist_root(data_root, dict(os.environ), shared_data())
    return shard_once(
        f"mnist-{split}",
        job,
        f"MNIST's {split} split from {root}",
        lambda out: shard_mnist_split(root, split, out, progress=False),
    )


def giga_fren_shards(data_root: Path, job: str) -> Path:
    """The 27k-pair giga-fren training sample (the peers' benchmark data)."""
    base = data_root / "wmt14-en-fr" / "train-giga-fren-head30000" / "original-split"

    def make(out: Path) -> None:
        shard_text(ShardTextConfig(src=(base / "train.en",), tgt=(base / "train.fr",), out=out, overwrite=True))

    return shard_once("giga-fren-train", job, str(base), make)


def cifar10_test_shards(data_root: Path, job: str) -> Path:
    """The CIFAR-10 JPEG test images."""
    tarball = data_root / "cifar10" / "cifar10-test-jpg.tar.gz"

    def make(out: Path) -> None:
        shard_images(ShardImagesConfig(input=(tarball,), out=out, overwrite=True))

    return shard_once("cifar10-test", job, "the CIFAR-10 test images", make)
