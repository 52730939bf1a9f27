"""prepare-wmt14 against a local file:// mirror built from the real WMT'14 files."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest
from conftest import WMT, run_cli

from data_shards.wmt14 import find_test_set, training_pairs

EUROPARL = "wmt13/training-parallel-europarl-v7.tgz"
TEST_FULL = "wmt14/test-full.tgz"
LOCAL = {EUROPARL: "europarl-v7-training-parallel-europarl-v7.tgz"}


def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_mirror(folder):
    (folder / "wmt13").mkdir(parents=True)
    (folder / "wmt14").mkdir()
    europarl = WMT / "train-europarl-v7-head3000"
    with tarfile.open(folder / EUROPARL, "w:gz") as tar:
        for lang in ("en", "fr"):
            add(tar, f"training/europarl-v7.fr-en.{lang}", (europarl / f"europarl-v7.fr-en.{lang}").read_bytes())
        add(tar, "training/europarl-v7.de-en.en", b"not English-French\n")
    with tarfile.open(folder / TEST_FULL, "w:gz") as tar:
        for name in ("newstest2014-fren-src.en.sgm", "newstest2014-fren-ref.fr.sgm"):
            add(tar, f"test-full/{name}", (WMT / "newstest2014-sgm" / name).read_bytes())
    sums = {
        corpus: {"sha256": hashlib.sha256((folder / n).read_bytes()).hexdigest(), "size": (folder / n).stat().st_size}
        for corpus, n in (("europarl-v7", EUROPARL), ("newstest2014", TEST_FULL))
    }
    (folder / "sums.json").write_text(json.dumps(sums))
    return folder


def prepare(out, mirror, *extra):
    return run_cli(
        "prepare-wmt14",
        "--out",
        out,
        "--corpora",
        "europarl-v7,newstest2014",
        "--mirror",
        f"file://{mirror}",
        "--checksums",
        mirror / "sums.json",
        "--no-progress",
        *extra,
    )


@pytest.mark.slow
def test_downloads_verifies_and_unpacks_what_s2s_finds(tmp_path):
    mirror = make_mirror(tmp_path / "mirror")
    result = prepare(tmp_path / "wmt14", mirror)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(summary["corpora"]["europarl-v7"]) == ["europarl-v7.fr-en.en", "europarl-v7.fr-en.fr"]
    src, tgt = training_pairs(tmp_path / "wmt14")
    assert [p.name for p in src] == ["europarl-v7.fr-en.en"] and [p.name for p in tgt] == ["europarl-v7.fr-en.fr"]
    assert find_test_set(tmp_path / "wmt14")[0].name == "newstest2014-fren-src.en.sgm"
    assert not (tmp_path / "wmt14" / "archives").exists(), "archives are removed once unpacked"
    again = prepare(tmp_path / "wmt14", mirror)
    assert again.returncode == 0 and "already prepared" in again.stderr


def test_an_interrupted_download_resumes(tmp_path):
    mirror = make_mirror(tmp_path / "mirror")
    archives = tmp_path / "wmt14" / "archives"
    archives.mkdir(parents=True)
    data = (mirror / EUROPARL).read_bytes()
    (archives / f"{LOCAL[EUROPARL]}.part").write_bytes(data[: len(data) // 2])
    result = prepare(tmp_path / "wmt14", mirror, "--keep-archives")
    assert result.returncode == 0, result.stderr
    assert f"resuming at byte {len(data) // 2}" in result.stderr
    assert (archives / LOCAL[EUROPARL]).read_bytes() == data


def test_a_checksum_mismatch_is_refused_and_nothing_kept(tmp_path):
    mirror = make_mirror(tmp_path / "mirror")
    sums = json.loads((mirror / "sums.json").read_text())
    sums["europarl-v7"]["sha256"] = "0" * 64
    (mirror / "sums.json").write_text(json.dumps(sums))
    result = prepare(tmp_path / "wmt14", mirror)
    assert result.returncode == 2 and LOCAL[EUROPARL] in result.stderr and "sha256" in result.stderr
    assert not list((tmp_path / "wmt14" / "archives").iterdir())


def test_every_archive_has_its_own_local_name_and_a_published_checksum():
    from data_shards.download import WMT14_EN_FR

    assert len({r.filename for r in WMT14_EN_FR}) == len({r.site_path for r in WMT14_EN_FR}) == len(WMT14_EN_FR)
    assert all(r.sha256 or r.md5 for r in WMT14_EN_FR)
