"""Counting the work of a step, and measuring what the device's matmuls can do, for MFU.

MFU = counted FLOPs per second / the matmul peak. The peak is the best rate over a sweep of matmul
shapes that includes the ones the model runs (the LSTM's gate, recurrent and input-projection
matmuls, the output projection, their backward transposes) and a few large squares, in the dtype
each runs in, on the device in use. A peak taken on one shape only can sit below what the model's
other matmuls reach, and MFU then exceeds 1: the peak was wrong, not the model super-efficient.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from dist_train.models.seq2seq import Seq2SeqConfig
from dist_train.precision import DTYPES, recurrence_precision
from dist_train.timing import best_rate

TOKENS_PER_SENTENCE = 30  # a typical WMT sentence: the rows of the batch × time matmuls
SQUARES = {"cpu": (512, 1024), "cuda": (4096, 8192)}  # large square matmuls: what a device does at its best
# the largest matmul a sweep times (bigger shapes are trimmed to it, halving their largest side): a
# CPU takes ~50 ms for 4 GFLOP, so the paper's 614-GFLOP output projection does not take seconds a call
MAX_CALL_FLOPS = {"cpu": 4e9, "cuda": 2e12}


def lstm_flops_per_token(cfg: Seq2SeqConfig) -> float:
    """Forward FLOPs of one token through a deep LSTM: 4 gates × (input + recurrent) matmuls."""
    first = 2 * 4 * cfg.hidden_dim * (cfg.embed_dim + cfg.hidden_dim)
    rest = 2 * 4 * cfg.hidden_dim * (2 * cfg.hidden_dim) * (cfg.num_layers - 1)
    return first + rest


def s2s_step_flops(
    cfg: Seq2SeqConfig, tgt_vocab_size: int, src_tokens: int, tgt_tokens: int, attention_pairs: int = 0
) -> float:
    """Matmul FLOPs of one training step (forward + backward = 3 × forward); ``tgt_tokens`` counts </s>;
    ``attention_pairs`` is Σ source length × target length over the batch (attention scores and context)."""
    hidden = cfg.hidden_dim
    forward = lstm_flops_per_token(cfg) * (src_tokens + tgt_tokens) + 2 * hidden * tgt_vocab_size * tgt_tokens
    if cfg.attention:  # W_a and W_c per target token, then scores and context per (source, target) pair
        forward += 2 * 3 * hidden * hidden * tgt_tokens + 2 * 2 * hidden * attention_pairs
    return 3 * forward


@dataclass(frozen=True)
class MatmulShape:
    """An (m×k)·(k×n) matmul in ``precision`` (fp32|bf16|fp16); ``name`` says where a model runs it."""

    name: str
    m: int
    k: int
    n: int
    precision: str = "fp32"

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.k * self.n

    @property
    def label(self) -> str:
        return f"{self.name} {self.m}x{self.k}x{self.n} {self.precision}"

    def backward(self) -> list[MatmulShape]:
        """The two matmuls of this one's backward: the input's gradient (m×n)·(n×k) and the
        weight's (k×m)·(m×n)."""
        return [
            replace(self, name=f"{self.name}.grad_input", k=self.n, n=self.k),
            replace(self, name=f"{self.name}.grad_weight", m=self.k, k=self.m),
        ]

    def trimmed(self, max_flops: float) -> MatmulShape:
        """This shape with its largest side halved until one call is at most ``max_flops``."""
        shape = self
        while shape.flops > max_flops and max(shape.m, shape.k, shape.n) > 1:
            side = max(("m", "k", "n"), key=lambda s: getattr(shape, s))
            shape = replace(shape, **{side: (getattr(shape, side) + 1) // 2})
        return shape if shape == self else replace(shape, name=f"{self.name} (trimmed)")


def s2s_matmul_shapes(
    cfg: Seq2SeqConfig,
    *,
    batch_size: int,
    tgt_vocab_size: int,
    precision: str,
    device_type: str,
    lstm_precision: str = "auto",
    backward: bool = True,
) -> list[MatmulShape]:
    """The matmuls an s2s training step runs, at a typical sentence length: per LSTM layer the fused
    gates (rows = batch, k = input + hidden, n = 4 × hidden), the recurrent matmul of each time step
    and the input projection over the whole batch × time; attention's projections; the output
    projection; with ``backward`` each one's two gradient matmuls too. The LSTM's shapes are timed in
    the precision its recurrence runs in (``dist_train.precision.recurrence_precision``: fp32 on CPU
    unless ``lstm_precision`` says otherwise)."""
    h, e, rows = cfg.hidden_dim, cfg.embed_dim, batch_size * TOKENS_PER_SENTENCE
    lstm = recurrence_precision(device_type, precision, lstm_precision)
    shapes = [
        MatmulShape("lstm_gates.layer0", batch_size, e + h, 4 * h, lstm),
        MatmulShape("lstm_recurrent", batch_size, h, 4 * h, lstm),
        MatmulShape("lstm_input_projection.layer0", rows, e, 4 * h, lstm),
    ]
    if cfg.num_layers > 1:
        shapes += [
            MatmulShape("lstm_gates.upper", batch_size, 2 * h, 4 * h, lstm),
            MatmulShape("lstm_input_projection.upper", rows, h, 4 * h, lstm),
        ]
    if cfg.attention:
        shapes.append(MatmulShape("attention_projection", rows, h, h, precision))
    shapes.append(MatmulShape("output_projection", rows, h, tgt_vocab_size, precision))
    if backward:
        shapes += [grad for shape in shapes for grad in shape.backward()]
    return shapes


def square_shapes(device_type: str, precision: str) -> list[MatmulShape]:
    """A few large square matmuls, the shapes a device's peak is usually quoted for."""
    return [MatmulShape(f"square{n}", n, n, n, precision) for n in SQUARES.get(device_type, SQUARES["cpu"])]


@dataclass(frozen=True)
class MatmulPeak:
    """The best FLOP/s of a sweep, the shape that gave it, and every shape's rate (by label)."""

    flops_per_s: float
    shape: MatmulShape
    device: str
    sweep: dict[str, float]

    def as_dict(self) -> dict:
        return {
            "flops_per_s": round(self.flops_per_s),
            "shape": self.shape.label,
            "device": self.device,
            "sweep": {label: round(rate) for label, rate in self.sweep.items()},
        }


def time_matmul(shape: MatmulShape, device: str | torch.device, *, seconds: float, windows: int = 5) -> float:
    """FLOP/s of ``shape`` on ``device``: the best of ``windows`` windows over about ``seconds``, into
    a preallocated output (a fresh 100-MB output a call would time the allocator's page faults)."""
    dtype = DTYPES.get(shape.precision, torch.float32)
    a = torch.randn(shape.m, shape.k, device=device).to(dtype)
    b = torch.randn(shape.k, shape.n, device=device).to(dtype)
    out = torch.empty(shape.m, shape.n, device=device, dtype=dtype)
    return best_rate(lambda: torch.mm(a, b, out=out), shape.flops, device, seconds=seconds, windows=windows)


def matmul_peak(
    shapes: list[MatmulShape], device: str | torch.device, *, seconds: float = 1.0, windows: int = 5
) -> MatmulPeak:
    """The best rate over ``shapes`` (each trimmed to the device's MAX_CALL_FLOPS, each given an equal
    share of ``seconds``) on ``device``, in each shape's precision."""
    device = torch.device(device)
    cap = MAX_CALL_FLOPS.get(device.type, MAX_CALL_FLOPS["cpu"])
    timed = list(dict.fromkeys(shape.trimmed(cap) for shape in shapes))  # once each
    share = seconds / max(len(timed), 1)
    rates = {shape: time_matmul(shape, device, seconds=share, windows=windows) for shape in timed}
    best = max(rates, key=rates.get)
    return MatmulPeak(rates[best], best, str(device), {shape.label: rate for shape, rate in rates.items()})


def s2s_matmul_peak(
    cfg: Seq2SeqConfig,
    *,
    batch_size: int,
    tgt_vocab_size: int,
    precision: str,
    device: str | torch.device,
    lstm_precision: str = "auto",
    seconds: float = 1.0,
) -> MatmulPeak:
    """The peak an s2s model's MFU is taken against: its own matmuls (forward and backward) and the
    device's large squares, in the precision in use, on ``device``."""
    device = torch.device(device)
    model = s2s_matmul_shapes(
        cfg,
        batch_size=batch_size,
        tgt_vocab_size=tgt_vocab_size,
        precision=precision,
        device_type=device.type,
        lstm_precision=lstm_precision,
    )
    return matmul_peak([*model, *square_shapes(device.type, precision)], device, seconds=seconds)
