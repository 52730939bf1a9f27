"""``precision=fp32|bf16|fp16``: autocast around the forward, fp32 master weights, fp16 loss scaling;
and the precision the LSTM recurrence runs in, chosen explicitly rather than left to autocast.

Autocast's wrapper for cuDNN's RNNs casts to fp16 whatever the autocast dtype is, so under bf16 it
would run the LSTMs in fp16 with no loss scaler; on CPU, oneDNN rejects the mixed arguments autocast
hands it. So ``run_lstm`` (``dist_train.models.lstm_windows``) asks ``recurrence_dtype`` and casts the
inputs, state and weights itself, outside autocast. ``train.lstm_precision`` decides: ``auto`` is the
run's precision where the device's LSTM kernel takes it (CUDA: fp16; bf16 from cuDNN 9.13, the first
cuDNN whose RNN takes bf16), else fp32, and fp32 on CPU (bf16 is ~25× slower on AVX2-only CPUs; on one
with AVX-512 BF16 the bf16 recurrence was measured faster: ``train.lstm_precision=bf16`` there; README).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from typing import Literal

import torch

Precision = Literal["fp32", "bf16", "fp16"]
LstmPrecision = Literal["auto", "fp32", "bf16", "fp16"]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
CUDNN_RNN_BF16 = 91300  # cuDNN 9.13: its RNNs take bf16 (pytorch#164411)

_lstm_precision: contextvars.ContextVar[str] = contextvars.ContextVar("lstm_precision", default="auto")


def check_lstm_precision(precision: str, lstm_precision: str) -> None:
    """ValueError for a recurrence precision the run's precision cannot pair with."""
    allowed = {"fp32": ("auto", "fp32"), "bf16": ("auto", "fp32", "bf16"), "fp16": ("auto", "fp32", "fp16")}
    if lstm_precision not in allowed.get(precision, ()):
        raise ValueError(
            f"train.lstm_precision={lstm_precision} does not go with precision={precision}: "
            f"use one of {', '.join(allowed.get(precision, ('auto',)))} (fp16 needs the loss scaler of precision=fp16)"
        )


def choose_recurrence_dtype(
    device_type: str, autocast_dtype: torch.dtype, lstm_precision: str, cudnn_version: int | None
) -> torch.dtype:
    """What an LSTM inside an autocast region of ``autocast_dtype`` on ``device_type`` runs in."""
    if lstm_precision != "auto":
        return DTYPES[lstm_precision]
    if device_type != "cuda":
        return torch.float32
    if autocast_dtype == torch.bfloat16 and (cudnn_version or 0) < CUDNN_RNN_BF16:
        return torch.float32
    return autocast_dtype


def recurrence_precision(device_type: str, precision: str, lstm_precision: str = "auto") -> str:
    """What the LSTM recurrence of a run of ``precision`` on ``device_type`` runs in: fp32, bf16 or fp16."""
    if precision == "fp32":
        return "fp32"
    cudnn = torch.backends.cudnn.version() if device_type == "cuda" else None
    dtype = choose_recurrence_dtype(device_type, DTYPES[precision], lstm_precision, cudnn)
    return next(name for name, known in DTYPES.items() if known == dtype)


def recurrence_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype the LSTM recurrence runs in on ``device`` here: None outside autocast (the weights' own)."""
    if not (torch.amp.is_autocast_available(device.type) and torch.is_autocast_enabled(device.type)):
        return None
    cudnn = torch.backends.cudnn.version() if device.type == "cuda" else None
    return choose_recurrence_dtype(device.type, torch.get_autocast_dtype(device.type), _lstm_precision.get(), cudnn)


class MixedPrecision:
    """The forward's autocast context and the backward's loss scaler for one precision."""

    def __init__(self, precision: Precision, device: torch.device, lstm_precision: LstmPrecision = "auto") -> None:
        if precision == "fp16" and device.type != "cuda":
            raise ValueError("precision=fp16 needs a GPU (use bf16 on CPU)")
        check_lstm_precision(precision, lstm_precision)
        self.precision, self.device, self.lstm_precision = precision, device, lstm_precision
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    @contextlib.contextmanager
    def autocast(self):
        if self.precision == "fp32":
            yield
            return
        token = _lstm_precision.set(self.lstm_precision)
        try:
            with torch.autocast(self.device.type, dtype=DTYPES[self.precision]):
                yield
        finally:
            _lstm_precision.reset(token)

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


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in fp32 if it is in half precision; losses and probabilities are never summed in fp16/bf16."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
