"""How the models' arithmetic behaves under autocast: what a recurrence runs in, and sums kept in fp32.

Autocast's wrapper for cuDNN's RNNs casts to fp16 whatever the autocast dtype is, so under bf16 it would
run the LSTMs in fp16 with no loss scaler; on CPU, oneDNN rejects the mixed arguments autocast hands it.
So ``run_lstm`` (``lstm_windows``) asks ``recurrence_dtype`` and casts the inputs, state and weights
itself, outside autocast. The policy (``auto|fp32|bf16|fp16``) is set around a forward by whoever runs
it (``dist_train.precision.MixedPrecision.autocast``): ``auto`` is the autocast dtype where the device's
LSTM kernel takes it (CUDA: fp16; bf16 from cuDNN 9.13, the first cuDNN whose RNN takes bf16), else fp32,
and fp32 on CPU (bf16 is ~25× slower on AVX2-only CPUs; where AVX-512 BF16 makes it faster, set it:
docs/s2s.md, Precision).
"""

from __future__ import annotations

import contextlib
import contextvars

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
CUDNN_RNN_BF16 = 91300  # cuDNN 9.13: its RNNs take bf16 (pytorch#164411)

_lstm_precision: contextvars.ContextVar[str] = contextvars.ContextVar("lstm_precision", default="auto")


@contextlib.contextmanager
def lstm_precision(policy: str):
    """Inside, ``recurrence_dtype`` follows ``policy`` (auto|fp32|bf16|fp16)."""
    token = _lstm_precision.set(policy)
    try:
        yield
    finally:
        _lstm_precision.reset(token)


def choose_recurrence_dtype(
    device_type: str, autocast_dtype: torch.dtype, policy: str, cudnn_version: int | None
) -> torch.dtype:
    """What an LSTM inside an autocast region of ``autocast_dtype`` on ``device_type`` runs in."""
    if policy != "auto":
        return DTYPES[policy]
    if device_type != "cuda":
        return torch.float32
    if autocast_dtype == torch.bfloat16 and (cudnn_version or 0) < CUDNN_RNN_BF16:
        return torch.float32
    return autocast_dtype


def recurrence_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype the LSTM recurrence runs in on ``device`` here: None outside autocast (the weights' own)."""
    if not (torch.amp.is_autocast_available(device.type) and torch.is_autocast_enabled(device.type)):
        return None
    cudnn = torch.backends.cudnn.version() if device.type == "cuda" else None
    return choose_recurrence_dtype(device.type, torch.get_autocast_dtype(device.type), _lstm_precision.get(), cudnn)


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in fp32 if it is in half precision; losses and probabilities are never summed in fp16/bf16."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
