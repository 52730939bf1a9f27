"""The output softmax split by vocabulary over devices (the paper's 4 softmax GPUs).

Shard s holds rows ``[offset_s, offset_s + size_s)`` of the output projection on its own device
and computes only those logits. The cross-entropy combines the shards through per-token vectors
only: a global max, a global sum of exponentials, and the target's logit taken from the shard
that owns it, so no device ever holds the full ``[tokens × vocab]`` logits. Beam search reads
the same shards as log-probability slices (a top-k per shard, then a merge).

The module saves and loads as the plain ``nn.Linear`` it replaces (``weight``, ``bias`` whole), so
checkpoints do not depend on the layout that wrote them.
"""

from __future__ import annotations

import torch
from torch import nn

from data_shards.vocab import PAD_ID
from dist_train.models.numerics import at_least_fp32
from dist_train.models.seq2seq import OutputLayer


def shard_sizes(vocab_size: int, num_shards: int) -> list[int]:
    """As even as possible, the first shards one larger."""
    base, extra = divmod(vocab_size, num_shards)
    return [base + (1 if s < extra else 0) for s in range(num_shards)]


class VocabParallelOutput(nn.Module):
    def __init__(self, plain: OutputLayer, devices: list[torch.device]) -> None:
        super().__init__()
        vocab_size, hidden = plain.weight.shape
        if len(devices) > vocab_size:
            raise ValueError(f"cannot split a {vocab_size}-entry vocabulary over {len(devices)} devices")
        self.vocab_size, self.devices = vocab_size, list(devices)
        self.offsets, offset = [], 0
        with torch.no_grad():  # own parameters, not a ParameterList: the state dict is the plain layer's
            for s, (size, device) in enumerate(zip(shard_sizes(vocab_size, len(devices)), devices)):
                self.register_parameter(
                    f"weight_{s}", nn.Parameter(plain.weight[offset : offset + size].to(device).clone())
                )
                self.register_parameter(
                    f"bias_{s}", nn.Parameter(plain.bias[offset : offset + size].to(device).clone())
                )
                self.offsets.append(offset)
                offset += size

    @property
    def weights(self) -> list[nn.Parameter]:
        return [getattr(self, f"weight_{s}") for s in range(len(self.devices))]

    @property
    def biases(self) -> list[nn.Parameter]:
        return [getattr(self, f"bias_{s}") for s in range(len(self.devices))]

    # --- the shards' logits ------------------------------------------------------------------

    def _shard_logits(self, hidden: torch.Tensor) -> list[torch.Tensor]:
        return [
            nn.functional.linear(hidden.to(w.device, non_blocking=True), w, b)
            for w, b in zip(self.weights, self.biases)
        ]

    def _log_normalizer(self, logits: list[torch.Tensor], device: torch.device) -> torch.Tensor:
        """log Σ_vocab exp(logit), per row, from per-shard maxima and sums (at least fp32)."""
        logits = [at_least_fp32(x) for x in logits]
        shard_max = torch.stack([x.detach().amax(dim=-1).to(device) for x in logits])  # (shards, rows)
        top = shard_max.amax(dim=0)  # (rows,)
        total = sum((x - top.to(x.device).unsqueeze(-1)).exp().sum(dim=-1).to(device) for x in logits)
        return total.log() + top

    # --- what the model and beam search call -------------------------------------------------

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Full logits, gathered on the first shard's device: for small inputs and tests only."""
        return torch.cat([x.to(self.devices[0]) for x in self._shard_logits(hidden)], dim=-1)

    def token_losses(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (fp32) of (tokens, hidden) features against (tokens,) targets, on ``hidden``'s
        device; zero where the target is padding."""
        device = hidden.device
        logits = self._shard_logits(hidden)
        target_logit = torch.zeros(targets.shape, dtype=torch.float32, device=device)
        for x, offset in zip(logits, self.offsets):
            local = targets.to(x.device) - offset
            owned = (local >= 0) & (local < x.shape[-1])
            picked = at_least_fp32(x).gather(-1, local.clamp(0, x.shape[-1] - 1).unsqueeze(-1)).squeeze(-1)
            target_logit = target_logit + torch.where(owned, picked, torch.zeros_like(picked)).to(device)
        losses = self._log_normalizer(logits, device) - target_logit
        return losses.masked_fill(targets.to(device) == PAD_ID, 0.0)  # as the plain layer: none at padding

    def log_prob_slices(self, hidden: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        """(offset, log-probabilities of that vocabulary slice), one per shard, each on its device."""
        logits = self._shard_logits(hidden)
        normalizer = self._log_normalizer(logits, hidden.device)
        return [
            (offset, at_least_fp32(x) - normalizer.to(x.device).unsqueeze(-1))
            for x, offset in zip(logits, self.offsets)
        ]

    # --- saved as the plain layer -------------------------------------------------------------

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        weights = [w if keep_vars else w.detach() for w in self.weights]
        biases = [b if keep_vars else b.detach() for b in self.biases]
        destination[prefix + "weight"] = torch.cat([w.to(self.devices[0]) for w in weights])
        destination[prefix + "bias"] = torch.cat([b.to(self.devices[0]) for b in biases])

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        for name, shards in (("weight", self.weights), ("bias", self.biases)):
            key = prefix + name
            if key not in state_dict:
                missing.append(key)
                continue
            whole = state_dict[key]
            if whole.shape[0] != self.vocab_size:
                errors.append(f"{key}: {whole.shape[0]} vocabulary entries, this model has {self.vocab_size}")
                continue
            with torch.no_grad():
                for shard, offset in zip(shards, self.offsets):
                    shard.copy_(whole[offset : offset + shard.shape[0]])
        for key in state_dict:
            if key.startswith(prefix) and key[len(prefix) :] not in ("weight", "bias"):
                unexpected.append(key)
