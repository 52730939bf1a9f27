"""Copying source tokens: See, Liu & Manning's (2017) pointer-generator, over the target vocabulary.

At each decoder step a gate g = σ(w·output + b) mixes the softmax with the attention weights, read as
a distribution over the source tokens' ids in the target vocabulary:

    p(y) = g · p_vocab(y) + (1 − g) · Σ_{i : source_i ↦ y} attention_i

A source word the target vocabulary lacks maps to ``<unk>``; copying it yields ``<unk>``, which
decoding then replaces by that source word. Names, numbers and other untranslated tokens thus get
a path that needs no vocabulary entry and no translation, and a model trained for minutes learns
to use it early: the gradient through the copy term teaches attention to find identical tokens.

Everything is computed from per-token vectors (the softmax's cross-entropy, the gate, attention
weights), so it composes with the vocabulary-parallel softmax: no full distribution is built in
training, and beam search mixes each vocabulary slice on its own device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from data_shards.vocab import PAD_ID, SPECIALS, UNK_ID
from dist_train.models.numerics import at_least_fp32

TINY = 1e-30  # the copy probability's floor under log: exactly 0 would give NaN gradients


def source_to_target(src_tokens: list[str], tgt_tokens: list[str]) -> torch.Tensor:
    """(len(src_tokens),) the target id of each source vocabulary entry, ``<unk>`` where the target
    vocabulary lacks it; the special tokens map to themselves."""
    tgt_ids = {token: i for i, token in enumerate(tgt_tokens)}
    ids = [tgt_ids.get(token, UNK_ID) for token in src_tokens]
    ids[: len(SPECIALS)] = range(len(SPECIALS))
    return torch.tensor(ids, dtype=torch.long)


def _log_gates(gate_logit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log g and log(1 − g), at least in fp32."""
    gate_logit = at_least_fp32(gate_logit)
    return F.logsigmoid(gate_logit), F.logsigmoid(-gate_logit)


def copy_token_losses(
    vocab_losses: torch.Tensor, gate_logit: torch.Tensor, attention: torch.Tensor, ids: torch.Tensor, targets
) -> torch.Tensor:
    """−log p(target) of the mixture, per token: ``vocab_losses`` (tokens,) the softmax's
    cross-entropy, ``gate_logit`` (tokens,), ``attention`` (tokens, src_time), ``ids`` (tokens,
    src_time) the memory positions' target ids, ``targets`` (tokens,). Zero at padding targets."""
    device = vocab_losses.device
    targets = targets.to(device)
    attention, ids, gate_logit = at_least_fp32(attention.to(device)), ids.to(device), gate_logit.to(device)
    copied = (attention * (ids == targets.unsqueeze(1))).sum(dim=1)  # (tokens,)
    log_generate, log_copy = _log_gates(gate_logit)
    log_p = torch.logaddexp(log_generate - vocab_losses, log_copy + copied.clamp_min(TINY).log())
    return (-log_p).masked_fill(targets == PAD_ID, 0.0)


def mix_log_prob_slices(
    slices: list[tuple[int, torch.Tensor]], gate_logit: torch.Tensor, attention: torch.Tensor, ids: torch.Tensor
) -> list[tuple[int, torch.Tensor]]:
    """The mixture's log-probabilities for one decoder step, slice by vocabulary slice: ``slices``
    [(offset, (rows, size))] of the softmax, ``gate_logit`` (rows,), ``attention`` and ``ids`` (rows,
    src_time)."""
    mixed = []
    for offset, log_probs in slices:
        device, size = log_probs.device, log_probs.shape[1]
        local = ids.to(device) - offset
        owned = (local >= 0) & (local < size)
        weights = torch.where(owned, at_least_fp32(attention.to(device)), torch.zeros((), device=device))
        copied = torch.zeros_like(log_probs).scatter_add_(1, local.clamp(0, size - 1), weights)
        log_generate, log_copy = _log_gates(gate_logit.to(device))
        mixed.append(
            (
                offset,
                torch.logaddexp(
                    log_generate.unsqueeze(1) + log_probs, log_copy.unsqueeze(1) + copied.clamp_min(TINY).log()
                ),
            )
        )
    return mixed
