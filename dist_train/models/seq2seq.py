"""Sutskever, Vinyals & Le (2014): a deep LSTM encoder–decoder with a full softmax.

The encoder reads the source reversed (a switch, for the paper's ablation); the decoder starts
from the encoder's final (h, c) of every layer. Padding never changes the answer: every sentence's
final encoder state is taken at its own last token, and the decoder is causal, so padding after a
target cannot reach its real tokens.

``attention`` (off in the paper's preset) adds Luong et al.'s (2015) global "general" attention
over the top encoder layer's outputs, applied to the top decoder layer's outputs before the
softmax, without input feeding: the recurrence stays the paper's, so it pipelines the same way,
and a small model on little data learns to translate instead of only to produce French.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from data_shards.vocab import BOS_ID, EOS_ID, PAD_ID


@dataclass(frozen=True, kw_only=True)
class Seq2SeqConfig:
    embed_dim: int = 1000
    hidden_dim: int = 1000
    num_layers: int = 4
    reverse_source: bool = True
    init_range: float = 0.08
    dropout: float = 0.0
    attention: bool = False

    def __post_init__(self) -> None:
        if min(self.embed_dim, self.hidden_dim, self.num_layers) < 1:
            raise ValueError("model.embed_dim, model.hidden_dim and model.num_layers must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("model.dropout must be in [0, 1)")


State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (num_layers, batch, hidden)


@dataclass(frozen=True)
class Memory:
    """What attention reads: the top encoder layer's outputs and where they are real tokens."""

    outputs: torch.Tensor  # (batch, src_time, hidden), zero at padding
    mask: torch.Tensor  # (batch, src_time), true at real tokens

    def repeat_interleave(self, times: int) -> Memory:
        return Memory(self.outputs.repeat_interleave(times, dim=0), self.mask.repeat_interleave(times, dim=0))


def run_lstm(lstm: nn.LSTM, inputs, state: State | None = None):
    """``lstm(inputs, state)``, kept in fp32 under CPU autocast.

    oneDNN's CPU LSTM rejects the all-bf16 arguments autocast hands it ("unsupported datatype":
    it wants an fp32 bias), so on CPU the recurrence runs in fp32 and autocast still covers the
    embedding-free rest of the model (the output projection, the largest matmul).
    """
    device = lstm.weight_hh_l0.device
    if device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
        return lstm(inputs, state)
    with torch.autocast("cpu", enabled=False):
        if isinstance(inputs, torch.Tensor):
            inputs = inputs.float()
        state = None if state is None else (state[0].float(), state[1].float())
        return lstm(inputs, state)


def reverse_padded(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first ``length`` tokens in place of them; padding stays at the end."""
    time = torch.arange(tokens.shape[1], device=tokens.device)  # (time,)
    lengths = lengths.to(tokens.device).unsqueeze(1)  # (batch, 1)
    index = torch.where(time < lengths, lengths - 1 - time, time)  # (batch, time)
    return tokens.gather(1, index)


def teacher_forcing(tgt_tokens: torch.Tensor, tgt_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder inputs ``<s> y1..yn`` and targets ``y1..yn </s>``, both (batch, max_len + 1), PAD-padded."""
    batch = tgt_tokens.shape[0]
    bos = torch.full((batch, 1), BOS_ID, dtype=tgt_tokens.dtype, device=tgt_tokens.device)
    pad = torch.full((batch, 1), PAD_ID, dtype=tgt_tokens.dtype, device=tgt_tokens.device)
    decoder_in = torch.cat([bos, tgt_tokens], dim=1)
    targets = torch.cat([tgt_tokens, pad], dim=1)
    targets.scatter_(1, tgt_lengths.to(tgt_tokens.device).unsqueeze(1), EOS_ID)
    return decoder_in, targets


class Seq2Seq(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig, *, src_vocab_size: int, tgt_vocab_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.src_embed = nn.Embedding(src_vocab_size, cfg.embed_dim, padding_idx=PAD_ID)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, cfg.embed_dim, padding_idx=PAD_ID)
        lstm = dict(hidden_size=cfg.hidden_dim, num_layers=cfg.num_layers, batch_first=True, dropout=cfg.dropout)
        self.encoder = nn.LSTM(cfg.embed_dim, **lstm)
        self.decoder = nn.LSTM(cfg.embed_dim, **lstm)
        if cfg.attention:
            self.attention_score = nn.Linear(cfg.hidden_dim, cfg.hidden_dim, bias=False)  # Luong's W_a
            self.attention_combine = nn.Linear(2 * cfg.hidden_dim, cfg.hidden_dim, bias=False)  # Luong's W_c
        self.output = nn.Linear(cfg.hidden_dim, tgt_vocab_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The paper's §3.4 initialization: every parameter uniform in [-init_range, init_range]."""
        for param in self.parameters():
            nn.init.uniform_(param, -self.cfg.init_range, self.cfg.init_range)
        with torch.no_grad():
            self.src_embed.weight[PAD_ID].zero_()
            self.tgt_embed.weight[PAD_ID].zero_()

    def encode(self, src_tokens: torch.Tensor, src_lengths: torch.Tensor) -> tuple[State, Memory | None]:
        """Final (h, c) of every encoder layer for each sentence, whatever the padding, and the
        memory attention reads (None without attention)."""
        if self.cfg.reverse_source:
            src_tokens = reverse_padded(src_tokens, src_lengths)
        return self._encode_by_length(self.src_embed(src_tokens), src_lengths.cpu())

    def _encode_by_length(self, embedded: torch.Tensor, lengths: torch.Tensor) -> tuple[State, Memory | None]:
        """The encoder run in segments between the batch's distinct lengths, longest rows first.

        Each segment is one plain (fused, fast) LSTM call over the rows still running, starting from
        their state at the previous boundary; a row's final state is taken where it ends. Exactly
        what packing computes, without the packed path's per-step fallback on CPU.
        """
        order = torch.argsort(lengths, descending=True, stable=True)
        embedded, lengths = embedded[order.to(embedded.device)], lengths[order]  # (batch, time, embed)
        finals_h, finals_c, outputs, state, start = [], [], [], None, 0
        for length in torch.unique(lengths).tolist():  # ascending
            running = int((lengths >= length).sum())
            ending = int((lengths == length).sum())
            if state is not None:
                state = (state[0][:, :running], state[1][:, :running])
            segment, state = run_lstm(self.encoder, embedded[:running, start:length], state)
            if self.cfg.attention:  # rows that have ended are zero in this segment
                outputs.append(F.pad(segment, (0, 0, 0, 0, 0, len(order) - running)))
            finals_h.append(state[0][:, running - ending : running])
            finals_c.append(state[1][:, running - ending : running])
            start = length
        restore = torch.empty_like(order)
        restore[order] = torch.arange(len(order))
        restore = restore.to(embedded.device)
        final = torch.cat(finals_h[::-1], dim=1)[:, restore], torch.cat(finals_c[::-1], dim=1)[:, restore]
        if not self.cfg.attention:
            return final, None
        mask = torch.arange(start, device=embedded.device) < lengths[restore].to(embedded.device).unsqueeze(1)
        return final, Memory(torch.cat(outputs, dim=1)[restore], mask)

    def readout(self, hidden: torch.Tensor, memory: Memory | None) -> torch.Tensor:
        """What the softmax reads at each decoder step (batch, time, hidden): the top decoder
        layer's output, or with attention Luong's tanh(W_c [context; output])."""
        return hidden if memory is None else self.attend(hidden, memory)[0]

    def attend(self, hidden: torch.Tensor, memory: Memory) -> tuple[torch.Tensor, torch.Tensor]:
        """Luong's attentional output and the attention weights (batch, time, src_time) over the
        memory's positions (the encoder's order: reversed when the source is)."""
        scores = self.attention_score(hidden) @ memory.outputs.transpose(1, 2)  # (batch, time, src_time)
        weights = torch.softmax(scores.masked_fill(~memory.mask.unsqueeze(1), float("-inf")), dim=-1)
        context = weights @ memory.outputs  # (batch, time, hidden)
        return torch.tanh(self.attention_combine(torch.cat([context, hidden], dim=-1))), weights

    def decode(self, decoder_in: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Top-layer hidden states (batch, time, hidden) and the state after the last step."""
        hidden, state = run_lstm(self.decoder, self.tgt_embed(decoder_in), state)
        return hidden, state

    def forward(
        self,
        src_tokens: torch.Tensor,
        src_lengths: torch.Tensor,
        decoder_in: torch.Tensor,
        target_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits for teacher-forced decoder inputs: (batch, time, tgt_vocab), or (tokens, tgt_vocab)
        for only the positions where ``target_mask`` (batch, time) is true (no softmax on padding)."""
        state, memory = self.encode(src_tokens, src_lengths)
        hidden, _ = self.decode(decoder_in, state)
        hidden = self.readout(hidden, memory)
        if target_mask is not None:
            hidden = hidden[target_mask]  # (tokens, hidden)
        return self.output(hidden)


def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy, at least fp32, shaped like ``targets``; zero at padding.

    ``logits`` is (..., vocab) with ``targets`` (...): (batch, time) or flat (tokens,).
    """
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    flat = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD_ID, reduction="none"
    )
    return flat.view(targets.shape)
