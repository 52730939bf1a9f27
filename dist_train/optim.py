"""Optimizers and learning-rate schedules: the paper's plain SGD with its halving schedule, by epochs
(its recipe) or by steps (short runs); Adam for the small models that must learn in minutes; and a
linear decay to zero over the run's last steps, which a time-budgeted run plans from its measured
speed so that it ends at a low learning rate instead of wherever the clock stops it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from data_shards.checks import above, at_least, within


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    name: Literal["sgd", "adam"] = "sgd"  # the paper: plain SGD, no momentum
    lr: float = 0.7
    max_grad_norm: float = 5.0  # clip the (batch-averaged) gradient's L2 norm; 0: no clipping
    schedule: Literal["epochs", "steps", "constant"] = "epochs"
    halve_after_epochs: float = 5.0
    halve_every_epochs: float = 0.5
    halve_after_steps: int = 0
    halve_every_steps: int = 0
    decay_fraction: float = 0.0  # the run's last fraction of steps: lr × a linear decay to 0 (0: none)

    def __post_init__(self) -> None:
        above(self, "optim", 0, "lr")
        at_least(self, "optim", 0, "max_grad_norm", note="0: no clipping")
        above(self, "optim", 0, "halve_every_epochs")
        at_least(self, "optim", 0, "halve_after_epochs", "halve_after_steps")
        if self.schedule == "steps":
            above(self, "optim", 0, "halve_every_steps", note="schedule=steps")
        within(self, "optim", 0.0, 1.0, "decay_fraction")


def build_optimizer(cfg: OptimConfig, params) -> torch.optim.Optimizer:
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    return torch.optim.SGD(params, lr=cfg.lr)


class LearningRateSchedule:
    """lr = base until ``after``, then halved at ``after`` and every ``every`` after it; times a linear
    decay to 0 over the last ``decay_fraction`` of the run's steps.

    Positions are epochs (fractional: step / steps_per_epoch) or steps. The paper (§3.4): "after
    5 epochs, we begun halving the learning rate every half epoch".

    The decay runs from ``decay_from`` to the run's last step, ``horizon``: for a run limited by steps
    or epochs, its last ``decay_fraction``; for a run with a time budget, from the moment that
    fraction of the budget is left, over the steps the rest affords at the speed measured so far
    (``begin_decay``).
    """

    def __init__(self, cfg: OptimConfig, steps_per_epoch: int, total_steps: int) -> None:
        self.cfg, self.steps_per_epoch = cfg, steps_per_epoch
        self.total_steps = self.horizon = total_steps
        self.decay_from = total_steps * (1.0 - cfg.decay_fraction) if cfg.decay_fraction else float(total_steps)
        self.planned = False  # by a time budget (begin_decay), rather than by the step limit

    def decaying(self, step: int) -> bool:
        return step >= self.decay_from

    def begin_decay(self, step: int, steps_affordable: float) -> None:
        """Decay from ``step`` over the steps the time left affords (every replica must pass the
        same figures), unless the step limit comes first."""
        if self.cfg.decay_fraction and not self.decaying(step) and step + steps_affordable < self.total_steps:
            self.decay_from, self.horizon = float(step), step + max(1, int(steps_affordable))
            self.planned = True

    def lr_at(self, step: int) -> float:
        if self.cfg.decay_fraction and self.decaying(step):
            return self.halved_lr_at(step) * max(0.0, (self.horizon - step) / (self.horizon - self.decay_from))
        return self.halved_lr_at(step)

    def halved_lr_at(self, step: int) -> float:
        cfg = self.cfg
        if cfg.schedule == "constant":
            return cfg.lr
        if cfg.schedule == "epochs":
            position, after, every = step / self.steps_per_epoch, cfg.halve_after_epochs, cfg.halve_every_epochs
        else:
            position, after, every = step, cfg.halve_after_steps, cfg.halve_every_steps
        if position < after:
            return cfg.lr
        return cfg.lr * 0.5 ** (math.floor((position - after) / every + 1e-9) + 1)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        lr = self.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict:
        """The planned horizon; the rest is saved so a resumed run can check it uses the same schedule."""
        return {
            "schedule": self.cfg.schedule,
            "steps_per_epoch": self.steps_per_epoch,
            "planned_decay": [self.decay_from, self.horizon] if self.planned else None,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("planned_decay"):  # planned from a time budget: it holds whatever the step limit is now
            self.decay_from, self.horizon = state["planned_decay"]
            self.planned = True
        saved = state["steps_per_epoch"]  # a resume on another replica count keeps it within a step or so
        if abs(saved - self.steps_per_epoch) > max(1, 0.05 * saved) and self.cfg.schedule == "epochs":
            raise ValueError(
                f"the checkpoint's epochs had {state['steps_per_epoch']} steps, now {self.steps_per_epoch}: "
                "resume with the same data and samples per update"
            )


# --- the GAN job ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class GanOptimConfig:
    """One optimizer each for G and D, with the same settings (the released MNIST config's)."""

    name: Literal["sgd", "adam"] = "sgd"  # sgd: with momentum, the paper's; adam: DCGAN's
    lr: float = 0.1
    lr_decay: float = 1.000004  # lr ÷ this after every step (the released config's ExponentialDecay)
    min_lr: float = 1e-6
    momentum: float = 0.5  # sgd: at epoch 1 ...
    final_momentum: float = 0.7  # ... rising linearly to this ...
    momentum_saturate_epoch: float = 250.0  # ... at this epoch (MomentumAdjustor)
    betas: tuple[float, float] = (0.5, 0.999)  # adam (DCGAN: β1 = 0.5)
    max_grad_norm: float = 0.0  # 0: no clipping (the paper's)

    def __post_init__(self) -> None:
        above(self, "optim", 0, "lr")
        at_least(self, "optim", 0, "min_lr", "max_grad_norm")
        at_least(self, "optim", 1, "lr_decay", "momentum_saturate_epoch")
        within(self, "optim", 0, 1, "momentum", "final_momentum")


def build_gan_optimizer(cfg: GanOptimConfig, params) -> torch.optim.Optimizer:
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)


class DecaySchedule:
    """lr = max(lr / decay^step, min_lr); for SGD, momentum from ``momentum`` at epoch 1 to
    ``final_momentum`` at ``momentum_saturate_epoch``, linearly. Stateless given the step."""

    def __init__(self, cfg: GanOptimConfig, steps_per_epoch: int) -> None:
        self.cfg, self.steps_per_epoch = cfg, steps_per_epoch

    def lr_at(self, step: int) -> float:
        return max(self.cfg.lr / self.cfg.lr_decay**step, self.cfg.min_lr)

    def momentum_at(self, step: int) -> float:
        cfg, epoch = self.cfg, 1 + step / self.steps_per_epoch  # epochs counted from 1, as pylearn2's
        ramp = min(max((epoch - 1) / max(cfg.momentum_saturate_epoch - 1, 1e-9), 0.0), 1.0)
        return cfg.momentum + (cfg.final_momentum - cfg.momentum) * ramp

    def apply(self, optimizers: list[torch.optim.Optimizer], step: int) -> float:
        lr, momentum = self.lr_at(step), self.momentum_at(step)
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr
                if "momentum" in group:
                    group["momentum"] = momentum
        return lr
