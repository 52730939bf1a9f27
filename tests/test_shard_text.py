"""shard-text on the real WMT'14 files: formats, vocabularies, filters, determinism."""

from __future__ import annotations

import gzip
import hashlib
import json

import numpy as np
import pytest
from conftest import WMT

from data_shards import ShardSet, ShardTextConfig, Vocab, shard_text
from data_shards.tokenizers import PieceTokenizer, WordTokenizer

NEWSTEST_SGM = (
    WMT / "newstest2014-sgm" / "newstest2014-fren-src.en.sgm",
    WMT / "newstest2014-sgm" / "newstest2014-fren-ref.fr.sgm",
)
NEWSTEST_PLAIN = (
    WMT / "newstest2014-plain-derived" / "newstest2014.en",
    WMT / "newstest2014-plain-derived" / "newstest2014.fr",
)


def shard(out, src, tgt, **kw):
    return shard_text(ShardTextConfig(src=tuple(src), tgt=tuple(tgt), out=out, progress=False, **kw))


def file_hashes(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_training_sample_manifest_counts_and_round_trip(wmt_train):
    manifest = json.loads((wmt_train / "manifest.json").read_text())
    counts = manifest["filters"]["counts"]
    assert counts["input_pairs"] == 40_068
    assert counts["kept"] + counts["empty"] + counts["too_long"] + counts["bad_ratio"] == 40_068
    assert counts["empty"] >= 6, "Europarl's head has 6 empty French lines"
    assert counts["bad_ratio"] > 100, "giga-fren holds ~2% pairs with a length ratio above 3"
    assert manifest["num_samples"] == counts["kept"] == sum(s["num_samples"] for s in manifest["shards"])
    assert [s["name"] for s in manifest["shards"]] == [f"shard-{i:06d}.tar" for i in range(len(manifest["shards"]))]
    for entry in manifest["shards"]:
        assert hashlib.sha256((wmt_train / entry["name"]).read_bytes()).hexdigest() == entry["sha256"]
    for entry in manifest["inputs"]:
        assert hashlib.sha256(open(entry["path"], "rb").read()).hexdigest() == entry["sha256"]
    assert np.load(wmt_train / "lengths.npy").shape == (manifest["num_samples"], 2)
    assert manifest["tokenizer"]["library"] == "sacremoses" and manifest["tokenizer"]["src_lang"] == "en"

    # The ids decode back to the Moses tokens of the stored text (vocab covers all: < 160k words).
    shards = ShardSet(wmt_train)
    src_vocab, tgt_vocab = Vocab.load(wmt_train / "vocab.src.txt"), Vocab.load(wmt_train / "vocab.tgt.txt")
    pair = json.loads(bytes(shards.load(3)[17]["pair.json"]))
    assert src_vocab.decode(pair["src_ids"]) == WordTokenizer("en")(pair["src"])
    assert tgt_vocab.decode(pair["tgt_ids"]) == WordTokenizer("fr")(pair["tgt"])


def test_vocabulary_keeps_most_frequent_words_and_maps_the_rest_to_unk(tmp_path):
    manifest = shard(tmp_path / "s", *([p] for p in NEWSTEST_PLAIN), src_vocab_size=500, tgt_vocab_size=300)
    src_vocab = Vocab.load(tmp_path / "s" / "vocab.src.txt")
    assert len(src_vocab) == 500 and manifest["vocab"]["tgt"]["size"] == 300
    assert src_vocab.tokens[:4] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert {"the", ",", "."} <= set(src_vocab.tokens[4:20])
    ids = np.concatenate([json.loads(bytes(s["pair.json"]))["src_ids"] for s in ShardSet(tmp_path / "s").load(0)])
    assert ids.max() < 500 and (ids == 1).mean() > 0.05
    assert 0.5 < manifest["vocab"]["src"]["token_coverage"] < 1.0


@pytest.mark.slow
def test_sgm_and_plain_give_the_same_shards(tmp_path):
    sgm = shard(tmp_path / "sgm", [NEWSTEST_SGM[0]], [NEWSTEST_SGM[1]])
    plain = shard(tmp_path / "plain", [NEWSTEST_PLAIN[0]], [NEWSTEST_PLAIN[1]])
    assert [i["format"] for i in sgm["inputs"]] == ["sgm", "sgm"]
    assert [i["format"] for i in plain["inputs"]] == ["plain", "plain"]
    assert sgm["num_samples"] == plain["num_samples"] > 2990
    assert sgm["shards"] == plain["shards"]


@pytest.mark.slow
def test_byte_identical_whatever_the_worker_count(tmp_path):
    shard(tmp_path / "one", [NEWSTEST_PLAIN[0]], [NEWSTEST_PLAIN[1]], workers=1, shard_size=700)
    shard(tmp_path / "two", [NEWSTEST_PLAIN[0]], [NEWSTEST_PLAIN[1]], workers=2, shard_size=700)
    assert file_hashes(tmp_path / "one") == file_hashes(tmp_path / "two")
    assert len(list((tmp_path / "one").glob("*.tar"))) == 5


@pytest.mark.slow
def test_gzip_and_tsv_inputs(tmp_path):
    src_lines = NEWSTEST_PLAIN[0].read_text().splitlines()
    tgt_lines = NEWSTEST_PLAIN[1].read_text().splitlines()
    with gzip.open(tmp_path / "news.en.gz", "wt") as f:
        f.write("\n".join(src_lines) + "\n")
    with gzip.open(tmp_path / "news.fr-en.tsv.gz", "wt") as f:
        f.writelines(f"{s}\t{t}\n" for s, t in zip(src_lines, tgt_lines))
    plain = shard(tmp_path / "plain", [NEWSTEST_PLAIN[0]], [NEWSTEST_PLAIN[1]])
    gz = shard(tmp_path / "gz", [tmp_path / "news.en.gz"], [NEWSTEST_PLAIN[1]])
    tsv = shard(tmp_path / "tsv", [tmp_path / "news.fr-en.tsv.gz"], [], src_lang="en", tgt_lang="fr")
    assert [i["format"] for i in tsv["inputs"]] == ["tsv", "tsv"]
    assert plain["shards"] == gz["shards"] == tsv["shards"]


@pytest.mark.slow
def test_sentencepiece_is_trained_in_process_and_deterministic(tmp_path):
    kw = dict(vocab="sentencepiece", src_vocab_size=2000, tgt_vocab_size=2000)
    manifest = shard(tmp_path / "a", [NEWSTEST_PLAIN[0]], [NEWSTEST_PLAIN[1]], workers=1, **kw)
    shard(tmp_path / "b", [NEWSTEST_PLAIN[0]], [NEWSTEST_PLAIN[1]], workers=2, **kw)
    assert file_hashes(tmp_path / "a") == file_hashes(tmp_path / "b")
    assert manifest["tokenizer"]["kind"] == "sentencepiece" and manifest["vocab"]["src"]["size"] == 2000
    assert (tmp_path / "a" / "spm.src.model").is_file()
    pair = json.loads(bytes(ShardSet(tmp_path / "a").load(0)[5]["pair.json"]))
    pieces = Vocab.load(tmp_path / "a" / "vocab.src.txt").decode(pair["src_ids"])
    assert "".join(pieces).replace("▁", " ").strip() == pair["src"]


@pytest.mark.parametrize("max_len, ratio, field", [(10, 3.0, "too_long"), (100, 1.2, "bad_ratio")])
def test_filters_are_applied_and_counted(tmp_path, max_len, ratio, field):
    manifest = shard(tmp_path / "s", [NEWSTEST_PLAIN[0]], [NEWSTEST_PLAIN[1]], max_len=max_len, max_len_ratio=ratio)
    counts = manifest["filters"]["counts"]
    assert counts[field] > 100 and counts["kept"] == 3003 - counts["empty"] - counts["too_long"] - counts["bad_ratio"]
    lengths = np.load(tmp_path / "s" / "lengths.npy")
    assert lengths.max() <= max_len
    assert (lengths.max(axis=1) <= ratio * lengths.min(axis=1)).all()


@pytest.mark.slow
@pytest.mark.parametrize("vocab", ["word", "sentencepiece"])
def test_dev_sets_reuse_the_training_vocabulary(tmp_path, wmt_train, vocab):
    train = wmt_train
    if vocab == "sentencepiece":
        train = tmp_path / "train-spm"
        shard(
            train,
            [NEWSTEST_PLAIN[0]],
            [NEWSTEST_PLAIN[1]],
            vocab="sentencepiece",
            src_vocab_size=1500,
            tgt_vocab_size=1500,
        )
    dev = WMT / "dev-sgm"
    manifest = shard(
        tmp_path / "dev", [dev / "newstest2012-src.en.sgm"], [dev / "newstest2012-ref.fr.sgm"], vocab_from=train
    )
    for name in ("vocab.src.txt", "vocab.tgt.txt"):
        assert (tmp_path / "dev" / name).read_bytes() == (train / name).read_bytes()
    assert manifest["tokenizer"]["kind"] == vocab and manifest["tokenizer"]["vocab_from"] == str(train)
    pair = json.loads(bytes(ShardSet(tmp_path / "dev").load(0)[0]["pair.json"]))
    tokenize = WordTokenizer("en") if vocab == "word" else PieceTokenizer(train / "spm.src.model")
    assert pair["src_ids"] == Vocab.load(train / "vocab.src.txt").encode(tokenize(pair["src"]))
    assert 0 < manifest["vocab"]["src"]["token_coverage"] < 1
