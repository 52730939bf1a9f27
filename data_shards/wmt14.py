"""Where WMT'14 English–French lives on this machine, and which of its files are which.

Lookup order for the raw corpora: ``--data-root``, ``$WMT14_ROOT``, ``../shared/data/wmt14-en-fr``.
Training pairs are every ``NAME.en[.gz]`` with a ``NAME.fr[.gz]`` beside it, except the dev and
test sets (newstest2012/2013 and newstest2014, the paper's) and held-out ``test``/``val`` splits.
"""

from __future__ import annotations

import re
from pathlib import Path

from data_shards.errors import UserError

HELD_OUT = re.compile(r"newstest201[234]|(^|/)(test|val|valid|dev)\.[a-z]{2}(\.gz)?$")
WHERE_FROM = (
    "WMT'14 English-French was not found. Give --data SHARD_DIR (from shard-text), or the raw corpora with "
    "--data-root DIR or $WMT14_ROOT, or download them with 'python -m launcher.main prepare-wmt14'"
)


def wmt14_root(explicit: Path | None, environ: dict, shared_data: Path) -> Path:
    candidates = [
        explicit,
        Path(environ["WMT14_ROOT"]) if environ.get("WMT14_ROOT") else None,
        shared_data / "wmt14-en-fr",
    ]
    for candidate in candidates:
        if candidate is not None:
            if candidate.is_dir():
                return candidate
            if candidate is explicit:
                raise UserError(candidate, "--data-root is not a folder")
    raise UserError(None, WHERE_FROM)


def _partner(path: Path, lang: str) -> Path | None:
    name = path.name
    gz = name.endswith(".gz")
    stem = name.removesuffix(".gz").removesuffix(".en")
    for candidate in (f"{stem}.{lang}", f"{stem}.{lang}.gz") if not gz else (f"{stem}.{lang}.gz", f"{stem}.{lang}"):
        if (path.parent / candidate).is_file():
            return path.parent / candidate
    return None


def training_pairs(root: Path) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """(English files, French files) of the training corpora under ``root``, in sorted order."""
    sources, targets = [], []
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if not path.is_file() or not re.search(r"\.en(\.gz)?$", path.name) or HELD_OUT.search(relative):
            continue
        partner = _partner(path, "fr")
        if partner is not None:
            sources.append(path)
            targets.append(partner)
    if not sources:
        raise UserError(root, "holds no NAME.en / NAME.fr training pairs")
    return tuple(sources), tuple(targets)


def find_test_set(root: Path, year: int = 2014) -> tuple[Path, Path]:
    """newstest<year> (SGM preferred, as WMT distributes it; else plain) as (source, reference)."""
    found = sorted(root.rglob(f"newstest{year}*"))
    for src_pattern, ref_pattern in ((r"src\.en\.sgm$", r"ref\.fr\.sgm$"), (r"\.en$", r"\.fr$")):
        src = [p for p in found if re.search(src_pattern, p.name)]
        ref = [p for p in found if re.search(ref_pattern, p.name)]
        if src and ref:
            return src[0], ref[0]
    raise UserError(root, f"holds no newstest{year} English-French test set")


def held_out_split(root: Path, split: str) -> tuple[Path, Path]:
    """The ``split`` (val or test) that a training corpus under ``root`` ships beside its own training part
    (giga-fren's sample: ``original-split/{train,val,test}.{en,fr}``), as (source, reference): sentences of
    the training data's own domain that training never reads (``HELD_OUT``)."""
    for src in sorted(root.rglob(f"{split}.en")):
        ref = _partner(src, "fr")
        if ref is not None and (src.parent / "train.en").is_file():
            return src, ref
    raise UserError(root, f"holds no {split}.en / {split}.fr beside a train.en / train.fr corpus")
