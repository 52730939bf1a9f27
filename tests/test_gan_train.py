"""The gan job end to end on real MNIST: both update modes, exact resume, two replicas under
torchrun (DDP and DeepSpeed), sample grids, train-classifier and evaluate-gan."""

from __future__ import annotations

import copy
import itertools
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import ONE_NODE, run_cli, tensorboard_scalars, torchrun, train_log
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from data_shards import ShardReader
from dist_train.distributed import Topology
from dist_train.models.gan import sample_noise
from dist_train.trainers.gan.trainer import GanConfig, GanTrainer
from launcher.config import load_config, preset_file
from launcher.main import main


def records(run_dir) -> list[dict]:
    return train_log(run_dir, "d_loss")


def gan(data, run_dir, *overrides, resume="auto"):
    args = ["gan", "--preset", "tiny", "--data", str(data), "--run-dir", str(run_dir), "--resume", resume]
    assert main([*args, "threads=1", *overrides]) == 0


@pytest.mark.parametrize("mode", ["joint", "alternating"])
def test_both_update_modes_train_the_discriminator_and_the_generator(mnist_5k_shards, tmp_path, mode):
    gan(mnist_5k_shards, tmp_path / "run", "max_steps=60", "log_every=20", f"update.mode={mode}", "update.d_steps=2")
    logged = records(tmp_path / "run")
    assert [r["step"] for r in logged] == [20, 40, 60]
    assert logged[-1]["d_real"] > logged[-1]["d_fake"], "D tells real from fake"
    assert logged[-1]["d_loss"] < 0.69 and all(0 < r["g_loss"] < 20 for r in logged)
    grids = sorted((tmp_path / "run" / "samples").glob("step-*.png"))
    assert [g.name for g in grids] == [f"step-{s:08d}.png" for s in (10, 20, 30, 40, 50, 60)]
    assert Image.open(grids[-1]).size == (4 * 29 + 1, 4 * 29 + 1)  # 16 samples, 28×28, 1-pixel borders


def test_stop_and_resume_gives_the_same_losses(mnist_5k_shards, tmp_path):
    overrides = ("log_every=1", "update.ema_decay=0.9", "update.mode=alternating")
    gan(mnist_5k_shards, tmp_path / "straight", "max_steps=12", *overrides)
    gan(mnist_5k_shards, tmp_path / "stopped", "max_steps=5", *overrides)
    gan(mnist_5k_shards, tmp_path / "stopped", "max_steps=12", *overrides)
    straight, resumed = records(tmp_path / "straight"), records(tmp_path / "stopped")
    assert [r["step"] for r in resumed] == list(range(1, 13))
    keys = ("d_loss", "g_loss", "d_real", "d_fake")
    assert [[r[k] for k in keys] for r in resumed[5:]] == [[r[k] for k in keys] for r in straight[5:]]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["joint", "alternating"])
def test_two_replicas_keep_generator_and_discriminator_identical(mnist_5k_shards, tmp_path, mode):
    engines = {"ddp": (), "deepspeed": ("parallel.deepspeed_config=cluster/deepspeed/zero1.json",)}  # ZeRO 1 each
    runs = {
        engine: torchrun(
            *ONE_NODE,
            job="gan",
            data=mnist_5k_shards,
            run_dir=tmp_path / engine,
            overrides=("threads=1", f"parallel.engine={engine}", f"update.mode={mode}", *extra),
        )
        for engine, extra in engines.items()
    }
    for engine, process in runs.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["steps"] == 6 and summary["replicas_in_sync"] is True, engine
        assert summary["images_seen"] == 6 * 2 * 50
    ddp, deepspeed = records(tmp_path / "ddp"), records(tmp_path / "deepspeed")
    assert [r["d_loss"] for r in deepspeed] == pytest.approx([r["d_loss"] for r in ddp], rel=1e-4)


@pytest.mark.slow
def test_evaluate_gan_reports_parzen_fcd_and_coverage(mnist_5k_shards, mnist_test_shards, tmp_path):
    gan(mnist_5k_shards, tmp_path / "run", "max_steps=30")
    classifier = tmp_path / "classifier.pt"
    trained = run_cli("train-classifier", "--train", mnist_5k_shards, "--test", mnist_test_shards,
                      "--epochs", "1", "--out", classifier, "--no-progress")  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["test_accuracy"] > 0.8
    result = run_cli("evaluate-gan", "--checkpoint", tmp_path / "run", "--num-samples", "300", "--valid",
                     mnist_5k_shards, "--test", mnist_test_shards, "--classifier", classifier, "--train",
                     mnist_5k_shards)  # fmt: skip
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"parzen_ll", "parzen_se", "parzen_sigma", "fcd", "class_coverage"} <= set(figures)
    assert 0 < figures["parzen_se"] < 50 and figures["fcd"] > 0 and 0 <= figures["class_coverage"] <= 1
    assert figures["num_samples"] == 300 and Image.open(figures["grid"]).size == (10 * 29 + 1, 10 * 29 + 1)
    drawn = Image.open(figures["nearest_grid"])
    assert drawn.size == (6 * 29 + 1, 6 * 29 + 1)  # 5 samples + the nearest image
    assert drawn.getpixel((5 * 29, 10)) == (255, 210, 0) and drawn.getpixel((4 * 29, 10)) == (255, 255, 255)
    wrong = run_cli("evaluate-gan", "--checkpoint", tmp_path / "run" / "config.json", "--test", mnist_test_shards)
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    shown = tensorboard_scalars(tmp_path / "run" / "tensorboard")  # training's figures and the evaluation's
    for tag in ("train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "throughput/images_per_s"):
        assert shown[tag] and shown[tag][-1][0] == 30, tag
    assert shown["eval/parzen_ll"] == [(30, pytest.approx(figures["parzen_ll"], abs=1e-3))]
    images = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert {"samples", "grid"} <= set(images.Tags()["images"])
    (grid,) = images.Images("grid")
    assert grid.step == 30 and (grid.width, grid.height) == Image.open(figures["grid"]).size
    report = run_cli("report", tmp_path / "run")  # the evaluation was recorded in the run directory
    assert report.returncode == 0, report.stderr
    markdown = (tmp_path / "run" / "report" / "report.md").read_text()
    assert f"| 30 | {figures['parzen_ll']} | {figures['parzen_se']} |" in markdown
    assert "![samples](../samples/step-00000030.png)" in markdown
    assert Image.open(tmp_path / "run" / "report" / "training.png").size[0] > 800


@pytest.mark.slow
def test_dcgan_32_trains_on_colour_images(data_root, tmp_path):
    shards = tmp_path / "cifar"
    made = run_cli("shard-images", "--input", data_root / "cifar10" / "cifar10-test-jpg.tar.gz", "--out", shards,
                   "--limit", "256", "--no-progress")  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["num_samples"] == 256 and json.loads(made.stdout)["image_shape"] == [32, 32, 3]
    run = tmp_path / "run"
    args = ["gan", "--preset", "dcgan-32", "--data", str(shards), "--run-dir", str(run), "threads=1", "max_steps=4",
            "log_every=2", "batch_size=32", "model.g_channels=32", "model.d_channels=8", "samples.every_steps=2",
            "num_workers=0"]  # fmt: skip
    assert main(args) == 0
    logged = records(run)
    assert [r["step"] for r in logged] == [2, 4] and all(0 < r["d_loss"] < 5 for r in logged)
    assert Image.open(run / "samples" / "step-00000004.png").mode == "RGB"


def test_a_joint_step_is_the_released_update_written_out(mnist_5k_shards, tmp_path):
    """One joint step = both gradients taken at the step's starting point, G's through D before its
    update, then plain SGD on each (no dropout here, so the reference can replay it exactly)."""
    cfg = load_config(GanConfig, files=[preset_file("gan", "tiny")],
                      overrides=["model.d_input_keep=1", "model.d_hidden_keep=1", "optim.name=sgd", "optim.lr=0.1",
                                 "optim.momentum=0"])  # fmt: skip
    reader = ShardReader(mnist_5k_shards, cfg.data)
    trainer = GanTrainer(cfg, Topology(devices=["cpu"]), reader, tmp_path)
    generator, discriminator = (copy.deepcopy(trainer.modules()[name]) for name in ("generator", "discriminator"))
    batch = next(iter(ShardReader(mnist_5k_shards, cfg.data)))
    z = sample_noise(cfg.model, len(batch), torch.Generator().manual_seed(cfg.train.seed))
    real = batch.images.float() / 255
    fake = generator(z)
    g_loss = F.binary_cross_entropy_with_logits(discriminator(fake), torch.ones(len(z)))
    g_grads = torch.autograd.grad(g_loss, list(generator.parameters()))
    real_logits, fake_logits = discriminator(real), discriminator(fake.detach())
    d_loss = 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones(len(z)))
                    + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros(len(z))))  # fmt: skip
    d_grads = torch.autograd.grad(d_loss, list(discriminator.parameters()))
    result = trainer.train_step([batch])
    assert result.g_loss == pytest.approx(g_loss.item()) and result.d_loss == pytest.approx(d_loss.item())
    for module, reference, grads in ((trainer.modules()["generator"], generator, g_grads),
                                     (trainer.modules()["discriminator"], discriminator, d_grads)):  # fmt: skip
        for param, before, grad in zip(module.parameters(), reference.parameters(), grads):
            torch.testing.assert_close(param.detach(), before.detach() - 0.1 * grad)


def test_with_micro_batches_an_update_takes_its_share_and_the_schedule_counts_updates(mnist_5k_shards, tmp_path):
    cfg = load_config(GanConfig, files=[preset_file("gan", "tiny")], overrides=["data.micro_batches=2"])
    trainer = GanTrainer(cfg, Topology(devices=["cpu"]), ShardReader(mnist_5k_shards, cfg.data), tmp_path)
    assert trainer.batches_per_update == 2  # one replica takes both batches of every update
    assert trainer.schedule.steps_per_epoch == trainer.steps_per_epoch == len(trainer.reader) // 2
    step = trainer.train_step(list(itertools.islice(iter(trainer.reader), 2)))
    assert step.images == 2 * cfg.data.batch_size and step.g_loss is not None
