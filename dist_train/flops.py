"""Counting the work of a step and measuring what the machine's matmuls can do, for MFU."""

from __future__ import annotations

import time

import torch

from dist_train.models.seq2seq import Seq2SeqConfig
from dist_train.precision import DTYPES


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


def gemm_flops_per_s(m: int, k: int, n: int, precision: str, *, seconds: float = 1.0, windows: int = 5) -> float:
    """Measured FLOP/s of an (m×k)·(k×n) matmul in the precision's dtype, on this process's threads: the
    best of ``windows`` timing windows over ``seconds`` in all (a peak: other load only lowers a window)."""
    dtype = DTYPES.get(precision, torch.float32)
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    torch.mm(a, b)
    best = 0.0
    for _ in range(windows):
        runs, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / windows or runs < 2:
            torch.mm(a, b)
            runs += 1
        best = max(best, 2 * m * k * n * runs / elapsed)
    return best
