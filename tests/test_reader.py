"""The reader: exactly-once across replicas × workers, equal batch counts, exact resume, bucketing."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from data_shards import ReaderConfig, ShardReader, ShardSet, UserError
from data_shards.batches import as_torch, collate_images, collate_text
from data_shards.plan import plan_epoch
from data_shards.reader import should_pin_memory
from data_shards.tario import read_samples


def epoch_batches(reader):
    return [(b.sample_ids.tolist(), b.src_tokens.tolist(), b.tgt_tokens.tolist()) for b in reader]


@pytest.mark.parametrize("batching", [dict(batch_size=64), dict(max_tokens=1500, batch_size=0)])
def test_two_replicas_by_two_workers_see_every_sample_once(newstest_small_shards, batching):
    cfg = ReaderConfig(**batching, num_workers=2, seed=3)
    readers = [ShardReader(newstest_small_shards, cfg, replica_rank=r, num_replicas=2) for r in range(2)]
    seen = [[i for batch in reader for i in batch.sample_ids.tolist()] for reader in readers]
    num_samples = ShardSet(newstest_small_shards).num_samples
    assert sorted(seen[0] + seen[1]) == list(range(num_samples))
    assert len(readers[0]) == len(readers[1]) and all(r.epoch == 1 for r in readers)


def test_equal_batch_counts_even_when_streams_are_uneven(newstest_small_shards):
    shards = ShardSet(newstest_small_shards)
    lengths = shards.bucket_lengths()
    for replicas, workers, tokens in [(2, 2, 900), (3, 2, 2000), (4, 1, 333), (2, 3, 5000)]:
        cfg = ReaderConfig(max_tokens=tokens, num_workers=workers, bucket_pool=500, seed=replicas)
        for epoch in range(3):
            plan = plan_epoch(shards.sizes, lengths, cfg, epoch=epoch, num_replicas=replicas)
            counts = {plan.num_batches(r) for r in range(replicas)}
            ids = np.concatenate([b for streams in plan.batches for s in streams for b in s])
            assert len(counts) == 1 and np.array_equal(np.sort(ids), np.arange(shards.num_samples))


def test_token_budget_and_length_bucketing(newstest_small_shards):
    cfg = ReaderConfig(max_tokens=2000, batch_size=40, num_workers=1)
    reader = ShardReader(newstest_small_shards, cfg)
    unbucketed = ShardReader(newstest_small_shards, dataclasses.replace(cfg, bucket_pool=0))

    def padding_fraction(r):
        real = padded = 0
        for b in r:
            longest = max(b.src_tokens.shape[1], b.tgt_tokens.shape[1])
            assert len(b) * longest <= 2000 or len(b) == 1
            assert len(b) <= 40
            real += int(b.src_lengths.sum())
            padded += b.src_tokens.numel()
        return 1 - real / padded

    bucketed_pad, random_pad = padding_fraction(reader), padding_fraction(unbucketed)
    assert bucketed_pad < 0.25 < random_pad, (bucketed_pad, random_pad)


def test_buckets_sort_by_source_length_first(newstest_small_shards):
    """A batch's sources are (nearly) equally long: the encoder runs one segment per distinct length."""
    reader = ShardReader(newstest_small_shards, ReaderConfig(batch_size=32, num_workers=0))
    distinct = [len(set(b.src_lengths.tolist())) for b in reader]
    assert np.median(distinct) == 1 and np.percentile(distinct, 95) <= 2, distinct  # only the long tail spreads


@pytest.mark.slow
def test_resume_mid_epoch_yields_the_very_same_batches(newstest_small_shards):
    cfg = ReaderConfig(max_tokens=1200, num_workers=2, seed=7, bucket_pool=800)
    reference = ShardReader(newstest_small_shards, cfg, replica_rank=1, num_replicas=2)
    expected = epoch_batches(reference) + epoch_batches(reference)
    per_epoch = len(expected) // 2
    for stop in (0, 1, 13, per_epoch - 1, per_epoch + 5):
        first = ShardReader(newstest_small_shards, cfg, replica_rank=1, num_replicas=2)
        got = []
        while len(got) < stop:
            for batch in first:
                got.append((batch.sample_ids.tolist(), batch.src_tokens.tolist(), batch.tgt_tokens.tolist()))
                if len(got) == stop:
                    break
        state = first.state_dict()
        resumed = ShardReader(newstest_small_shards, cfg, replica_rank=1, num_replicas=2)
        resumed.load_state_dict(state)
        while len(got) < len(expected):
            got += epoch_batches(resumed)
        assert got == expected, f"resume after {stop} batches diverged"


def test_epochs_are_reshuffled_from_the_seed(newstest_small_shards):
    def order(seed, epochs):
        reader = ShardReader(newstest_small_shards, ReaderConfig(batch_size=32, num_workers=0, seed=seed))
        return [[b.sample_ids.tolist() for b in reader] for _ in range(epochs)]

    first = order(seed=1, epochs=2)
    assert first[0] != first[1] and sorted(sum(first[0], [])) == sorted(sum(first[1], []))
    assert order(seed=1, epochs=1)[0] == first[0]
    assert order(seed=2, epochs=1)[0] != first[0]


CHAINS = [  # (replicas, workers, batch size) of each stretch of one epoch
    ((2, 1, 64), (1, 1, 64)),
    ((1, 2, 64), (2, 0, 32)),
    ((2, 0, 64), (3, 2, 64), (1, 0, 128)),
]


@pytest.mark.parametrize("chain", CHAINS, ids=lambda c: " -> ".join(f"{r}x{w}" for r, w, _ in c))
def test_a_mid_epoch_resume_on_another_layout_reads_every_sample_of_the_epoch_exactly_once(
    newstest_small_shards, chain
):
    """Stopped mid-epoch and resumed with more or fewer replicas, workers or another batch size, possibly
    several times: every sample of the epoch once, equal batch counts, and the next epoch the layout's own."""
    seen, state = [], None
    for stretch, (replicas, workers, batch_size) in enumerate(chain):
        cfg = ReaderConfig(batch_size=batch_size, num_workers=workers, seed=4)
        readers = [
            ShardReader(newstest_small_shards, cfg, replica_rank=r, num_replicas=replicas) for r in range(replicas)
        ]
        for reader in readers:
            reader.load_state_dict(state) if state else None
        assert len({len(reader) for reader in readers}) == 1
        iterators = [iter(reader) for reader in readers]
        last = stretch == len(chain) - 1
        for _ in range(len(readers[0]) - readers[0].position if last else 5):
            seen += [i for it in iterators for i in next(it).sample_ids.tolist()]
        state = readers[-1].state_dict()
    assert sorted(seen) == list(range(ShardSet(newstest_small_shards).num_samples))
    assert all(next(it, None) is None for it in iterators) and readers[0].epoch == 1
    shards = ShardSet(newstest_small_shards)
    whole = plan_epoch(shards.sizes, shards.bucket_lengths(), cfg, epoch=1, num_replicas=len(readers))
    assert len(readers[0]) == whole.num_batches(0) and readers[0].segments == ()


def updates(readers, count: int) -> list[list[int]]:
    """The next ``count`` updates of ``readers`` (one per replica): each its samples, all replicas' batches."""
    iterators, share = [iter(reader) for reader in readers], readers[0].batches_per_update
    taken = [[i for it in iterators for _ in range(share) for i in next(it).sample_ids.tolist()] for _ in range(count)]
    return [sorted(update) for update in taken]


@pytest.mark.parametrize("before, after", [((2, 1), (1, 2)), ((1, 0), (4, 1))])
def test_micro_batches_plan_the_same_updates_for_any_replica_and_worker_count(newstest_small_shards, before, after):
    """With data.micro_batches, 2 replicas × 1 batch and 1 replica × 2 batches take the same samples an
    update, and a run stopped on one layout goes on at the same update on another, to the epoch's end."""
    cfg = ReaderConfig(batch_size=32, micro_batches=4, seed=3)

    def make(replicas: int, workers: int) -> list[ShardReader]:
        layout = dataclasses.replace(cfg, num_workers=workers)
        return [
            ShardReader(newstest_small_shards, layout, replica_rank=r, num_replicas=replicas) for r in range(replicas)
        ]

    whole = updates(make(*before), len(make(*before)[0]) // (4 // before[0]))
    assert sorted(i for update in whole for i in update) == list(range(ShardSet(newstest_small_shards).num_samples))
    first = make(*before)
    stopped = updates(first, 3)
    resumed = make(*after)
    for reader in resumed:
        reader.load_state_dict(first[0].state_dict())
    assert resumed[0].segments == () and resumed[0].position == 3 * resumed[0].batches_per_update
    assert stopped + updates(resumed, len(whole) - 3) == whole
    batch = next(iter(make(2, 0)[0]))
    assert batch.update_samples == 4 * 32 and len(batch) == 32
    with pytest.raises(
        UserError, match="micro_batches=4 batches an update cannot be shared by 3 replicas; run on 1, 2, 4 replicas"
    ):
        make(3, 0)


def test_mid_epoch_resume_refuses_another_order_of_samples(newstest_small_shards):
    reader = ShardReader(newstest_small_shards, ReaderConfig(batch_size=32, num_workers=0))
    next(iter(reader))
    other = ShardReader(newstest_small_shards, ReaderConfig(batch_size=32, num_workers=0, seed=9))
    with pytest.raises(ValueError, match="cannot resume mid-epoch: reader order was"):
        other.load_state_dict(reader.state_dict())


def test_images_use_the_same_machinery(mnist_test_shards):
    cfg = ReaderConfig(batch_size=100, num_workers=2)
    readers = [ShardReader(mnist_test_shards, cfg, replica_rank=r, num_replicas=2) for r in range(2)]
    batches = [list(r) for r in readers]
    assert len(batches[0]) == len(batches[1]) == 50
    first = batches[0][0]
    assert first.images.shape == (100, 1, 28, 28) and first.images.dtype.is_floating_point is False
    ids = sorted(i for bs in batches for b in bs for i in b.sample_ids.tolist())
    assert ids == list(range(10_000))


def test_altered_or_truncated_shards_are_refused(newstest_small_shards, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(newstest_small_shards, copy)
    shard = copy / "shard-000002.tar"
    data = bytearray(shard.read_bytes())
    data[5000] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(UserError, match="shard-000002.tar: sha256 does not match"):
        ShardSet(copy).load(2)
    shard.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(UserError, match="shard-000002.tar: truncated"):
        ShardSet(copy).load(2)
    with pytest.raises(UserError, match="truncated tar"):
        read_samples(bytes(data[:7000]), shard)
    reader = ShardReader(copy, ReaderConfig(batch_size=64, num_workers=2))
    with pytest.raises(UserError, match="shard-000002.tar"):
        list(reader)


@pytest.mark.slow
def test_text_comes_with_the_ids_only_when_asked(newstest_small_shards):
    plain = next(iter(ShardReader(newstest_small_shards, ReaderConfig(batch_size=8, num_workers=0))))
    texts = next(iter(ShardReader(newstest_small_shards, ReaderConfig(batch_size=8, num_workers=0, with_text=True))))
    assert plain.src_text == [] and len(texts.src_text) == len(texts) == 8
    assert texts.sample_ids.tolist() == plain.sample_ids.tolist() and all(texts.tgt_text)


def test_a_process_that_exits_with_its_workers_alive_ends(newstest_small_shards):
    """Python's exit terminates leftover data-loader workers with SIGTERM: they must not ignore it."""
    import subprocess
    import sys

    code = (
        "from data_shards import ReaderConfig, ShardReader\n"
        f"batches = iter(ShardReader({str(newstest_small_shards)!r}, ReaderConfig(batch_size=8, num_workers=2)))\n"
        "next(batches)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# --- batches on their way to a GPU, tested without one --------------------------------------------


def spy_on_copies(monkeypatch) -> list[dict]:
    """Every ``Tensor.to`` call's keyword arguments, the copy still made."""
    calls, to = [], torch.Tensor.to

    def recording_to(self, *args, **kwargs):
        calls.append(kwargs)
        return to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", recording_to)
    return calls


def test_a_batch_sends_its_tokens_to_the_device_and_keeps_lengths_on_the_host(monkeypatch):
    pairs = [{"src_ids": [4, 5, 6], "tgt_ids": [7]}, {"src_ids": [8], "tgt_ids": [9, 10]}]
    text = as_torch(collate_text(pairs, np.array([3, 4])))
    calls = spy_on_copies(monkeypatch)
    moved = text.to(torch.device("meta"))  # a device that is not the host, without a GPU
    assert moved.src_tokens.device.type == moved.tgt_tokens.device.type == "meta"
    assert {t.device.type for t in (moved.src_lengths, moved.tgt_lengths, moved.sample_ids)} == {"cpu"}
    assert moved.num_tokens == 7  # counted on the host: no wait for the device
    assert calls == [{"non_blocking": True}] * 2  # the token tensors only, asynchronously
    images = as_torch(collate_images([(np.zeros((2, 2, 1), np.uint8), 3)], np.array([0])))
    moved = images.to("meta")
    assert moved.images.device.type == moved.labels.device.type == "meta" and moved.sample_ids.device.type == "cpu"


def fake_gpu_pinning(monkeypatch) -> set[int]:
    """Pretend a GPU is the DataLoader's accelerator; ``Tensor.pin_memory`` (which needs CUDA) makes a
    copy whose address it records. Returns those addresses."""
    pinned = set()

    def pin_memory(self):
        copy = self.clone()
        pinned.add(copy.data_ptr())
        return copy

    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    monkeypatch.setattr(torch.accelerator, "current_accelerator", lambda *a, **k: torch.device("cuda"))
    monkeypatch.setattr(torch.Tensor, "pin_memory", pin_memory)
    return pinned


@pytest.mark.slow
def test_the_reader_pins_batches_only_when_its_consumer_is_a_gpu(newstest_small_shards, monkeypatch):
    assert should_pin_memory("cuda:1") and should_pin_memory(torch.device("cuda"))
    assert not should_pin_memory("cpu") and not should_pin_memory("meta")
    pinned = fake_gpu_pinning(monkeypatch)
    cfg = ReaderConfig(batch_size=8, num_workers=0)
    list(itertools.islice(ShardReader(newstest_small_shards, cfg), 3))
    assert not pinned  # by default never: on a CPU-only machine pinning fails or wastes time
    reader = ShardReader(newstest_small_shards, cfg, pin_memory=should_pin_memory("cuda"))
    for batch in itertools.islice(reader, 3):
        tensors = (batch.src_tokens, batch.tgt_tokens, batch.src_lengths, batch.tgt_lengths, batch.sample_ids)
        assert all(t.data_ptr() in pinned for t in tensors)
    assert reader._loader.pin_memory


def test_close_stops_the_workers_and_a_new_iteration_starts_them_again(newstest_small_shards):
    reader = ShardReader(newstest_small_shards, ReaderConfig(batch_size=64, num_workers=2))
    first = next(iter(reader))
    workers = reader._loader._iterator._workers
    assert all(w.is_alive() for w in workers)
    reader.close()
    assert not any(w.is_alive() for w in workers)
    reader.load_state_dict({**reader.state_dict(), "position": 0})
    assert next(iter(reader)).sample_ids.equal(first.sample_ids)
    reader.close()
