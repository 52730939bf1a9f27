"""Image inputs for shard-images: MNIST IDX, CSV pixel rows, ``<class>/<image>`` folders or tars, npz.

Each reader yields ``(image, label)`` with ``image`` a uint8 array (H, W) or (H, W, C), and
reports its class names. Formats are detected from the bytes and names, never from the test set.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from data_shards.errors import UserError
from data_shards.textio import open_bytes

IMAGE_FORMATS = ("auto", "mnist-idx", "csv", "folder", "npz")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(kw_only=True)
class ImageSource:
    """One input: a path, its format, and (for IDX) the labels file paired with it."""

    path: Path
    format: str
    labels: Path | None = None

    def classes(self) -> list[str] | None:
        """Class names for folder inputs; None where labels are integers already."""
        if self.format != "folder":
            return None
        return sorted({_class_of(name) for name in _folder_names(self.path)})

    def images(self, classes: list[str] | None) -> Iterator[tuple[np.ndarray, int]]:
        if self.format == "mnist-idx":
            yield from _idx_images(self.path, self.labels)
        elif self.format == "csv":
            yield from _csv_images(self.path)
        elif self.format == "npz":
            yield from _npz_images(self.path)
        else:
            index = {name: i for i, name in enumerate(classes)}
            for name, data in _folder_files(self.path):
                yield _decode(data, self.path, name), index[_class_of(name)]


# --- detection ------------------------------------------------------------------------------


def _is_idx(path: Path) -> bool:
    try:
        with open_bytes(path) as f:
            head = f.read(4)
    except (OSError, EOFError, UserError):
        return False
    return len(head) == 4 and head[:2] == b"\0\0" and head[2] in _IDX_DTYPES and 1 <= head[3] <= 4


def _is_archive(path: Path) -> bool:
    return path.is_file() and tarfile.is_tarfile(path)


def detect(paths: list[Path], fmt: str = "auto") -> list[ImageSource]:
    """Turn the ``--input`` paths into sources; IDX image files are paired with their labels."""
    for path in paths:
        if not path.exists():
            raise UserError(path, "no such file or folder")
    expanded = []
    for path in paths:
        if (
            path.is_dir()
            and fmt in ("auto", "mnist-idx")
            and any(_is_idx(p) for p in sorted(path.iterdir()) if p.is_file())
        ):
            expanded += [p for p in sorted(path.iterdir()) if p.is_file() and _is_idx(p)]
        else:
            expanded.append(path)
    sources = [ImageSource(path=p, format=fmt if fmt != "auto" else _detect_one(p)) for p in expanded]
    return _pair_idx(sources)


def _detect_one(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir() or _is_archive(path):
        return "folder"
    if name.endswith(".npz"):
        return "npz"
    if name.removesuffix(".gz").endswith(".csv"):
        return "csv"
    if _is_idx(path):
        return "mnist-idx"
    raise UserError(
        path, "unknown image format: expected MNIST IDX, .csv[.gz], .npz, a folder or a tar of <class>/<image>"
    )


def _idx_shape(path: Path) -> tuple[int, ...]:
    with open_bytes(path) as f:
        head = f.read(4)
        return tuple(int.from_bytes(f.read(4), "big") for _ in range(head[3]))


def _pair_idx(sources: list[ImageSource]) -> list[ImageSource]:
    idx = [s for s in sources if s.format == "mnist-idx"]
    label_files = {s.path for s in idx if len(_idx_shape(s.path)) == 1}
    paired = []
    for source in sources:
        if source.path in label_files:
            continue
        if source.format == "mnist-idx":
            source.labels = _labels_for(source.path, label_files)
        paired.append(source)
    for labels in label_files - {s.labels for s in paired}:
        raise UserError(labels, "an IDX labels file with no matching images file")
    return paired


def _labels_for(images: Path, given: set[Path]) -> Path:
    name = images.name.replace("images", "labels").replace("idx3", "idx1")
    candidate = images.with_name(name)
    if candidate in given or candidate.exists():
        return candidate
    raise UserError(images, f"no labels file next to it (looked for {name})")


# --- readers --------------------------------------------------------------------------------


def _read_idx(path: Path) -> np.ndarray:
    with open_bytes(path) as f:
        try:
            data = f.read()
        except (OSError, EOFError) as err:
            raise UserError(path, f"cannot read (corrupt or truncated?): {err}") from err
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(data[3]))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    start, needed = 4 + 4 * len(shape), math.prod(shape) * dtype.itemsize
    if len(data) - start != needed:
        raise UserError(path, f"IDX header says {shape} ({needed} bytes) but the file holds {len(data) - start}")
    return np.frombuffer(data, dtype=dtype, offset=start).reshape(shape)


def _idx_images(images_path: Path, labels_path: Path) -> Iterator[tuple[np.ndarray, int]]:
    images, labels = _read_idx(images_path), _read_idx(labels_path)
    if len(images) != len(labels):
        raise UserError(images_path, f"has {len(images)} images but {labels_path} has {len(labels)} labels")
    images = _as_uint8(images, images_path)
    for image, label in zip(images, labels):
        yield image, int(label)


def _csv_images(path: Path) -> Iterator[tuple[np.ndarray, int]]:
    with open_bytes(path) as raw:
        rows = csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        label_col, shape = None, None
        for number, row in enumerate(rows, start=1):
            if not row:
                continue
            if number == 1 and not (_numeric(row[0]) or _numeric(row[-1])):  # a header row
                names = [h.strip().lower() for h in row]
                label_col = next((i for i, h in enumerate(names) if h in ("label", "class", "y")), len(row) - 1)
                continue
            label_col = len(row) - 1 if label_col is None else label_col
            try:
                values = np.array([float(v) for i, v in enumerate(row) if i != label_col])
                label = int(float(row[label_col]))
            except ValueError as err:
                raise UserError(path, f"line {number}: not a number ({err})") from None
            shape = shape or _pixel_shape(len(values), path)
            if len(values) != math.prod(shape):
                raise UserError(path, f"line {number}: {len(values)} pixels, earlier rows had {math.prod(shape)}")
            yield _to_image(values, shape, f"{path}: line {number}"), label


def _numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _pixel_shape(num_pixels: int, path: Path) -> tuple[int, ...]:
    side = math.isqrt(num_pixels)
    if side * side == num_pixels:
        return (side, side)
    side = math.isqrt(num_pixels // 3)
    if 3 * side * side == num_pixels:
        return (3, side, side)  # channel-planar, as CIFAR's own files store RGB
    raise UserError(path, f"{num_pixels} pixels per row is neither a square grey image nor a square RGB one")


def _to_image(values: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    image = _as_uint8(values, where).reshape(shape)
    return image.transpose(1, 2, 0) if len(shape) == 3 else image


def _as_uint8(values: np.ndarray, path: Path | str | None) -> np.ndarray:
    """uint8 as is; floats in [0, 1] are scaled by 255 (rounded); anything else must fit 0..255."""
    if values.dtype == np.uint8:
        return values
    if values.dtype.kind == "f" and values.size and values.max() <= 1.0:
        values = np.rint(values * 255)
    if values.size and (values.min() < 0 or values.max() > 255):
        raise UserError(path, f"pixel values span {values.min()}..{values.max()}, expected 0..255 or 0..1")
    return values.astype(np.uint8)


def _npz_images(path: Path) -> Iterator[tuple[np.ndarray, int]]:
    try:
        arrays = dict(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as err:
        raise UserError(path, f"not a readable .npz: {err}") from err
    images_key = next((k for k in ("x", "images", "X", "x_train", "data") if k in arrays), None)
    images_key = images_key or next((k for k, a in arrays.items() if a.ndim >= 3), None)
    if images_key is None:
        raise UserError(path, f"no image array (ndim >= 3) among {sorted(arrays)}")
    images = arrays[images_key]
    labels_key = next((k for k in ("y", "labels", "Y", "y_train", "targets") if k in arrays), None)
    labels_key = labels_key or next((k for k, a in arrays.items() if a.ndim == 1 and len(a) == len(images)), None)
    if labels_key is None or len(arrays[labels_key]) != len(images):
        raise UserError(path, f"no labels array of length {len(images)} among {sorted(arrays)}")
    if images.ndim == 4 and images.shape[1] in (1, 3) and images.shape[3] not in (1, 3):
        images = images.transpose(0, 2, 3, 1)
    images = _as_uint8(images, path)
    for image, label in zip(images, arrays[labels_key]):
        yield (image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image), int(label)


def _class_of(name: str) -> str:
    parts = name.strip("/").split("/")
    return parts[-2] if len(parts) >= 2 else ""


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES and not Path(name).name.startswith(".")


def other_files(path: Path) -> Counter:
    """What a folder (or an archive) of images holds that is not an image, by suffix: left out, and said."""
    if path.is_dir():
        names = [str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()]
    else:
        with tarfile.open(path) as tar:
            names = [m.name for m in tar if m.isfile()]
    return Counter(Path(n).suffix.lower() or Path(n).name for n in names if not _is_image_name(n))


def _folder_names(path: Path) -> Iterator[str]:
    if path.is_dir():
        yield from (str(p.relative_to(path)) for p in sorted(path.rglob("*")) if p.is_file() and _is_image_name(p.name))
    else:
        with tarfile.open(path) as tar:
            yield from (m.name for m in tar if m.isfile() and _is_image_name(m.name))


def _folder_files(path: Path) -> Iterator[tuple[str, bytes]]:
    """A folder in sorted path order; an archive in its own order (it is streamed, not sought)."""
    if path.is_dir():
        for name in _folder_names(path):
            yield name, (path / name).read_bytes()
        return
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                if member.isfile() and _is_image_name(member.name):
                    yield member.name, tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, OSError) as err:
        raise UserError(path, f"cannot read archive (corrupt or truncated?): {err}") from err


def _decode(data: bytes, path: Path, name: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode not in ("L", "RGB"):
                image = image.convert("RGB")
            return np.asarray(image)
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(path, f"{name}: not a readable image ({err})") from None
