"""Sutskever, Vinyals & Le (2014): a deep LSTM encoder–decoder with a full softmax.

The encoder reads the source reversed (a switch, for the paper's ablation); the decoder starts
from the encoder's final (h, c) of every layer. Padding never changes the answer: every sentence's
final encoder state is taken at its own last token, and the decoder is causal, so padding after a
target cannot reach its real tokens.

``attention`` (off in the paper's preset) adds Luong et al.'s (2015) global "general" attention
over the top encoder layer's outputs, applied to the top decoder layer's outputs before the
softmax, without input feeding: the recurrence stays the paper's, so it pipelines the same way,
and a small model on little data learns to translate instead of only to produce French.
``copy`` (with attention) adds a pointer-generator's copy path (``dist_train.models.copying``).

Every layer is its own module and every layer call moves its input to that layer's device, so a
placement (``dist_train.parallel.placement``) can put layers on different devices from outside,
and a pipeline (``dist_train.parallel.pipeline``) can run the same layer windows in another order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from data_shards.checks import above, at_least, within
from data_shards.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from dist_train.models.copying import copy_token_losses, mix_log_prob_slices
from dist_train.models.lstm_windows import (
    Memory,
    State,
    inverse,
    run_lstm,
    run_window,
    unsort_memory,
    unsort_state,
)
from dist_train.models.numerics import at_least_fp32


@dataclass(frozen=True, kw_only=True)
class Seq2SeqConfig:
    embed_dim: int = 1000
    hidden_dim: int = 1000
    num_layers: int = 4
    reverse_source: bool = True
    init_range: float = 0.08
    dropout: float = 0.0
    attention: bool = False
    copy: bool = False  # pointer-generator: the softmax mixed with copying attended source tokens

    def __post_init__(self) -> None:
        at_least(self, "model", 1, "embed_dim", "hidden_dim", "num_layers")
        above(self, "model", 0, "init_range")
        within(self, "model", 0.0, 1.0, "dropout")
        if self.copy and not self.attention:
            raise ValueError("model.copy copies what attention reads: it needs model.attention=true")


@dataclass(frozen=True)
class Readout:
    """What the output layer reads at each decoder step, and with copying what it mixes in."""

    features: torch.Tensor  # (batch, time, hidden): the softmax's input
    attention: torch.Tensor | None = None  # (batch, time, src_time) over the memory's positions
    gate_logit: torch.Tensor | None = None  # (batch, time): logit of generating rather than copying
    copy_ids: torch.Tensor | None = None  # (batch, src_time), as ``Memory.copy_ids``


def reverse_padded(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first ``length`` entries in place of them; padding stays at the end."""
    time = torch.arange(tokens.shape[1], device=tokens.device)  # (time,)
    lengths = lengths.to(tokens.device, non_blocking=True).unsqueeze(1)  # (batch, 1)
    index = torch.where(time < lengths, lengths - 1 - time, time)  # (batch, time)
    return tokens.gather(1, index)


def teacher_forcing(tgt_tokens: torch.Tensor, tgt_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder inputs ``<s> y1..yn`` and targets ``y1..yn </s>``, both (batch, max_len + 1), PAD-padded."""
    batch = tgt_tokens.shape[0]
    bos = torch.full((batch, 1), BOS_ID, dtype=tgt_tokens.dtype, device=tgt_tokens.device)
    pad = torch.full((batch, 1), PAD_ID, dtype=tgt_tokens.dtype, device=tgt_tokens.device)
    decoder_in = torch.cat([bos, tgt_tokens], dim=1)
    targets = torch.cat([tgt_tokens, pad], dim=1)
    targets.scatter_(1, tgt_lengths.to(tgt_tokens.device, non_blocking=True).unsqueeze(1), EOS_ID)
    return decoder_in, targets


class OutputLayer(nn.Linear):
    """The full softmax: logits, per-token cross-entropy, and log-probabilities for beam search.
    ``dist_train.parallel.vocab_parallel`` offers the same three, split by vocabulary over devices."""

    def token_losses(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (at least fp32) of (..., hidden) features against (...) targets; 0 at padding."""
        return token_losses(self(hidden.to(self.weight.device)), targets.to(self.weight.device))

    def log_prob_slices(self, hidden: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        """[(0, log-probabilities over the whole vocabulary)]: one slice, at offset 0."""
        return [(0, F.log_softmax(at_least_fp32(self(hidden.to(self.weight.device))), dim=-1))]


class Seq2Seq(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig, *, src_vocab_size: int, tgt_vocab_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.src_embed = nn.Embedding(src_vocab_size, cfg.embed_dim, padding_idx=PAD_ID)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, cfg.embed_dim, padding_idx=PAD_ID)
        self.encoder = self._layers()
        self.decoder = self._layers()
        if cfg.attention:
            self.attention_score = nn.Linear(cfg.hidden_dim, cfg.hidden_dim, bias=False)  # Luong's W_a
            self.attention_combine = nn.Linear(2 * cfg.hidden_dim, cfg.hidden_dim, bias=False)  # Luong's W_c
        if cfg.copy:
            self.copy_gate = nn.Linear(cfg.hidden_dim, 1)
            # set from the vocabularies by whoever builds the model (copying.source_to_target)
            self.register_buffer("source_to_target", torch.full((src_vocab_size,), UNK_ID, dtype=torch.long))
        self.output = OutputLayer(cfg.hidden_dim, tgt_vocab_size)
        self.reset_parameters()

    def _layers(self) -> nn.ModuleList:
        sizes = [self.cfg.embed_dim] + [self.cfg.hidden_dim] * (self.cfg.num_layers - 1)
        return nn.ModuleList(nn.LSTM(size, self.cfg.hidden_dim, batch_first=True) for size in sizes)

    def reset_parameters(self) -> None:
        """The paper's §3.4 initialization: every parameter uniform in [-init_range, init_range]."""
        for param in self.parameters():
            nn.init.uniform_(param, -self.cfg.init_range, self.cfg.init_range)
        with torch.no_grad():
            self.src_embed.weight[PAD_ID].zero_()
            self.tgt_embed.weight[PAD_ID].zero_()

    def between_layers(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """Dropout on a layer's output before the next layer (none after the top one)."""
        if self.cfg.dropout and layer < self.cfg.num_layers - 1:
            return F.dropout(x, self.cfg.dropout, self.training)
        return x

    # --- encoder ------------------------------------------------------------------------------

    def encoder_order(self, src_tokens: torch.Tensor, src_lengths: torch.Tensor) -> torch.Tensor:
        """The source tokens in the order the encoder reads them: reversed when the config says so."""
        src_tokens = src_tokens.to(self.src_embed.weight.device)
        return reverse_padded(src_tokens, src_lengths) if self.cfg.reverse_source else src_tokens

    def embed_source(self, src_tokens: torch.Tensor, src_lengths: torch.Tensor) -> torch.Tensor:
        """(batch, time, embed), in the encoder's order, on the embedding's device."""
        return self.src_embed(self.encoder_order(src_tokens, src_lengths))

    def memory(self, top, restore, sorted_lengths, src_tokens, src_lengths) -> Memory | None:
        """What attention reads (None without attention), from the top encoder layer's outputs of
        the length-sorted batch; with copying, the source tokens as target ids come along."""
        if not self.cfg.attention:
            return None
        copy_ids = None
        if self.cfg.copy:
            copy_ids = self.source_to_target[
                self.encoder_order(src_tokens, src_lengths).to(self.source_to_target.device)
            ]
        return unsort_memory(top, restore, sorted_lengths, copy_ids)

    def encode(self, src_tokens: torch.Tensor, src_lengths: torch.Tensor) -> tuple[State, Memory | None]:
        """Final (h, c) of every encoder layer for each sentence, whatever the padding, and the
        memory attention reads (None without attention)."""
        lengths = src_lengths.cpu()
        order = torch.argsort(lengths, descending=True, stable=True)
        x = self.embed_source(src_tokens, src_lengths)
        x, lengths = x[order.to(x.device, non_blocking=True)], lengths[order]  # longest first
        restore, state = inverse(order), []
        for i, layer in enumerate(self.encoder):
            window = run_window(layer, x, None, lengths, 0)
            state.append(unsort_state(window.finals, restore))
            x = self.between_layers(window.outputs, i)
        return state, self.memory(x, restore, lengths, src_tokens, src_lengths)

    # --- decoder ------------------------------------------------------------------------------

    def decode(self, decoder_in: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Top-layer hidden states (batch, time, hidden) and the state after the last step."""
        x = self.tgt_embed(decoder_in.to(self.tgt_embed.weight.device))
        new_state = []
        for i, layer in enumerate(self.decoder):
            x, layer_state = run_lstm(layer, x, state[i])
            new_state.append(layer_state)
            x = self.between_layers(x, i)
        return x, new_state

    def readout(self, hidden: torch.Tensor, memory: Memory | None) -> Readout:
        """What the softmax reads at each decoder step: the top decoder layer's output, or with
        attention Luong's tanh(W_c [context; output]), with the attention weights; with copying,
        the gate too."""
        if memory is None:
            return Readout(hidden)
        features, weights = self.attend(hidden, memory)
        if not self.cfg.copy:
            return Readout(features, weights)
        return Readout(features, weights, self.copy_gate(features).squeeze(-1), memory.copy_ids)

    def attend(self, hidden: torch.Tensor, memory: Memory) -> tuple[torch.Tensor, torch.Tensor]:
        """Luong's attentional output and the attention weights (batch, time, src_time) over the
        memory's positions (the encoder's order: reversed when the source is)."""
        hidden = hidden.to(self.attention_score.weight.device)
        outputs, mask = memory.outputs.to(hidden.device), memory.mask.to(hidden.device)
        scores = self.attention_score(hidden) @ outputs.transpose(1, 2)  # (batch, time, src_time)
        weights = torch.softmax(scores.masked_fill(~mask.unsqueeze(1), float("-inf")), dim=-1)
        context = weights @ outputs  # (batch, time, hidden)
        return torch.tanh(self.attention_combine(torch.cat([context, hidden], dim=-1))), weights

    # --- the whole model ----------------------------------------------------------------------

    def read(self, src_tokens: torch.Tensor, src_lengths: torch.Tensor, decoder_in: torch.Tensor) -> Readout:
        """What the output layer reads for teacher-forced decoder inputs."""
        state, memory = self.encode(src_tokens, src_lengths)
        hidden, _ = self.decode(decoder_in, state)
        return self.readout(hidden, memory)

    def forward(
        self,
        src_tokens: torch.Tensor,
        src_lengths: torch.Tensor,
        decoder_in: torch.Tensor,
        target_positions: torch.Tensor,
        targets: torch.Tensor,
    ) -> torch.Tensor:
        """Cross-entropy (tokens,) of the real targets, at ``target_positions`` (tokens,), their indices in
        the flattened (batch, time) decoder steps: the softmax runs on real target positions only,
        never on padding, and selecting them needs no device round trip (a boolean mask would)."""
        return self.target_losses(self.read(src_tokens, src_lengths, decoder_in), target_positions, targets)

    def target_losses(self, readout: Readout, positions: torch.Tensor | None, targets: torch.Tensor) -> torch.Tensor:
        """Per-token cross-entropy (tokens,) of ``targets`` at ``positions``, indices into the readout's
        flattened (batch, time); or, with ``positions`` None, at every position (``targets`` then
        (batch·time,), PAD where there is none, whose loss is 0)."""

        def pick(x: torch.Tensor) -> torch.Tensor:  # (batch, time, ...) → (tokens, ...)
            x = x.flatten(0, 1)
            return x if positions is None else x[positions.to(x.device, non_blocking=True)]

        losses = self.output.token_losses(pick(readout.features), targets)
        if readout.gate_logit is None:
            return losses
        ids = readout.copy_ids.unsqueeze(1).expand(-1, readout.features.shape[1], -1)  # (batch, time, src_time)
        return copy_token_losses(losses, pick(readout.gate_logit), pick(readout.attention), pick(ids), targets)

    def log_prob_slices(self, readout: Readout) -> list[tuple[int, torch.Tensor]]:
        """log p(next token) for one decoder step (``readout`` of time 1), as the output layer's
        vocabulary slices [(offset, (batch, size))]."""
        slices = self.output.log_prob_slices(readout.features[:, 0])
        if readout.gate_logit is None:
            return slices
        return mix_log_prob_slices(slices, readout.gate_logit[:, 0], readout.attention[:, 0], readout.copy_ids)

    def logits(self, src_tokens: torch.Tensor, src_lengths: torch.Tensor, decoder_in: torch.Tensor) -> torch.Tensor:
        """(batch, time, tgt_vocab) softmax logits (before any copying) for teacher-forced decoder
        inputs: for short inputs and tests."""
        return self.output(self.read(src_tokens, src_lengths, decoder_in).features)


def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy, at least fp32, shaped like ``targets``; zero at padding.

    ``logits`` is (..., vocab) with ``targets`` (...): (batch, time) or flat (tokens,).
    """
    logits = at_least_fp32(logits)
    flat = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD_ID, reduction="none"
    )
    return flat.view(targets.shape)
