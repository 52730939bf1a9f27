"""The gan job: Goodfellow et al.'s (2014) adversarial nets, data-parallel across replicas.

A step consumes one minibatch of real images (or this replica's share of ``data.micro_batches``, whose
gradients add up). ``train_step`` is explicit about the two updates:

- ``joint`` (the released code): one z, one G forward; G's gradient through the D of before this
  step, D's loss ½(BCE(real, 1) + BCE(fake, 0)) on the same fakes; both networks step.
- ``alternating`` (the paper's Algorithm 1): every step updates D on fresh noise; every k-th step
  then updates G on fresh noise (k = ``update.d_steps``).

G and D are separate replicas with their own engine (DDP or DeepSpeed) and optimizer. D's update is
one engine forward over the real and the fake batch (each its own pass, so batch-norm statistics
stay per batch, as DCGAN's) and one backward; G's loss reads D unwrapped and frozen, so no D
gradient is computed or all-reduced for it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from data_shards import ImageBatch, ReaderConfig, ShardReader
from data_shards.errors import UserError
from dist_train.checkpoint.schema import plain_config
from dist_train.distributed import Topology
from dist_train.metrics import MetricsConfig
from dist_train.models.gan import GanModelConfig, build_gan, sample_noise
from dist_train.optim import DecaySchedule, GanOptimConfig, build_gan_optimizer
from dist_train.parallel.data_parallel import unwrap
from dist_train.parallel.replica import ParallelConfig, build_engine
from dist_train.precision import MixedPrecision
from dist_train.profiling import ProfileConfig
from dist_train.trainers.gan.data import image_shape, mean_image, to_pixels
from dist_train.trainers.gan.noise import NoiseSource
from dist_train.trainers.gan.samples import SamplesConfig, SampleWriter
from dist_train.trainers.gan.step import D_DROPOUT, D_NOISE, G_DROPOUT, G_NOISE, GanStep, RealAndFake, frozen, mean
from dist_train.trainers.loop import Trainer, replica_reader
from dist_train.trainers.train_config import TrainConfig


@dataclass(frozen=True, kw_only=True)
class UpdateConfig:
    mode: Literal["joint", "alternating"] = "joint"
    d_steps: int = 1  # alternating: D updates per G update (the paper's k)
    g_loss: Literal["non-saturating", "minimax"] = "non-saturating"  # max log D(G(z)), or min log(1 − D(G(z)))
    ema_decay: float = 0.0  # generator EMA for samples and evaluation (0: off; e.g. 0.999)

    def __post_init__(self) -> None:
        if self.mode not in ("joint", "alternating") or self.g_loss not in ("non-saturating", "minimax"):
            raise ValueError("update.mode is joint|alternating and update.g_loss non-saturating|minimax")
        if self.d_steps < 1 or not 0 <= self.ema_decay < 1:
            raise ValueError("update.d_steps must be >= 1 and update.ema_decay in [0, 1)")


@dataclass(frozen=True, kw_only=True)
class GanConfig:
    model: GanModelConfig = field(default_factory=GanModelConfig)
    optim: GanOptimConfig = field(default_factory=GanOptimConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    data: ReaderConfig = field(default_factory=lambda: ReaderConfig(batch_size=100, bucket_pool=0))
    train: TrainConfig = field(default_factory=TrainConfig)
    samples: SamplesConfig = field(default_factory=SamplesConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)

    def __post_init__(self) -> None:
        if self.train.grad_accum_steps != 1:
            raise ValueError(
                "train.grad_accum_steps: the gan job takes one batch an update on each replica (set "
                "data.batch_size), or its share of data.micro_batches"
            )


class GanTrainer(Trainer):
    job = "gan"
    unit = "images"
    shown = {"images_per_s": "{:,.0f}", "d_loss": "{:.3f}", "g_loss": "{:.3f}", "d_real": "{:.2f}", "d_fake": "{:.2f}"}

    def __init__(
        self,
        cfg: GanConfig,
        topology: Topology,
        reader: ShardReader,
        run_dir: Path,
    ) -> None:
        super().__init__(cfg.train, topology, reader, run_dir)
        self.cfg, self.device = cfg, topology.device
        self.image_shape = image_shape(reader.shards.manifest, reader.shards.location)
        generator, discriminator = build_gan(cfg.model, self.image_shape)
        if hasattr(generator, "init_output_bias"):
            generator.init_output_bias(mean_image(reader, cfg.model))
        self.ema = copy.deepcopy(generator).to(self.device).eval() if cfg.update.ema_decay else None
        self.precision = MixedPrecision(cfg.train.precision, topology.device, cfg.train.lstm_precision)
        self.g_optimizer = build_gan_optimizer(cfg.optim, generator.parameters())
        self.d_optimizer = build_gan_optimizer(cfg.optim, discriminator.parameters())
        self.g_engine = self._engine(generator, self.g_optimizer)
        self.d_engine = self._engine(RealAndFake(discriminator), self.d_optimizer)
        self.generator, self.discriminator = self.g_engine.module, self.d_engine.module
        self.schedule = DecaySchedule(cfg.optim, steps_per_epoch=self.steps_per_epoch)  # updates, not batches
        self.evaluator = SampleWriter(
            cfg.samples, cfg.model, run_dir / "samples" if topology.is_main else None, self.device, self.sampler
        )
        # each replica draws its own z, where G runs
        self.noise = NoiseSource(self.device, cfg.train.seed + 1000 * topology.replica_rank, lambda: self.step)

    def _engine(self, module: nn.Module, optimizer):
        return build_engine(
            self.cfg.parallel,
            module.to(self.device),
            self.topology,
            optimizer,
            self.precision,
            batch_size=self.cfg.data.batch_size,
            max_grad_norm=self.cfg.optim.max_grad_norm,
        )

    # --- the step ---------------------------------------------------------------------------

    def train_step(self, batches: list[ImageBatch]) -> GanStep:
        """One update of D (and of G, in joint mode or every ``d_steps``-th step) from ``batches``: one, or
        this replica's share of ``data.micro_batches``, whose gradients add up into the update."""
        lr = self.schedule.apply([self.g_optimizer, self.d_optimizer], self.step)
        reals = [to_pixels(batch.images.to(self.device, non_blocking=True), self.cfg.model.pixel_range)
                 for batch in batches]  # fmt: skip
        weights, last = [self.weight(batch) for batch in batches], len(batches) - 1
        joint, d_figures, g_losses = self.cfg.update.mode == "joint", [], []
        for i, (real, weight) in enumerate(zip(reals, weights)):
            self.micro_batch_rng.seed_batch(self.step + 1, i, D_DROPOUT)
            z = self.sample_z(len(real), i, D_NOISE)
            if joint:
                with self.g_engine.batch(i == last):
                    with self.precision.autocast():
                        fake = self.generator(z)
                    g_losses.append(self.generator_backward(fake, weight, i == last))  # through D before its step
                fake = fake.detach()
            else:
                with torch.no_grad(), self.precision.autocast():
                    fake = unwrap(self.generator)(z)
            d_figures.append(self.discriminator_backward(real, fake, weight, i == last))
        if not joint and (self.step + 1) % self.cfg.update.d_steps == 0:
            for i, (real, weight) in enumerate(zip(reals, weights)):
                self.micro_batch_rng.seed_batch(self.step + 1, i, G_DROPOUT)
                with self.g_engine.batch(i == last):
                    with self.precision.autocast():
                        fake = self.generator(self.sample_z(len(real), i, G_NOISE))
                    g_losses.append(self.generator_backward(fake, weight, i == last))
        sizes = [len(real) for real in reals]
        d_loss, d_real, d_fake = (mean(figures, sizes) for figures in zip(*d_figures))
        g_loss = mean(g_losses, sizes) if g_losses else None
        applied = self.d_engine.applied and (g_loss is None or self.g_engine.applied)
        return GanStep(sum(sizes), d_loss, d_real, d_fake, g_loss, lr, applied)

    def weight(self, batch: ImageBatch) -> float:
        """What a batch's mean loss is scaled by: 1 for one batch an update; with ``data.micro_batches``, its
        share of the update's images times the replicas (DDP averages over them)."""
        if not batch.update_samples:
            return 1.0
        return len(batch) * self.topology.num_replicas / batch.update_samples

    def sample_z(self, num: int, index: int, stream: int) -> torch.Tensor:
        """z for this replica's ``index``-th batch: from its own generator, or, with ``data.micro_batches``,
        from one keyed by the update and the batch (``MicroBatchRng``)."""
        rng = self.micro_batch_rng
        generator = rng.generator(self.device, self.step + 1, index, stream) if rng.enabled else self.noise.generator
        return sample_noise(self.cfg.model, num, generator, self.device)

    def discriminator_backward(
        self, real: torch.Tensor, fake: torch.Tensor, weight: float, last: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """½(BCE(D(x), 1) + BCE(D(G(z)), 0)); (loss, mean D(x), mean D(G(z))). D steps after the ``last`` batch."""
        with self.d_engine.batch(last):
            with self.precision.autocast():
                real_logits, fake_logits = (x.float() for x in self.discriminator(real, fake))
            loss = 0.5 * (
                F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
            )
            (self.d_engine.update if last else self.d_engine.accumulate)(loss * weight)
        d_real, d_fake = torch.sigmoid(real_logits.detach()).mean(), torch.sigmoid(fake_logits.detach()).mean()
        return loss.detach(), d_real, d_fake

    def generator_backward(self, fake: torch.Tensor, weight: float, last: bool) -> torch.Tensor:
        """Non-saturating: −log D(G(z)); minimax: log(1 − D(G(z))). Both through a frozen D; G steps after
        the ``last`` batch (called inside ``g_engine.batch(last)``, with G's forward)."""
        with frozen(unwrap(self.discriminator)) as discriminator, self.precision.autocast():
            logits = discriminator(fake).float()
        if self.cfg.update.g_loss == "non-saturating":
            loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        else:
            loss = -F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))
        (self.g_engine.update if last else self.g_engine.accumulate)(loss * weight)
        if last:
            self.update_ema()
        return loss.detach()

    @torch.no_grad()
    def update_ema(self) -> None:
        if self.ema is not None:
            for average, param in zip(self.ema.parameters(), unwrap(self.generator).parameters()):
                average.lerp_(param, 1 - self.cfg.update.ema_decay)
            for average, buffer in zip(self.ema.buffers(), unwrap(self.generator).buffers()):
                average.copy_(buffer)

    @property
    def sampler(self) -> nn.Module:
        """The generator that samples and evaluation use: the EMA when there is one."""
        return self.ema if self.ema is not None else unwrap(self.generator)

    # --- figures ----------------------------------------------------------------------------

    def interval_figures(self, totals: dict[str, float], seconds: float, last: GanStep) -> dict:
        images = max(totals["images"], 1)
        return {
            "epoch": round(self.step / self.steps_per_epoch, 4),
            "d_loss": round(totals["d_loss_sum"] / images, 5),
            "g_loss": round(totals["g_loss_sum"] / max(totals["g_images"], 1), 5),
            "d_real": round(totals["d_real_sum"] / images, 4),
            "d_fake": round(totals["d_fake_sum"] / images, 4),
            "lr": last.lr,
            "images_per_s": round(totals["images"] / seconds, 1),
        }

    # --- state ------------------------------------------------------------------------------

    def about(self) -> str:
        shape = "×".join(map(str, self.image_shape))
        return f"{self.cfg.model.arch} on {shape} images, {self.cfg.update.mode} updates"

    def inference_state(self) -> dict:
        data = str(self.reader.shards.location)
        return {"config": plain_config(self.cfg), "data": data, "image_shape": list(self.image_shape)}

    def modules(self) -> dict:
        modules = {"generator": unwrap(self.generator), "discriminator": unwrap(self.discriminator)}
        return modules | ({"generator_ema": self.ema} if self.ema is not None else {})

    def resumables(self) -> dict:
        return {"precision": self.precision}

    def replica_resumables(self) -> dict:
        return {**super().replica_resumables(), "noise": self.noise}

    def engines(self) -> dict:
        return {"generator": self.g_engine, "discriminator": self.d_engine}


def build_trainer(cfg: GanConfig, topology: Topology, run_dir: Path, data: Path, dev: Path | None = None) -> GanTrainer:
    """This replica's gan trainer on its share of the image shards in ``data`` (the job has no dev set)."""
    if dev is not None:
        raise UserError(dev, "the gan job takes no dev set")
    reader = replica_reader(data, cfg.data, topology)
    reader.shards.expect("images", "the gan job's --data")
    return GanTrainer(cfg, topology, reader, run_dir)
