"""shard-images on real MNIST (IDX and CSV) and CIFAR-10 JPEGs (tar and folder), and npz."""

from __future__ import annotations

import csv
import gzip
import hashlib
import tarfile
from collections import Counter

import numpy as np
import pytest

from data_shards import ShardImagesConfig, ShardSet, shard_images
from data_shards.batches import decode_image
from data_shards.errors import UserError


def shard(out, *inputs, **kw):
    return shard_images(ShardImagesConfig(input=tuple(inputs), out=out, progress=False, **kw))


def decoded(folder):
    shards = ShardSet(folder)
    samples = [s for i in range(len(shards.shards)) for s in shards.load(i)]
    return [decode_image(s["png"]) for s in samples], [int(bytes(s["cls"])) for s in samples]


def idx_array(path):
    data = gzip.open(path).read()
    return np.frombuffer(data, np.uint8, offset=4 + 4 * data[3])


def test_mnist_idx_pixels_and_labels_survive_exactly(mnist_test_shards, data_root):
    images, labels = decoded(mnist_test_shards)
    expected = idx_array(data_root / "mnist" / "t10k-images-idx3-ubyte.gz").reshape(-1, 28, 28)
    assert len(images) == 10_000 and np.array_equal(np.stack(images)[..., 0], expected)
    assert labels == idx_array(data_root / "mnist" / "t10k-labels-idx1-ubyte.gz").tolist()
    assert len(list(mnist_test_shards.glob("*.tar"))) == 4


def test_csv_rows_of_pixels_then_label(tmp_path, data_root):
    path = data_root / "mnist-5k" / "mnist_5k.csv.gz"
    manifest = shard(tmp_path / "s", path)
    rows = list(csv.reader(gzip.open(path, "rt")))
    images, labels = decoded(tmp_path / "s")
    assert manifest["num_samples"] == 5000 and manifest["image_shape"] == [28, 28]
    assert Counter(labels) == {c: 500 for c in range(10)}
    assert [int(r[-1]) for r in rows] == labels
    assert np.array_equal(images[123][..., 0].ravel(), np.array(rows[123][:-1], dtype=np.uint8))


@pytest.mark.slow
def test_cifar_jpeg_tar_of_class_folders(tmp_path, data_root):
    manifest = shard(tmp_path / "s", data_root / "cifar10" / "cifar10-test-jpg.tar.gz", shard_size=4000)
    assert manifest["classes"] == [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    assert manifest["image_shape"] == [32, 32, 3] and [s["num_samples"] for s in manifest["shards"]] == [
        4000,
        4000,
        2000,
    ]
    _, labels = decoded(tmp_path / "s")
    assert Counter(labels) == {c: 1000 for c in range(10)}


def test_image_folder_and_npz(tmp_path, data_root):
    with tarfile.open(data_root / "cifar10" / "cifar10-test-jpg.tar.gz") as tar:
        members = [m for m in tar if m.isfile() and m.name.split("/")[-1] in ("0000.jpg", "0001.jpg")]
        tar.extractall(tmp_path / "folder", members=members, filter="data")
    manifest = shard(tmp_path / "from-folder", tmp_path / "folder" / "test")
    assert manifest["num_samples"] == 20 and len(manifest["classes"]) == 10
    assert decoded(tmp_path / "from-folder")[1] == [c for c in range(10) for _ in range(2)]

    rows = list(csv.reader(gzip.open(data_root / "mnist-5k" / "mnist_5k.csv.gz", "rt")))[:300]
    pixels = np.array([r[:-1] for r in rows], dtype=np.float32).reshape(-1, 28, 28) / 255.0
    np.savez(tmp_path / "mnist.npz", x=pixels, y=np.array([int(r[-1]) for r in rows]))
    shard(tmp_path / "from-npz", tmp_path / "mnist.npz")
    images, labels = decoded(tmp_path / "from-npz")
    assert np.array_equal(np.stack(images)[..., 0], np.rint(pixels * 255).astype(np.uint8))
    assert labels == [int(r[-1]) for r in rows]


@pytest.mark.slow
def test_image_shards_are_deterministic(tmp_path, data_root):
    path = data_root / "mnist-5k" / "mnist_5k.csv.gz"
    a, b = shard(tmp_path / "a", path), shard(tmp_path / "b", path)
    assert a["shards"] == b["shards"]
    assert (
        hashlib.sha256((tmp_path / "a" / "manifest.json").read_bytes()).digest()
        == hashlib.sha256((tmp_path / "b" / "manifest.json").read_bytes()).digest()
    )


def test_mixed_sizes_and_modes_become_one_shape_with_resolution_and_colour(tmp_path):
    """A held-out photo folder: sizes and modes differ; --resolution centre-crops and resizes,
    --colour makes one mode, so the gan job gets one image shape."""
    from PIL import Image

    from dist_train.trainers.gan.data import image_shape

    for cls, size, mode in (("cats", (60, 40), "RGB"), ("cats", (40, 40), "L"), ("dogs", (48, 80), "RGBA")):
        (tmp_path / "in" / cls).mkdir(parents=True, exist_ok=True)
        picture = Image.new(mode, size, 0)  # black, with a white centre square of the short side
        side = min(size)
        left, top = (size[0] - side) // 2, (size[1] - side) // 2
        picture.paste(Image.new(mode, (side, side), 255 if mode == "L" else (255,) * len(mode)), (left, top))
        picture.save(tmp_path / "in" / cls / f"{size[0]}x{size[1]}.png")
    kept = shard(tmp_path / "kept", tmp_path / "in")
    assert kept["image_shape"] is None
    with pytest.raises(UserError, match=r"kept: the gan job needs images of one shape.*shard-images --resolution N"):
        image_shape(kept, tmp_path / "kept")
    made = shard(tmp_path / "made", tmp_path / "in", resolution=8, colour="rgb")
    assert made["image_shape"] == [8, 8, 3] and image_shape(made) == (3, 8, 8)
    assert made["transform"] == {"resolution": 8, "colour": "rgb"}
    images, labels = decoded(tmp_path / "made")
    assert sorted(labels) == [0, 0, 1] and all(im.shape == (8, 8, 3) and im.min() >= 250 for im in images)
