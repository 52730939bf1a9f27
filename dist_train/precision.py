"""``precision=fp32|bf16|fp16``: autocast around the forward, fp32 master weights, fp16 loss scaling;
and ``train.lstm_precision``, the precision the LSTM recurrence runs in, chosen explicitly rather than
left to autocast (``dist_train.models.numerics`` says why and applies it).
"""

from __future__ import annotations

import contextlib
import os
from typing import Literal

import torch

from data_shards.errors import UserError
from dist_train.models.numerics import DTYPES, choose_recurrence_dtype, lstm_precision, recurrence_dtype

Precision = Literal["fp32", "bf16", "fp16"]
LstmPrecision = Literal["auto", "fp32", "bf16", "fp16"]


def check_lstm_precision(precision: str, lstm_precision: str) -> None:
    """ValueError for a recurrence precision the run's precision cannot pair with."""
    allowed = {"fp32": ("auto", "fp32"), "bf16": ("auto", "fp32", "bf16"), "fp16": ("auto", "fp32", "fp16")}
    if lstm_precision not in allowed.get(precision, ()):
        raise ValueError(
            f"train.lstm_precision={lstm_precision} does not go with precision={precision}: "
            f"use one of {', '.join(allowed.get(precision, ('auto',)))} (fp16 needs the loss scaler of precision=fp16)"
        )


def recurrence_precision(device_type: str, precision: str, lstm_precision: str = "auto") -> str:
    """What the LSTM recurrence of a run of ``precision`` on ``device_type`` runs in: fp32, bf16 or fp16."""
    if precision == "fp32":
        return "fp32"
    cudnn = torch.backends.cudnn.version() if device_type == "cuda" else None
    dtype = choose_recurrence_dtype(device_type, DTYPES[precision], lstm_precision, cudnn)
    return next(name for name, known in DTYPES.items() if known == dtype)


class MixedPrecision:
    """The forward's autocast context and the backward's loss scaler for one precision."""

    def __init__(self, precision: Precision, device: torch.device, lstm_precision: LstmPrecision = "auto") -> None:
        if precision == "fp16" and device.type != "cuda":
            raise UserError(None, "train.precision=fp16 needs a GPU (use bf16 on CPU)")
        check_lstm_precision(precision, lstm_precision)
        self.precision, self.device, self.lstm_precision = precision, device, lstm_precision
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    @contextlib.contextmanager
    def autocast(self):
        if self.precision == "fp32":
            yield
            return
        with lstm_precision(self.lstm_precision), torch.autocast(self.device.type, dtype=DTYPES[self.precision]):
            yield

    def describe(self) -> str:
        """What runs in which precision, for the start-up line."""
        if self.precision == "fp32":
            return "fp32"
        with self.autocast():
            lstm = recurrence_dtype(self.device)
        return f"{self.precision} autocast, LSTM recurrence in {str(lstm).removeprefix('torch.')}"

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Apply the update (with fp16, the scaler skips it when it found inf/NaN gradients)."""
        if not self.scaler.is_enabled():
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.scaler.load_state_dict(state)


def configure_numerics(*, tf32: bool, deterministic: bool) -> None:
    """The process's float32 matmul/cuDNN precision and determinism, set once, explicitly: cuDNN's default
    TF32 (10-bit mantissa on Ampere and later) would meet fp32 tolerances by chance only.

    ``deterministic`` makes a CUDA run repeat bit for bit (a resume that equals the uninterrupted run):
    atomics-based kernels (index and gather backward) are replaced or refused, cuDNN picks fixed
    algorithms, and cuBLAS a fixed workspace (its variable must be set before cuBLAS starts).
    """
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = False
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
