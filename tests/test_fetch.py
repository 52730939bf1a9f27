"""Shards read from URLs: files (data_shards.fetch) against a local HTTP server that serves, truncates,
fails twice then serves, or has nothing; a command that never exits; a scheme mapped to data.url_command;
the local cache. Then whole shard sets over HTTP: the same batches as from the folder, resumed exactly,
corrupt shards skipped, and a training run whose --data and --dev are URLs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from conftest import tiny_cli
from test_corrupt_data import corrupt_copy, truncate

from data_shards import ReaderConfig, ShardReader, ShardSet
from data_shards.errors import UserError
from data_shards.fetch import FetchConfig, fetch, file_url, is_remote

PAYLOAD = bytes(range(256)) * 400  # 100 kB
SHA = hashlib.sha256(PAYLOAD).hexdigest()
FAST = FetchConfig(max_retries=2, retry_backoff_s=0.05, read_timeout_s=20)


class Handler(BaseHTTPRequestHandler):
    """/KIND/PATH: the file PATH of ``root`` where there is one, else the payload. KIND ok: served;
    truncate: its first half, then the connection closes; flaky: 500 twice, then served; else 404."""

    requests: Counter = Counter()
    root: Path | None = None

    def do_GET(self):  # noqa: N802 (http.server's name)
        Handler.requests[self.path] += 1
        kind, _, path = self.path[1:].partition("/")
        if kind == "flaky" and Handler.requests[self.path] <= 2:
            return self.send_error(500)
        if kind not in ("ok", "truncate", "flaky"):
            return self.send_error(404)
        served = Handler.root / path if Handler.root is not None else None
        body = served.read_bytes() if served is not None and served.is_file() else PAYLOAD
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if kind == "truncate" else body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    Handler.root = tmp_path_factory.mktemp("served")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_a_url_is_read_whole_and_checked_against_the_manifest(server):
    assert fetch(f"{server}/ok/a.tar", FAST, size=len(PAYLOAD), sha256=SHA) == PAYLOAD
    with pytest.raises(UserError, match="3 attempts failed .*sha256 does not match"):
        fetch(f"{server}/ok/b.tar", FAST, sha256="0" * 64)


def test_a_server_that_fails_twice_then_serves_is_retried(server):
    assert fetch(f"{server}/flaky/c.tar", FAST, size=len(PAYLOAD), sha256=SHA) == PAYLOAD
    assert Handler.requests["/flaky/c.tar"] == 3


@pytest.mark.parametrize(
    "path, says", [("truncate/d.tar", "the transfer ended early (curl 18)"), ("missing/e.tar", "HTTP error (curl 22)")]
)
def test_a_truncated_or_missing_file_is_one_error_naming_the_url_after_the_retries(server, path, says):
    with pytest.raises(UserError) as raised:
        fetch(f"{server}/{path}", FAST, size=len(PAYLOAD))
    assert str(raised.value).startswith(f"{server}/{path}: 3 attempts failed (data.max_retries=2)") and says in str(
        raised.value
    )
    assert Handler.requests[f"/{path}"] == 3


def test_a_command_that_never_exits_is_killed_at_the_deadline():
    began = time.monotonic()
    with pytest.raises(UserError, match="no answer within data.read_timeout_s=1 s"):
        fetch("pipe:sleep 60; echo late", FetchConfig(max_retries=1, retry_backoff_s=0.01, read_timeout_s=1))
    assert time.monotonic() - began < 10


def test_other_schemes_go_through_url_command_and_a_pipe_set_names_each_file():
    assert fetch("s3://bucket/set/x.tar", FetchConfig(url_command="printf %s {url}")) == b"s3://bucket/set/x.tar"
    with pytest.raises(UserError, match="s3:// needs data.url_command"):
        fetch("s3://bucket/set/x.tar", FAST)
    assert file_url("pipe:printf %s {name}", "shard-000001.tar") == "pipe:printf %s shard-000001.tar"
    assert fetch(file_url("pipe:printf %s {name}", "m.json"), FAST) == b"m.json"
    assert file_url("https://host/set/", "manifest.json") == "https://host/set/manifest.json"
    assert is_remote("https://host/set") and is_remote("pipe:cat x") and not is_remote("runs/shards/x")


def test_the_cache_keeps_a_verified_copy_and_replaces_a_stale_one(server, tmp_path):
    cfg = FetchConfig(cache_dir=str(tmp_path / "cache"), max_retries=0)
    url = f"{server}/ok/f.tar"
    assert fetch(url, cfg, sha256=SHA) == PAYLOAD and Handler.requests["/ok/f.tar"] == 1
    assert fetch(url, cfg, sha256=SHA) == PAYLOAD and Handler.requests["/ok/f.tar"] == 1, "read from the cache"
    (cached,) = (tmp_path / "cache").iterdir()
    cached.write_bytes(b"damaged")
    assert fetch(url, cfg, sha256=SHA) == PAYLOAD and Handler.requests["/ok/f.tar"] == 2, "read again"


def batches_of(reader, stop=None) -> list[tuple]:
    """What identifies each batch: its samples, in order, with their tokens."""
    taken = []
    for batch in reader:
        taken.append((batch.sample_ids.tolist(), batch.src_tokens.tolist(), batch.tgt_tokens.tolist()))
        if len(taken) == stop:
            break
    return taken


def test_a_shard_set_over_http_reads_and_resumes_as_the_folder_does(server, newstest_small_shards):
    (Handler.root / "newstest").symlink_to(newstest_small_shards)
    cfg = ReaderConfig(batch_size=256, num_workers=2, seed=3, max_retries=2, retry_backoff_s=0.05, read_timeout_s=20)
    local = batches_of(ShardReader(newstest_small_shards, cfg, replica_rank=1, num_replicas=2))
    url = f"{server}/flaky/newstest"  # every file fails twice before it is served: retried
    remote = ShardReader(url, cfg, replica_rank=1, num_replicas=2)
    assert remote.shards.location == url and batches_of(remote, stop=5) == local[:5]
    state = remote.state_dict()
    remote.close()
    resumed = ShardReader(url, cfg, replica_rank=1, num_replicas=2)
    resumed.load_state_dict(state)
    assert batches_of(resumed) == local[5:]
    read = {path: n for path, n in Handler.requests.items() if path.startswith("/flaky/newstest/")}
    assert len(read) > 3 and min(read.values()) >= 3, "every file served after failing twice"


def test_skip_corrupt_leaves_out_a_shard_the_server_has_truncated(server, newstest_small_shards, tmp_path, capfd):
    truncate(corrupt_copy(newstest_small_shards, Handler.root / "truncated"), 2)
    cfg = ReaderConfig(batch_size=256, num_workers=0, max_retries=1, retry_backoff_s=0.01, skip_corrupt=True)
    batches = list(ShardReader(f"{server}/ok/truncated/shards", cfg))
    shards = ShardSet(newstest_small_shards)
    lost = set(range(shards.starts[2], shards.starts[3]))
    seen = {i for b in batches for i in b.sample_ids.tolist()}
    assert seen == set(range(shards.num_samples)) - lost and sum(b.corrupt_samples for b in batches) == len(lost)
    said = capfd.readouterr().err
    assert f"{server}/ok/truncated/shards/shard-000002.tar: 2 attempts failed" in said and "the manifest says" in said
    with pytest.raises(UserError, match="shard-000002.tar: 2 attempts failed"):
        list(ShardReader(f"{server}/ok/truncated/shards", dataclasses.replace(cfg, skip_corrupt=False)))


def test_s2s_trains_on_data_and_dev_given_as_urls(server, newstest_small_shards, tmp_path):
    url = f"{server}/ok/newstest"
    if not (Handler.root / "newstest").exists():
        (Handler.root / "newstest").symlink_to(newstest_small_shards)
    cache = tmp_path / "cache"
    done = tiny_cli(url, tmp_path / "run", "--dev", url, "train.max_steps=3", f"data.cache_dir={cache}")
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 3 and summary["dev_ppl"] > 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data_dir"] == url
    assert len(list(cache.iterdir())) > 3, "the files it read, kept verified"
    saved = torch.load(summary["checkpoint"], weights_only=False)
    assert saved["inference"]["data"] == url
