"""The command line as users run it: --help, summaries, and one clear line for each bad input."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest import WMT, run_cli

from data_shards.errors import UserError
from dist_train.checkpoint import RunCheckpoint, atomic_save
from dist_train.gan_metrics import nearest, parzen_log_likelihoods, squared_distances
from dist_train.models.gan import GanModelConfig, build_gan
from dist_train.trainers.s2s.trainer import S2SConfig
from launcher.commands.evaluate_gan import generate
from launcher.commands.translate import inference_device
from launcher.config import load_config, preset_file

EN = WMT / "newstest2014-plain-derived" / "newstest2014.en"
FR = WMT / "newstest2014-plain-derived" / "newstest2014.fr"


def one_error_line(result, *fragments):
    """Exit status 2 and a single 'error:' line on stderr that contains every fragment."""
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert str(fragment) in lines[0], (fragment, lines[0])
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_help_lists_the_jobs():
    result = run_cli("--help")
    assert result.returncode == 0
    for job in ("shard-text", "shard-images", "s2s", "gan", "evaluate-gan", "export", "train-classifier", "bench"):
        assert job in result.stdout
    assert "--max-len-ratio" in run_cli("shard-text", "--help").stdout


@pytest.mark.slow
def test_shard_text_cli_ends_with_a_json_summary(tmp_path):
    result = run_cli(
        "shard-text", "--src", EN, "--tgt", FR, "--out", tmp_path / "s", "--shard-size", "1000", "--no-progress"
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["num_samples"] == 3002 and summary["num_shards"] == 4 and summary["filters"]["input_pairs"] == 3003


def test_misaligned_files_name_both_counts(tmp_path):
    short = tmp_path / "short.fr"
    short.write_text("".join(FR.read_text().splitlines(keepends=True)[:2000]))
    one_error_line(
        run_cli("shard-text", "--src", EN, "--tgt", short, "--out", tmp_path / "o"), EN, "3003", "2000", short
    )
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_bytes_that_are_not_utf8_name_file_and_line(tmp_path):
    lines = EN.read_bytes().splitlines(keepends=True)
    lines[41] = lines[41].replace(b"e", b"\xe9", 1)
    bad = tmp_path / "latin1.en"
    bad.write_bytes(b"".join(lines))
    one_error_line(run_cli("shard-text", "--src", bad, "--tgt", FR, "--out", tmp_path / "o"), bad, "line 42", "UTF-8")


@pytest.mark.slow
def test_missing_input(tmp_path):
    one_error_line(
        run_cli("shard-text", "--src", tmp_path / "nope.en", "--tgt", FR, "--out", tmp_path / "o"),
        tmp_path / "nope.en",
        "no such file",
    )
    one_error_line(run_cli("shard-images", "--input", tmp_path / "nope.csv", "--out", tmp_path / "o"), "no such file")


@pytest.mark.slow
def test_corpus_empty_after_filtering(tmp_path):
    one_error_line(
        run_cli("shard-text", "--src", EN, "--tgt", FR, "--out", tmp_path / "o", "--max-len", "1"),
        EN,
        "no sentence pair is left",
        "too_long=",
    )
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_existing_shards_are_kept_unless_overwrite(tmp_path):
    out = tmp_path / "o"
    assert run_cli("shard-text", "--src", EN, "--tgt", FR, "--out", out, "--no-progress").returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    one_error_line(
        run_cli("shard-text", "--src", EN, "--tgt", FR, "--out", out, "--shard-size", "10"), out, "--overwrite"
    )
    # A failing --overwrite run leaves the old shards as they were.
    one_error_line(
        run_cli("shard-text", "--src", EN, "--tgt", FR, "--out", out, "--overwrite", "--max-len", "1"),
        "no sentence pair",
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    result = run_cli("shard-text", "--src", EN, "--tgt", FR, "--out", out, "--overwrite", "--shard-size", "1000")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.glob("*.tar")) == [f"shard-00000{i}.tar" for i in range(4)]
    assert not list(tmp_path.glob(".o.*")), "staging folders must be cleaned up"


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--shard-size", "0", "--shard-size=0: must be at least 1"),
        ("--max-len-ratio", "0.5", "--max-len-ratio must be at least 1"),
    ],
)
def test_bad_flag_values_are_usage_errors(tmp_path, flag, value, message):
    result = run_cli("shard-text", "--src", EN, "--tgt", FR, "--out", tmp_path / "o", flag, value)
    assert result.returncode == 2 and message in result.stderr


def test_bad_image_input(tmp_path):
    bad = tmp_path / "pixels.csv"
    bad.write_text("1,2,3,4,5,6,7,0\n")
    one_error_line(run_cli("shard-images", "--input", bad, "--out", tmp_path / "o"), bad, "7 pixels")


@pytest.mark.slow
def test_bench_data_prints_one_json_line(data_root):
    result = run_cli("bench", "data", "--seconds", "0.5")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    figures = json.loads(lines[0])
    assert figures["shard_pairs_per_s"] > 0 and figures["read_images_per_s"] > 0
    assert set(figures["read_tokens_per_s"]) == {"0_workers", "1_workers", "2_workers"}
    assert figures["read_logical_streams_tokens_per_s"] > 0 and figures["read_by_offset_tokens_per_s"] > 0
    assert figures["read_over_http_tokens_per_s"] > 0
    assert min(figures["read_tokens_per_s"].values()) > 0


@pytest.mark.slow
def test_gan_refuses_text_shards_and_says_where_mnist_comes_from(newstest_small_shards, tmp_path):
    wrong = run_cli("gan", "--preset", "tiny", "--data", newstest_small_shards, "--run-dir", tmp_path / "r")
    assert wrong.returncode == 2 and "shard-images" in wrong.stderr and "Traceback" not in wrong.stderr
    missing = run_cli("gan", "--preset", "tiny", "--data-root", tmp_path, "--run-dir", tmp_path / "r",
                      env={"DIST_TRAIN_SHARDS": str(tmp_path / "shards")})  # fmt: skip
    one_error_line(missing, tmp_path, "train-images-idx3-ubyte.gz")


# --- --device for translate, evaluate and evaluate-gan --------------------------------------------


def pretend_gpus(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_device_auto_is_the_first_gpu_when_one_is_visible(monkeypatch):
    pretend_gpus(monkeypatch, 2)
    assert inference_device("auto") == torch.device("cuda:0")
    assert inference_device("cuda:1") == torch.device("cuda:1") and inference_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="sees only 2 GPU"):
        inference_device("cuda:2")
    pretend_gpus(monkeypatch, 0)
    assert inference_device("auto") == torch.device("cpu")
    with pytest.raises(UserError, match="no GPU is visible"):
        inference_device("cuda")


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for a GPU that is not there")
@pytest.mark.parametrize("job", ["translate", "evaluate", "evaluate-gan"])
def test_device_cuda_without_a_gpu_is_one_line(job, tmp_path):
    one_error_line(run_cli(job, "--checkpoint", tmp_path / "none.pt", "--device", "cuda"), "--device cuda", "no GPU")


@pytest.mark.slow
def test_device_that_is_not_one_is_a_usage_error(tmp_path):
    result = run_cli("translate", "--checkpoint", tmp_path / "none.pt", "--device", "gpu")
    assert result.returncode == 2 and "'gpu' is not auto, cpu, cuda or cuda:N" in result.stderr
    assert "auto|cpu|cuda|cuda:N" in run_cli("evaluate-gan", "--help").stdout


def test_gan_samples_and_their_scores_stay_on_the_device(tmp_path):
    """On ``meta`` (a device without data, no GPU needed): a tensor left on the host would fail or show."""
    cfg = GanModelConfig(z_dim=4, g_hidden=8)
    generator, discriminator = build_gan(cfg, (1, 28, 28))
    weights = {"generator": generator.state_dict(), "generator_ema": generator.state_dict(),
               "discriminator": discriminator.state_dict()}  # fmt: skip
    inference = {"config": {"model": dataclasses.asdict(cfg)}, "image_shape": [1, 28, 28]}
    exported = RunCheckpoint(job="gan", weights=weights, inference=inference).for_inference("bf16")
    assert set(exported.weights) == {"generator_ema"}, "export keeps the generator that samples, alone"
    atomic_save(exported.to_state(), tmp_path / "g.pt")
    samples, _ = generate(tmp_path / "g.pt", 1500, seed=0, use_ema=True, device=torch.device("meta"))
    assert samples.device.type == "meta" and samples.shape == (1500, 1, 28, 28)
    host_images = torch.rand(5, 784)
    assert squared_distances(host_images, samples.flatten(1)).device.type == "meta"
    assert parzen_log_likelihoods(host_images, samples.flatten(1), [0.1, 1.0]).device.type == "meta"
    assert nearest(samples[:3], host_images).device.type == "meta"


def test_the_paper_preset_is_the_published_recipe_which_the_defaults_hold_once():
    cfg = load_config(S2SConfig, files=[preset_file("s2s", "paper")])
    model, optim = cfg.model, cfg.optim
    assert (model.num_layers, model.hidden_dim, model.embed_dim, model.init_range) == (4, 1000, 1000, 0.08)
    assert model.reverse_source and not (model.attention or model.copy or model.dropout)
    assert (optim.name, optim.lr, optim.max_grad_norm, optim.schedule) == ("sgd", 0.7, 5.0, "epochs")
    assert (optim.halve_after_epochs, optim.halve_every_epochs, optim.decay_fraction) == (5.0, 0.5, 0.0)
    assert (cfg.data.batch_size, cfg.train.num_epochs, cfg.vocab.src_vocab_size) == (128, 7.5, 0)
    assert cfg == S2SConfig(), "the preset sets nothing: the recipe is written once, as the configs' defaults"
