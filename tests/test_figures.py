"""``figures``: the papers' figures drawn from a checkpoint: s2s Figure 2 (PCA of encoder states),
s2s Figure 3 (BLEU by length and word rank), gan Figure 3 (interpolation in z), and their report links."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import WMT, run_cli
from PIL import Image

from dist_train.checkpoint import RunCheckpoint, atomic_save, newest_in
from dist_train.figures.gan_interpolation import interpolate, save_interpolation
from dist_train.figures.s2s_bleu_by import LENGTH_BINS, bleu_by, plot_bleu_by, word_ranks
from dist_train.figures.s2s_states import (
    PHRASE_SETS,
    final_hidden_states,
    pca_2d,
    plot_state_projections,
    state_projections,
)
from dist_train.inference import load_model
from dist_train.models.gan import GanModelConfig
from dist_train.reporting import write_report
from dist_train.trainers.gan.samples import image_grid, to_uint8
from dist_train.translation import Translator
from launcher.main import main

NEWSTEST = WMT / "newstest2014-plain-derived" / "newstest2014"
LENGTH_LABELS = ["≤7", "8-12", "13-17", "18-22", "23-28", "29-35", "36+"]


@pytest.fixture(scope="module")
def translator(tiny_checkpoint) -> Translator:
    return Translator([tiny_checkpoint])


@pytest.fixture(scope="module")
def gan_checkpoint(tmp_path_factory, mnist_5k_shards):
    """A tiny gan trained for 2 steps, with a moving average of G (what sampling uses)."""
    run_dir = tmp_path_factory.mktemp("gan-run")
    argv = ["gan", "--preset", "tiny", "--data", str(mnist_5k_shards), "--run-dir", str(run_dir)]
    assert main([*argv, "threads=1", "max_steps=2", "update.ema_decay=0.9", "samples.every_steps=0"]) == 0
    return newest_in(run_dir)


def summary_of(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_pca_keeps_the_distances_of_points_on_a_plane():
    flat = np.random.default_rng(0).normal(size=(6, 2)) * [3.0, 1.0]
    basis, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(10, 2)))  # an orthonormal plane in 10-D
    projected, explained = pca_2d(flat @ basis.T + 5.0)
    assert projected.shape == (6, 2) and sum(explained) == pytest.approx(1.0)
    distances = np.linalg.norm(flat[:, None] - flat[None], axis=-1)
    assert np.linalg.norm(projected[:, None] - projected[None], axis=-1) == pytest.approx(distances)


def test_figure_2_projects_every_phrase_of_both_sets(translator, tmp_path):
    data = state_projections(translator)
    assert [s["phrases"] for s in data["sets"]] == [list(p) for p in PHRASE_SETS]
    assert "top layer" in data["state"]
    for one in data["sets"]:
        points = np.array(one["points"])
        assert points.shape == (len(one["phrases"]), 2) and np.isfinite(points).all()
        assert [len(tokens) for tokens in one["tokens"]] == [len(p.split()) for p in one["phrases"]]
    together = final_hidden_states(translator, list(PHRASE_SETS[1]))
    alone = np.concatenate([final_hidden_states(translator, [phrase]) for phrase in PHRASE_SETS[1]])
    assert together.shape == (6, 32) and together == pytest.approx(alone, abs=1e-6), "padding changes no state"
    garden = np.array(data["sets"][1]["points"])
    assert len({tuple(p) for p in garden.round(4)}) == len(garden), "different phrases, different states"
    with Image.open(plot_state_projections(data, tmp_path / "states.png")) as png:
        assert png.size[0] > 1000 and png.getextrema() != ((255, 255),) * 4


def test_word_ranks_put_unknown_words_past_the_rarest():
    assert word_ranks([4, 5, 1, 9], vocab_size=10) == [1, 2, 7, 6]  # 6 words after the 4 specials


def test_figure_3_bins_every_sentence_once(translator, tmp_path):
    sources = NEWSTEST.with_suffix(".en").read_text().splitlines()[:20]
    references = NEWSTEST.with_suffix(".fr").read_text().splitlines()[:20]
    hypotheses = [*references[:10], *sources[10:]]  # half perfect, half untranslated
    data = bleu_by(sources, references, hypotheses, translator.src, "fr", num_rank_bins=6)
    assert data["num_sentences"] == 20 and 0 < data["bleu"] < 100
    assert [row["bin"] for row in data["by_length"]] == LENGTH_LABELS
    lengths = [len(translator.src.encode(s)) for s in sources]
    expected = [sum(low <= n <= (high or 10**6) for n in lengths) for low, high in LENGTH_BINS]
    assert [row["num_sentences"] for row in data["by_length"]] == expected
    assert [row["num_sentences"] for row in data["by_rank"]] == [3, 3, 4, 3, 3, 4]  # 20 sorted, cut in 6
    for row in data["by_length"] + data["by_rank"]:
        assert (row["bleu"] is None) == (row["num_sentences"] == 0)
    perfect = bleu_by(sources, references, references, translator.src, "fr")
    assert {row["bleu"] for row in perfect["by_rank"]} == {100.0}
    with Image.open(plot_bleu_by(data, tmp_path / "bleu.png")) as png:
        assert png.size[0] > 1000 and png.getextrema() != ((255, 255),) * 4


def test_interpolation_walks_straight_lines_from_g_of_one_end_to_g_of_the_other(gan_checkpoint, tmp_path):
    loaded = load_model(gan_checkpoint, "gan", "the test")
    cfg = GanModelConfig(**loaded.checkpoint.model_config)
    images, data = interpolate(loaded.model, cfg, num_rows=3, num_steps=5, seed=7)
    assert images.shape == (3, 5, 1, 28, 28) and data["t"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    start, end = torch.tensor(data["z_start"]), torch.tensor(data["z_end"])
    with torch.no_grad():
        assert torch.allclose(images[:, 0], loaded.model(start), atol=1e-6)
        assert torch.allclose(images[:, -1], loaded.model(end), atol=1e-6)
        assert torch.allclose(images[:, 2], loaded.model((start + end) / 2), atol=1e-6)
    assert not torch.equal(images[:, 0], images[:, -1])
    again, _ = interpolate(loaded.model, cfg, num_rows=3, num_steps=5, seed=7)
    assert torch.equal(again, images), "seeded"
    with Image.open(save_interpolation(images, cfg, tmp_path / "lines.png")) as png:
        assert png.size == (5 * 29 + 1, 3 * 29 + 1)


def test_figures_cli_draws_the_gan_interpolation_with_the_moving_average(gan_checkpoint, tmp_path, capsys):
    assert main(["figures", "--checkpoint", str(gan_checkpoint), "--out", str(tmp_path), "--rows", "2"]) == 0
    summary = summary_of(capsys)
    assert summary["kind"] == "gan" and summary["generator"] == "generator_ema"
    assert summary["files"] == [str(tmp_path / "gan_interpolation.json"), str(tmp_path / "gan_interpolation.png")]
    data = json.loads((tmp_path / "gan_interpolation.json").read_text())
    ema = load_model(gan_checkpoint, "gan", "the test", ema=True).model
    cfg = GanModelConfig(**load_model(gan_checkpoint, "gan", "the test").checkpoint.model_config)
    z = torch.tensor(data["z_start"])
    with torch.no_grad():
        first_column = image_grid(to_uint8(ema(z), cfg.pixel_range), columns=1)
    with Image.open(tmp_path / "gan_interpolation.png") as png:
        assert png.size == (11 * 29 + 1, 2 * 29 + 1)
        assert (np.array(png)[:, :30] == first_column[..., 0]).all()


@pytest.mark.slow
def test_figures_cli_draws_figures_2_and_3_into_the_run_report(tiny_checkpoint, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_checkpoint.parent.parent, run_dir)
    held_out = WMT / "train-giga-fren-head30000" / "original-split"  # a test set of the user's (--src/--ref)
    test = ("--src", held_out / "test.en", "--ref", held_out / "test.fr")
    result = run_cli(
        "figures", "--checkpoint", run_dir, "--test-sentences", "20", "--beam", "1", "--no-progress", *test
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["test_set"] == str(held_out / "test.en") and "20 sentences of test.en" in result.stderr
    out = run_dir / "report" / "figures"
    names = ["s2s_states.json", "s2s_states.png", "s2s_bleu_by.json", "s2s_bleu_by.png"]
    assert summary["files"] == [str(out / name) for name in names] and summary["num_sentences"] == 20
    scores = json.loads((out / "s2s_bleu_by.json").read_text())
    assert (
        sum(r["num_sentences"] for r in scores["by_length"]) == sum(r["num_sentences"] for r in scores["by_rank"]) == 20
    )
    assert scores["beam"] == 1 and scores["bleu"] == summary["bleu"]
    for png in out.glob("*.png"):
        Image.open(png).verify()
    written = write_report(run_dir)
    assert written["figures"] == [str(out / "s2s_states.png"), str(out / "s2s_bleu_by.png")]
    markdown = (run_dir / "report" / "report.md").read_text()
    assert "![s2s_states](figures/s2s_states.png)" in markdown and "(figures/s2s_bleu_by.json)" in markdown


def test_figures_refuses_a_missing_checkpoint_or_another_kind_in_one_line(tmp_path, capsys):
    assert main(["figures", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'none.pt'}: no such checkpoint\n"
    classifier = tmp_path / "classifier.pt"
    atomic_save(RunCheckpoint(job="classifier", weights={"model": {}}, inference={}).to_state(), classifier)
    assert main(["figures", "--checkpoint", str(classifier)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {classifier}: is an MNIST classifier; figures needs") and err.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["figures", "--checkpoint", str(classifier), "--steps", "1"])
    assert "--steps 1: give 2 or more" in capsys.readouterr().err
