"""prepare-wmt14: fetch the WMT'14 English–French corpora, verified and resumable, then unpack them.

Every archive is checked against a published checksum (sha256 from TensorFlow Datasets'
``url_checksums``, md5 from sacreBLEU's test-set table). A download is written to ``NAME.part``
and resumed from its size (HTTP Range, or a seek for ``file://`` mirrors) when interrupted; it is
renamed into place only once its size and checksum are right.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from tqdm import tqdm

from data_shards.errors import UserError

CHUNK = 1 << 20


@dataclass(frozen=True, kw_only=True)
class Remote:
    corpus: str  # the name users select with --corpora
    url: str
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    members: str = ""  # a regex: the archive members to unpack (the English–French files only)

    @property
    def site_path(self) -> str:
        """The archive's path on its site (``wmt13/test.tgz``): its path under a ``--mirror`` too."""
        return urlparse(self.url).path.lstrip("/")

    @property
    def filename(self) -> str:
        """The local name: two WMT years both publish a ``test.tgz``."""
        return f"{self.corpus}-{self.url.rsplit('/', 1)[1]}"


# The paper's training corpora (WMT'14 en-fr: the 12M-pair selection was drawn from these), its
# dev set newstest2012 + newstest2013, and its test set newstest2014 (the full release).
WMT14_EN_FR = (
    Remote(
        corpus="europarl-v7",
        url="http://www.statmt.org/wmt13/training-parallel-europarl-v7.tgz",
        size=657_632_379,
        sha256="0224c7c710c8a063dfd893b0cc0830202d61f4c75c17eb8e31836103d27d96e7",
        members=r"europarl-v7\.fr-en\.(en|fr)$",
    ),
    Remote(
        corpus="commoncrawl",
        url="http://www.statmt.org/wmt13/training-parallel-commoncrawl.tgz",
        size=918_311_367,
        sha256="c7a74e2ea01ac6c920123108627e35278d4ccb5701e15428ffa34de86fa3a9e5",
        members=r"commoncrawl\.fr-en\.(en|fr)$",
    ),
    Remote(
        corpus="un",
        url="http://www.statmt.org/wmt13/training-parallel-un.tgz",
        size=2_365_634_246,
        sha256="29141b5c1eba149a94f7a59d3b1a834b2e47fe0f8758d68dcd77a3d3f497ee47",
        members=r"undoc\.2000\.fr-en\.(en|fr)$",
    ),
    Remote(
        corpus="news-commentary-v9",
        url="http://www.statmt.org/wmt14/training-parallel-nc-v9.tgz",
        size=80_418_416,
        sha256="cb8953f292298e6877ae433c98912b927cb0766b303f4540512ddd286c748485",
        members=r"news-commentary-v9\.fr-en\.(en|fr)$",
    ),
    Remote(
        corpus="giga-fren",
        url="http://www.statmt.org/wmt10/training-giga-fren.tar",
        size=2_595_102_720,
        sha256="3ff8319f6919393520559bfbc7ad6a747ec81b3abc7be9993b338d4b017b4d9a",
        members=r"giga-fren\.release2\.fixed\.(en|fr)\.gz$",
    ),
    Remote(
        corpus="newstest2012",
        url="https://statmt.org/wmt12/test.tgz",
        md5="608232d34ebc4ba2ff70fead45674e47",
        members=r"newstest2012-(src|ref)\.(en|fr)\.sgm$",
    ),
    Remote(
        corpus="newstest2013",
        url="https://statmt.org/wmt13/test.tgz",
        md5="48eca5d02f637af44e85186847141f67",
        members=r"newstest2013-(src|ref)\.(en|fr)\.sgm$",
    ),
    Remote(
        corpus="newstest2014",
        url="https://statmt.org/wmt14/test-full.tgz",
        md5="a8cd784e006feb32ac6f3d9ec7eb389a",
        members=r"newstest2014-fren-(src|ref)\.(en|fr)\.sgm$",
    ),
)
CORPORA = tuple(r.corpus for r in WMT14_EN_FR)


def _open_from(url: str, offset: int):
    """(stream positioned at ``offset``, whether the offset was honoured, total size or None)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
        if not path.is_file():
            raise UserError(path, "not in the mirror")
        stream = open(path, "rb")
        stream.seek(offset)
        return stream, True, path.stat().st_size
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except (urllib.error.URLError, OSError) as err:
        raise UserError(None, f"cannot download {url}: {err}") from err
    resumed = offset > 0 and response.status == 206
    length = response.headers.get("Content-Length")
    total = int(length) + (offset if resumed else 0) if length else None
    return response, resumed or offset == 0, total


def _digests(path: Path) -> tuple[str, str]:
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha256.update(chunk)
            md5.update(chunk)
    return sha256.hexdigest(), md5.hexdigest()


def _check(remote: Remote, path: Path) -> None:
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        raise UserError(path, f"{size} bytes, expected {remote.size}")
    sha256, md5 = _digests(path)
    if remote.sha256 and sha256 != remote.sha256:
        raise UserError(path, f"sha256 {sha256} does not match the published {remote.sha256}")
    if remote.md5 and md5 != remote.md5:
        raise UserError(path, f"md5 {md5} does not match the published {remote.md5}")


def fetch(
    remote: Remote,
    folder: Path,
    *,
    mirror: str | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> Path:
    """Download (or resume) one archive into ``folder`` and verify it; returns its path."""
    final = folder / remote.filename
    if final.is_file():
        return final
    url = f"{mirror.rstrip('/')}/{remote.site_path}" if mirror else remote.url
    partial = final.with_name(final.name + ".part")
    offset = partial.stat().st_size if partial.is_file() else 0
    stream, resumed, total = _open_from(url, offset)
    if offset and resumed:
        say(f"{remote.filename}: resuming at byte {offset}")
    elif offset:
        say(f"{remote.filename}: the server cannot resume; starting again")
        offset = 0
    with (
        stream,
        open(partial, "ab" if offset else "wb") as out,
        tqdm(
            total=remote.size or total,
            initial=offset,
            unit="B",
            unit_scale=True,
            desc=remote.filename,
            disable=not progress,
        ) as bar,
    ):
        while chunk := stream.read(CHUNK):
            out.write(chunk)
            bar.update(len(chunk))
    try:
        _check(remote, partial)
    except UserError:
        partial.unlink()
        raise
    partial.rename(final)
    return final


def unpack(remote: Remote, archive: Path, folder: Path) -> list[Path]:
    """Extract the archive's English–French members (flattened) into ``folder/<corpus>/``."""
    pattern, out = re.compile(remote.members), folder / remote.corpus
    out.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and pattern.search(member.name):
                    target = out / name
                    with tar.extractfile(member) as source, open(target, "wb") as sink:
                        while chunk := source.read(CHUNK):
                            sink.write(chunk)
                    written.append(target)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise UserError(archive, f"cannot unpack: {err}") from err
    if not written:
        raise UserError(archive, f"holds no member matching {remote.members}")
    return written
