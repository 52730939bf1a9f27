"""Optimizers and learning-rate schedules: the paper's plain SGD with its halving schedule, by epochs
(its recipe) or by steps (short runs); Adam for the small models that must learn in minutes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch


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

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.max_grad_norm < 0:
            raise ValueError("optim.lr must be positive and optim.max_grad_norm non-negative")
        if self.schedule == "epochs" and self.halve_every_epochs <= 0:
            raise ValueError("optim.halve_every_epochs must be positive")
        if self.schedule == "steps" and (self.halve_after_steps < 0 or self.halve_every_steps <= 0):
            raise ValueError("schedule=steps needs optim.halve_every_steps > 0 and optim.halve_after_steps >= 0")


def build_optimizer(cfg: OptimConfig, params) -> torch.optim.Optimizer:
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    return torch.optim.SGD(params, lr=cfg.lr)


class HalvingSchedule:
    """lr = base until ``after``, then halved at ``after`` and every ``every`` after it.

    Positions are epochs (fractional: step / steps_per_epoch) or steps. The paper (§3.4): "after
    5 epochs, we begun halving the learning rate every half epoch".
    """

    def __init__(self, cfg: OptimConfig, steps_per_epoch: int) -> None:
        self.cfg, self.steps_per_epoch = cfg, steps_per_epoch

    def lr_at(self, step: int) -> float:
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
        """Stateless given the step; saved so a resumed run can check it uses the same schedule."""
        return {"schedule": self.cfg.schedule, "steps_per_epoch": self.steps_per_epoch}

    def load_state_dict(self, state: dict) -> None:
        if state["steps_per_epoch"] != self.steps_per_epoch and self.cfg.schedule == "epochs":
            raise ValueError(
                f"the checkpoint's epochs had {state['steps_per_epoch']} steps, now {self.steps_per_epoch}: "
                "resume with the same data, batching and number of replicas"
            )
