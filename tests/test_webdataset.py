"""webdataset interoperability, both ways: webdataset's own pipeline reads every sample of our shards with
our fields, and shards that webdataset.ShardWriter wrote are indexed (`shard-index`) and read by our reader."""

from __future__ import annotations

import json

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from data_shards import ReaderConfig, ShardReader, ShardSet
from data_shards.batches import DECODE
from launcher.main import main


def our_samples(folder) -> list:
    """Every sample of a shard set, in order, as our reader decodes it."""
    shards = ShardSet(folder)
    return [DECODE[shards.kind](sample) for k in range(len(shards.shards)) for sample in shards.load(k)]


def tar_urls(folder) -> list[str]:
    return [str(folder / entry["name"]) for entry in ShardSet(folder).shards]


def test_webdataset_reads_every_sample_of_our_text_and_image_shards(newstest_small_shards, mnist_5k_shards):
    pairs = list(wds.WebDataset(tar_urls(newstest_small_shards), shardshuffle=False).decode())
    assert len(pairs) == ShardSet(newstest_small_shards).num_samples
    assert [p["pair.json"] for p in pairs] == our_samples(newstest_small_shards)
    assert set(pairs[0]) >= {"__key__", "pair.json"}
    images = list(wds.WebDataset(tar_urls(mnist_5k_shards), shardshuffle=False).decode("l"))
    ours = our_samples(mnist_5k_shards)
    assert len(images) == len(ours) == 5_000
    for theirs, (image, label) in zip(images, ours):
        assert theirs["cls"] == label and np.array_equal((theirs["png"] * 255).round().astype(np.uint8), image[:, :, 0])


def write_with_webdataset(folder, samples: list[dict], per_shard: int) -> None:
    folder.mkdir()
    with wds.ShardWriter(str(folder / "part-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
        for k, sample in enumerate(samples):
            sink.write({"__key__": f"sample{k:06d}", **sample})


def read_all(folder, **cfg) -> list:
    """(sample id, batch row) of one epoch of our reader, in id order."""
    reader = ShardReader(folder, ReaderConfig(batch_size=16, num_workers=1, **cfg))
    rows = []
    for batch in reader:
        rows += zip(batch.sample_ids.tolist(), range(len(batch)), [batch] * len(batch))
    reader.close()
    return sorted(rows, key=lambda row: row[0])


def test_shards_webdataset_wrote_are_indexed_and_read_by_our_reader(newstest_small_shards, mnist_5k_shards, tmp_path):
    pairs = our_samples(newstest_small_shards)[:250]
    text = tmp_path / "text"
    write_with_webdataset(text, [{"pair.json": pair} for pair in pairs], per_shard=100)  # 3 tars
    argv = ["shard-index", str(text), "--shards", "part-{000000..000002}.tar", "--no-progress"]
    assert main(argv) == 2, "text pairs need the vocabularies their ids index"
    assert main([*argv, "--vocab-from", str(newstest_small_shards)]) == 0
    assert main([*argv, "--vocab-from", str(newstest_small_shards)]) == 2, "a manifest is there: --overwrite"
    rows = read_all(text, with_text=True)
    assert [sample_id for sample_id, _, _ in rows] == list(range(250))  # every sample, once
    for (_, row, batch), pair in zip(rows, pairs):
        assert batch.src_tokens[row, : batch.src_lengths[row]].tolist() == pair["src_ids"]
        assert batch.tgt_text[row] == pair["tgt"]
    manifest = json.loads((text / "manifest.json").read_text())
    assert ShardSet(text).vocab("src").tokens == ShardSet(newstest_small_shards).vocab("src").tokens
    assert [s["num_samples"] for s in manifest["shards"]] == [100, 100, 50]

    images = tmp_path / "images"
    digits = our_samples(mnist_5k_shards)[:40]
    write_with_webdataset(images, [{"png": Image.fromarray(im[:, :, 0]), "cls": label} for im, label in digits], 32)
    assert main(["shard-index", str(images), "--no-progress"]) == 0
    rows = read_all(images, shuffle=False)
    assert len(rows) == 40 and ShardSet(images).manifest["image_shape"] == [28, 28, 1]
    for (_, row, batch), (image, label) in zip(rows, digits):
        assert int(batch.labels[row]) == label and np.array_equal(batch.images[row].numpy(), image.transpose(2, 0, 1))


@pytest.mark.parametrize(
    "sample, says",
    [
        ({"txt": b"hello"}, "its first sample has fields ['txt']"),
        ({"pair.json": {"src_ids": [4], "tgt_ids": [5]}}, "sample 0 is not text-pairs: ValueError: src and tgt"),
        ({"png": b"not a png", "cls": 1}, "sample 0 is not images: UnidentifiedImageError"),
    ],
)
def test_a_sample_without_our_fields_is_one_line_naming_its_shard(tmp_path, capsys, sample, says):
    write_with_webdataset(tmp_path / "w", [sample], per_shard=10)
    assert main(["shard-index", str(tmp_path / "w"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert says in err and "part-000000.tar" in err and not (tmp_path / "w" / "manifest.json").exists()
