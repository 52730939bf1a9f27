"""Corrupt data in real shard folders: a shard truncated mid-file, a shard whose bytes no longer match
its sha256, a sample that does not decode. By default each stops the reader (and a training run)
with an error naming the shard; with skip_corrupt they are left out and counted, and every replica
still yields the same number of batches, so DDP cannot wait forever on one that ran out."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from conftest import train_log

from data_shards import ReaderConfig, ShardReader, ShardSet, UserError
from data_shards.tario import read_samples
from launcher.main import main


def corrupt_copy(shards, tmp_path):
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    return copy


def truncate(folder, index: int) -> None:
    shard = folder / f"shard-{index:06d}.tar"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) * 2 // 3])


def flip_a_byte(folder, index: int) -> None:
    shard = folder / f"shard-{index:06d}.tar"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x20
    shard.write_bytes(bytes(data))


def break_a_sample(folder, index: int, sample: int) -> None:
    """Overwrite one sample's payload with bytes that are not JSON, and update the manifest's sha256
    to match: the shard is intact, the sample does not decode."""
    shard = folder / f"shard-{index:06d}.tar"
    data = bytearray(shard.read_bytes())
    payload = read_samples(bytes(data), shard)[sample]["pair.json"]
    start = bytes(data).find(bytes(payload))
    data[start : start + 4] = b"\xff\xfe{["
    shard.write_bytes(bytes(data))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["shards"][index]["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_an_undecodable_sample_is_an_error_naming_its_shard_and_index(newstest_small_shards, tmp_path):
    folder = corrupt_copy(newstest_small_shards, tmp_path)
    break_a_sample(folder, 4, sample=17)
    ShardSet(folder).load(4)  # the shard itself matches its manifest
    with pytest.raises(UserError, match=r"shard-000004.tar: sample 17 does not decode: JSONDecodeError"):
        list(ShardReader(folder, ReaderConfig(batch_size=64, num_workers=2)))


def test_skip_corrupt_leaves_out_and_counts_them_with_equal_batch_counts_on_every_replica(
    newstest_small_shards, tmp_path, capfd
):
    folder = corrupt_copy(newstest_small_shards, tmp_path)
    truncate(folder, 1)
    flip_a_byte(folder, 6)
    break_a_sample(folder, 9, sample=3)
    cfg = ReaderConfig(batch_size=64, num_workers=2, seed=5, skip_corrupt=True)
    readers = [ShardReader(folder, cfg, replica_rank=r, num_replicas=2) for r in range(2)]
    clean = len(ShardReader(newstest_small_shards, cfg, replica_rank=0, num_replicas=2))
    batches = [list(reader) for reader in readers]
    assert len(batches[0]) == len(batches[1]) == len(readers[0]) == clean  # the plan's count, on both replicas

    shards = ShardSet(folder)
    lost = {i for s in (1, 6) for i in range(shards.starts[s], shards.starts[s + 1])} | {int(shards.starts[9]) + 3}
    seen = [i for replica in batches for b in replica for i in b.sample_ids.tolist()]
    assert lost.isdisjoint(seen) and set(seen) == set(range(shards.num_samples)) - lost
    assert sum(b.corrupt_samples for replica in batches for b in replica) == len(lost)
    reported = capfd.readouterr().err
    assert "shard-000001.tar: truncated" in reported and "shard-000006.tar: sha256 does not match" in reported
    assert "shard-000009.tar: sample 3 does not decode" in reported


def test_batches_with_no_sound_sample_are_stood_in_for_and_a_replica_with_none_is_an_error(
    newstest_small_shards, tmp_path
):
    folder = corrupt_copy(newstest_small_shards, tmp_path)
    for index in range(len(ShardSet(folder).shards) - 1):  # only the last shard is sound
        truncate(folder, index)
    cfg = ReaderConfig(batch_size=64, num_workers=0, skip_corrupt=True, shuffle=False)
    reader = ShardReader(folder, cfg)
    batches = list(reader)
    last = ShardSet(folder)
    assert len(batches) == len(reader) and all(len(b) for b in batches)
    assert {i for b in batches for i in b.sample_ids.tolist()} == set(range(last.starts[-2], last.num_samples))
    truncate(folder, len(last.shards) - 1)
    with pytest.raises(UserError, match="replica 0 has no sound batch left in epoch 0"):
        list(ShardReader(folder, cfg))


def test_training_stops_on_corrupt_data_or_skips_and_counts_it_with_skip_corrupt(
    newstest_small_shards, tmp_path, capsys
):
    folder = corrupt_copy(newstest_small_shards, tmp_path)
    for index in range(0, len(ShardSet(folder).shards), 2):
        truncate(folder, index)
    args = ["s2s", "--preset", "tiny", "--data", str(folder), "--resume", "never", "threads=1", "metrics.port=0"]
    assert main([*args, "--run-dir", str(tmp_path / "strict"), "max_steps=4"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: ") and ".tar: truncated or altered" in error

    run_dir = tmp_path / "skipping"
    assert main([*args, "--run-dir", str(run_dir), "--skip-corrupt", "max_steps=6", "log_every=3"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 6 and summary["corrupt_samples"] > 0
    logged = train_log(run_dir)
    assert logged[-1]["corrupt_samples"] == summary["corrupt_samples"]
