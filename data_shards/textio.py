"""Reading parallel text: plain lines, gzip, WMT SGM and TSV, detected from the bytes.

Everything streams: a file is never held in memory. Lines are split on ``\\n`` only (never on
Unicode line separators, which do occur inside WMT sentences) and decoded as strict UTF-8, so a
bad byte is reported with its file and line number.
"""

from __future__ import annotations

import gzip
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from data_shards.errors import UserError

FORMATS = ("auto", "plain", "sgm", "tsv")
_SGM_START = re.compile(rb"^\s*<(srcset|refset|tstset|doc|seg)\b", re.IGNORECASE)
_SEG = re.compile(r"<seg\b[^>]*>(.*)</seg>", re.IGNORECASE)
_XML_ENTITIES = {"&lt;": "<", "&gt;": ">", "&quot;": '"', "&apos;": "'", "&amp;": "&"}
_ENTITY = re.compile("|".join(map(re.escape, _XML_ENTITIES)))
_SPACE = re.compile(r"\s+")


def open_bytes(path: Path):
    """Open a file for binary reading, transparently un-gzipping it (detected by magic bytes)."""
    if not path.exists():
        raise UserError(path, "no such file")
    if path.is_dir():
        raise UserError(path, "is a directory, expected a text file")
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def detect_format(path: Path) -> str:
    """``sgm`` when the first non-blank line is an SGM tag, ``tsv`` for ``*.tsv[.gz]``, else plain."""
    name = path.name.removesuffix(".gz")
    if name.endswith(".tsv"):
        return "tsv"
    with open_bytes(path) as f:
        try:
            for raw in f:
                if raw.strip():
                    return "sgm" if _SGM_START.match(raw) else "plain"
        except (OSError, EOFError) as err:
            raise UserError(path, f"cannot read: {err}") from err
    return "plain"


def normalize(text: str) -> str:
    """NFC; every run of whitespace or control characters becomes one space; stripped."""
    text = unicodedata.normalize("NFC", text)
    if not text.isprintable():
        text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)
    return _SPACE.sub(" ", text).strip()


def _decoded_lines(path: Path) -> Iterator[tuple[int, str]]:
    with open_bytes(path) as f:
        try:
            for number, raw in enumerate(f, start=1):
                try:
                    yield number, raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as err:
                    raise UserError(
                        path, f"line {number}: bytes are not UTF-8 ({err.reason} at byte {err.start})"
                    ) from None
        except (OSError, EOFError) as err:
            raise UserError(path, f"cannot read (corrupt or truncated?): {err}") from err


def _sgm_segments(path: Path) -> Iterator[str]:
    for number, line in _decoded_lines(path):
        if "<seg" not in line.lower():
            continue
        match = _SEG.search(line)
        if match is None:
            raise UserError(path, f"line {number}: <seg> without </seg> on the same line")
        yield _ENTITY.sub(lambda m: _XML_ENTITIES[m.group(0)], match.group(1))


@dataclass(frozen=True, kw_only=True)
class TextSource:
    """One input file and how to read it. ``column`` picks a TSV column (else it is unused)."""

    path: Path
    format: str
    column: int = 0

    def records(self) -> Iterator[str]:
        """The file's sentences in order, unnormalized."""
        if self.format == "sgm":
            yield from _sgm_segments(self.path)
        elif self.format == "tsv":
            for number, line in _decoded_lines(self.path):
                fields = line.split("\t")
                if len(fields) <= self.column:
                    raise UserError(
                        self.path, f"line {number}: {len(fields)} tab-separated column(s), need column {self.column}"
                    )
                yield fields[self.column]
        else:
            for _, line in _decoded_lines(self.path):
                yield line

    def count(self) -> int:
        """Number of records, read quickly (no decoding) for plain and TSV files."""
        if self.format == "sgm":
            return sum(1 for _ in _sgm_segments(self.path))
        lines, last = 0, b"\n"
        with open_bytes(self.path) as f:
            try:
                while chunk := f.read(1 << 22):
                    lines += chunk.count(b"\n")
                    last = chunk[-1:]
            except (OSError, EOFError) as err:
                raise UserError(self.path, f"cannot read (corrupt or truncated?): {err}") from err
        return lines + (last != b"\n")


def language_of(path: Path) -> str | None:
    """The language code in a file name such as ``train.en``, ``newstest2014-src.fr.sgm.gz``."""
    parts = path.name.split(".")
    for part in reversed(parts[1:]):
        if part.lower() in ("gz", "sgm", "sgml", "txt", "tsv", "xml"):
            continue
        return part.lower() if re.fullmatch(r"[a-zA-Z]{2,3}", part) else None
    return None


@dataclass(frozen=True, kw_only=True)
class ParallelInput:
    """A source file and its aligned target file (possibly the same TSV file, two columns)."""

    src: TextSource
    tgt: TextSource

    def check_aligned(self) -> int:
        """Both sides' record count; a clear error naming both counts when they differ."""
        num_src = self.src.count()
        num_tgt = num_src if self.src.path == self.tgt.path else self.tgt.count()
        if num_src != num_tgt:
            raise UserError(
                self.src.path,
                f"has {num_src} sentences but its target {self.tgt.path} has {num_tgt}: parallel files must align",
            )
        return num_src

    def pairs(self) -> Iterator[tuple[str, str]]:
        yield from zip(self.src.records(), self.tgt.records(), strict=True)


def parallel_inputs(
    src: list[Path], tgt: list[Path] | None, tsv_columns: tuple[int, int] = (0, 1)
) -> list[ParallelInput]:
    """Pair ``--src`` with ``--tgt`` files by position; TSV files pair with themselves."""
    for path in [*src, *(tgt or [])]:
        if not path.exists():
            raise UserError(path, "no such file")
    if tgt and len(src) != len(tgt):
        raise UserError(None, f"{len(src)} --src file(s) but {len(tgt)} --tgt file(s): give one target per source")
    inputs = []
    for i, src_path in enumerate(src):
        src_format = detect_format(src_path)
        if not tgt:
            if src_format != "tsv":
                raise UserError(src_path, "no --tgt given, so this must be a TSV file (source<TAB>target, named *.tsv)")
            inputs.append(
                ParallelInput(
                    src=TextSource(path=src_path, format="tsv", column=tsv_columns[0]),
                    tgt=TextSource(path=src_path, format="tsv", column=tsv_columns[1]),
                )
            )
        else:
            inputs.append(
                ParallelInput(
                    src=TextSource(path=src_path, format=src_format),
                    tgt=TextSource(path=tgt[i], format=detect_format(tgt[i])),
                )
            )
    return inputs
