"""The files of a shard set that lies behind a URL: opened with webdataset's ``gopen``, each read whole
within a deadline, verified against what the manifest says of it, retried with backoff, and kept in an
optional local cache.

Where a shard set may lie (``--data``, ``--dev``):
- a local folder;
- ``http://`` or ``https://``: read with ``curl`` (as webdataset does, but with our retries, not curl's);
- ``pipe:COMMAND``, webdataset's notation for a command that writes a file to stdout, here with ``{name}``
  where each file's name in the set goes (``pipe:ssh host cat /data/set/{name}``);
- ``s3://``, ``gs://`` (or any other scheme): mapped to ``url_command`` (``data.url_command``), a command
  with ``{url}`` (``aws s3 cp {url} -``, ``gsutil cat {url}``).

Every read runs as one command under coreutils' ``timeout``, which kills its whole process group: a
command that never exits (webdataset#308) or a server that stalls mid-shard (#432) ends the attempt
instead of hanging the worker. A failed attempt (a non-zero exit, HTTP 4xx/5xx through ``curl -f``, too
few bytes, a sha256 that does not match) is retried after 1, 2, 4 ... × ``retry_backoff_s`` up to
``max_retries`` times, then is one error naming the URL.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from webdataset.gopen import gopen

from data_shards.checks import above, at_least
from data_shards.errors import UserError

CURL = "curl -f -s -L --connect-timeout 30 {url}"  # -f: an HTTP error status is a failed read; -s: we say why
CURL_SAYS = {6: "host not found", 7: "no connection", 18: "the transfer ended early", 22: "HTTP error",
             28: "timed out", 35: "TLS handshake failed", 56: "the connection broke"}  # fmt: skip


@dataclass(frozen=True)
class FetchConfig:
    """How files behind a URL are read (the ``data.*`` keys of the same names)."""

    url_command: str = ""  # s3://, gs:// ...: a command that writes {url} to stdout, e.g. "aws s3 cp {url} -"
    max_retries: int = 3  # further attempts after a failed read
    retry_backoff_s: float = 1.0  # the wait before the first retry; doubled for each next one
    read_timeout_s: float = 600.0  # one file's whole read; a longer one is killed and retried
    cache_dir: str = ""  # keep each file read (verified) here, and read it from here next time

    def __post_init__(self) -> None:
        at_least(self, "data", 0, "max_retries", "retry_backoff_s")
        above(self, "data", 0, "read_timeout_s")


def is_remote(where: str | Path) -> bool:
    """Whether ``where`` names a URL (a scheme other than file:), not a local folder."""
    scheme = urlparse(str(where)).scheme
    return scheme not in ("", "file") and not (len(scheme) == 1 and os.name == "nt")


def file_url(where: str, name: str) -> str:
    """The URL of file ``name`` of the set at ``where`` (for a ``pipe:`` set, its command for ``name``)."""
    if where.startswith("pipe:"):
        if "{name}" not in where:
            raise UserError(where, "a pipe: location needs {name} where each file's name goes")
        return where.replace("{name}", name)
    return where.rstrip("/") + "/" + name


def command_of(url: str, cfg: FetchConfig) -> str:
    """The shell command that writes ``url``'s bytes to stdout."""
    scheme = urlparse(url).scheme
    if scheme == "pipe":
        return url[len("pipe:") :]
    if scheme in ("http", "https"):
        return CURL.format(url=shlex.quote(url))
    if not cfg.url_command:
        raise UserError(url, f"{scheme}:// needs data.url_command, a command with {{url}} (aws s3 cp {{url}} -)")
    return cfg.url_command.replace("{url}", shlex.quote(url))


def read_once(url: str, cfg: FetchConfig) -> bytes:
    """One attempt: the command's whole output, or an OSError (a non-zero exit, the deadline)."""
    inner = command_of(url, cfg)
    stream = gopen(f"pipe:timeout -s KILL {cfg.read_timeout_s:g} sh -c {shlex.quote(inner)}", "rb")
    try:
        data = stream.read()
    finally:
        try:
            stream.close()  # raises IOError on a non-zero exit status
        except OSError as err:
            status = stream.status
            if status in (124, 137, -9):
                raise OSError(f"no answer within data.read_timeout_s={cfg.read_timeout_s:g} s") from err
            if status in CURL_SAYS and inner.startswith("curl "):
                raise OSError(f"{CURL_SAYS[status]} (curl {status})") from err
            raise OSError(f"the read exited with status {status}") from err
    return data


def check(data: bytes, size: int | None, sha256: str | None) -> None:
    if size is not None and len(data) != size:
        raise OSError(f"{len(data)} bytes, the manifest says {size}")
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise OSError("sha256 does not match the manifest")


def fetch(url: str, cfg: FetchConfig, size: int | None = None, sha256: str | None = None) -> bytes:
    """``url``'s bytes, verified against ``size`` and ``sha256`` when given; from ``cfg.cache_dir`` when
    a verified copy is there; retried with backoff; else one ``UserError`` naming the URL."""
    cached = cache_path(url, cfg)
    if cached is not None and cached.is_file():
        data = cached.read_bytes()
        try:
            check(data, size, sha256)
            return data
        except OSError:
            cached.unlink(missing_ok=True)  # stale or damaged: read it again
    failures = []
    for attempt in range(cfg.max_retries + 1):
        if attempt:
            time.sleep(cfg.retry_backoff_s * 2 ** (attempt - 1))
        try:
            data = read_once(url, cfg)
            check(data, size, sha256)
        except OSError as err:
            failures.append(str(err))
            if attempt < cfg.max_retries:
                wait = cfg.retry_backoff_s * 2**attempt
                print(f"fetch: {url}: {err}; retry {attempt + 1} of {cfg.max_retries} in {wait:g} s", file=sys.stderr)
            continue
        if cached is not None:
            keep(cached, data)
        return data
    raise UserError(
        url, f"{len(failures)} attempts failed (data.max_retries={cfg.max_retries}); the last: {failures[-1]}"
    )


def cache_path(url: str, cfg: FetchConfig) -> Path | None:
    if not cfg.cache_dir:
        return None
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(cfg.cache_dir) / f"{digest}-{Path(urlparse(url).path).name or 'file'}"


def keep(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (a worker killed mid-write leaves no half file behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{os.getpid()}")
    staged.write_bytes(data)
    staged.replace(path)
