"""Left-to-right beam search over one model or an ensemble (the paper's §3.3 decoder).

Batched: B sentences × K hypotheses run as one (B·K)-row decoder step. A hypothesis that emits
</s> leaves the beam and joins its sentence's finished list; a sentence is done once it has K
finished hypotheses or reaches its length limit. Ensembles average the members' log-probabilities.
With attention, each hypothesis also carries the source position it attended to most at every
step (averaged over the ensemble's attending members): what ``<unk>`` replacement copies from.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from data_shards.vocab import BOS_ID, EOS_ID, UNK_ID
from dist_train.models.lstm_windows import select_rows
from dist_train.models.seq2seq import Seq2Seq, reverse_padded


@dataclass(frozen=True, kw_only=True)
class BeamConfig:
    beam: int = 12
    max_len_a: float = 1.5  # a hypothesis may be at most a·source_length + b tokens long (then </s> is forced)
    max_len_b: int = 10
    length_penalty: float = 0.0  # GNMT's α: score / ((5 + len) / 6)^α; 0 ranks by log-probability (the paper)
    unk_penalty: float = 0.0  # subtracted from log p(<unk>) at every step (fairseq's --unkpen); inf forbids it

    def __post_init__(self) -> None:
        if self.beam < 1:
            raise ValueError("beam must be at least 1")


@dataclass(frozen=True)
class Hypothesis:
    tokens: list[int]  # without </s>
    attended: list[int] | None  # per token, the source position attended to most; None without attention


def _normalized(score: float, length: int, alpha: float) -> float:
    return score / (((5 + length) / 6) ** alpha) if alpha else score


def _step(models: list[Seq2Seq], tokens: torch.Tensor, states: list, memories: list, src_lengths: torch.Tensor):
    """Mean over the ensemble of log p(next | history), as the output layer's vocabulary slices
    [(offset, (rows, size))], and the source position each row attends to most (rows,), in the
    source's own order (None without attention). Updates ``states`` in place."""
    total, attention = None, None
    for i, model in enumerate(models):
        hidden, states[i] = model.decode(tokens.unsqueeze(1), states[i])
        readout = model.readout(hidden, memories[i])
        if readout.attention is not None:
            weights = readout.attention[:, 0].float()  # (rows, src_time), in the encoder's order
            if model.cfg.reverse_source:
                weights = reverse_padded(weights, src_lengths)
            attention = weights if attention is None else attention + weights
        slices = model.log_prob_slices(readout)
        if total is not None and [offset for offset, _ in slices] != [offset for offset, _ in total]:
            raise ValueError("an ensemble's members must split the vocabulary the same way")
        total = slices if total is None else [(o, t + x.to(t.device)) for (o, t), (_, x) in zip(total, slices)]
    slices = [(offset, log_probs / len(models)) for offset, log_probs in total]
    return slices, None if attention is None else attention.argmax(dim=1).to(tokens.device)


def _top_candidates(slices, scores: torch.Tensor, cfg: BeamConfig):
    """The 2k best (score, beam, token) continuations per sentence: a top-k in each vocabulary
    slice (on its device), then a merge."""
    batch, k = scores.shape
    found = []
    for offset, log_probs in slices:
        size = log_probs.shape[1]
        if cfg.unk_penalty and offset <= UNK_ID < offset + size:
            log_probs[:, UNK_ID - offset] -= cfg.unk_penalty
        candidates = (scores.to(log_probs.device).view(-1, 1) + log_probs).view(batch, k * size)
        top_scores, top_index = candidates.topk(min(2 * k, k * size), dim=1)  # (batch, ≤2k)
        found.append([x.to(scores.device) for x in (top_scores, top_index // size, top_index % size + offset)])
    if len(found) == 1:
        return found[0]
    top_scores, beam_of, token_of = (torch.cat(parts, dim=1) for parts in zip(*found))
    best_scores, best = top_scores.topk(2 * k, dim=1)
    return best_scores, beam_of.gather(1, best), token_of.gather(1, best)


@torch.no_grad()
def beam_search(
    models: list[Seq2Seq], src_tokens: torch.Tensor, src_lengths: torch.Tensor, cfg: BeamConfig
) -> list[Hypothesis]:
    """The best hypothesis for each source sentence, decoded on ``src_tokens``' device.

    ``src_lengths`` may be on the host (best: the encoder sorts by them there, and the length limits
    are decided there, so the loop waits for the device once per step, to read the candidates)."""
    batch, k = src_tokens.shape[0], cfg.beam
    device = src_tokens.device
    host_lengths = src_lengths.cpu()
    states, memories = [], []  # a sentence's k rows share its memory, whatever the beam reordering
    for model in models:
        state, memory = model.encode(src_tokens, src_lengths)  # per layer (1, batch, hidden)
        states.append([(h.repeat_interleave(k, dim=1), c.repeat_interleave(k, dim=1)) for h, c in state])
        memories.append(memory and memory.repeat_interleave(k))
    row_lengths = src_lengths.to(device, non_blocking=True).repeat_interleave(k)  # on the device, for every step
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: keep one alive
    history = torch.empty((batch * k, 0), dtype=torch.long, device=device)
    attended = torch.empty((batch * k, 0), dtype=torch.long, device=device)  # one column ahead of history
    last = torch.full((batch * k,), BOS_ID, dtype=torch.long, device=device)
    row_max_len = (host_lengths.float() * cfg.max_len_a + cfg.max_len_b).long().repeat_interleave(k)  # on the host
    finished: list[list[tuple[float, list[int], list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch
    for step in range(int(row_max_len.max()) + 1):
        slices, position = _step(models, last, states, memories, row_lengths)  # [(offset, (batch·k, size))]
        slices = _end_at_limit(slices, step >= row_max_len)
        attended = torch.cat([attended, (position if position is not None else last).view(-1, 1)], dim=1)
        top_scores, beam_of, token_of = _top_candidates(slices, scores, cfg)  # (batch, 2k) each
        keep = _advance(top_scores, beam_of, token_of, history, attended, finished, done, cfg)
        if all(done):
            break
        rows = (torch.arange(batch, device=device).unsqueeze(1) * k + keep["beam"]).view(-1)
        history = torch.cat([history[rows], keep["token"].view(-1, 1)], dim=1)
        attended = attended[rows]
        states = [select_rows(state, rows) for state in states]
        scores, last = keep["score"], keep["token"].view(-1)
    with_attention = any(memory is not None for memory in memories)
    best = [max(hyps, key=lambda h: h[0]) if hyps else (0.0, [], []) for hyps in finished]
    return [Hypothesis(tokens, positions if with_attention else None) for _, tokens, positions in best]


def _end_at_limit(slices, rows: torch.Tensor):
    """Rows (``rows`` true) whose hypotheses reached the length limit may only emit </s>, scored as any
    other end (as fairseq does)."""
    if not rows.any():
        return slices
    ended = []
    for offset, log_probs in slices:
        limited = log_probs.masked_fill(rows.to(log_probs.device, non_blocking=True).unsqueeze(1), float("-inf"))
        if offset <= EOS_ID < offset + log_probs.shape[1]:
            limited[:, EOS_ID - offset] = log_probs[:, EOS_ID - offset]
        ended.append((offset, limited))
    return ended


def _advance(top_scores, beam_of, token_of, history, attended, finished, done, cfg) -> dict:
    """Move finished candidates out; return the k best unfinished (beam, token, score) per sentence.

    The candidates and histories come to the host in one copy each: a copy per candidate would make
    the host wait for the device hundreds of times a step."""
    batch, k = top_scores.shape[0], cfg.beam
    keep_beam = [[0] * k for _ in range(batch)]
    keep_token = [[EOS_ID] * k for _ in range(batch)]
    keep_score = [[float("-inf")] * k for _ in range(batch)]
    scores_list, beams_list, tokens_list = top_scores.tolist(), beam_of.tolist(), token_of.tolist()
    histories, attended_rows = history.tolist(), attended.tolist()
    for b in range(batch):
        if done[b]:
            continue
        kept = 0
        for rank, (score, beam, token) in enumerate(zip(scores_list[b], beams_list[b], tokens_list[b])):
            if score == float("-inf") or kept == k:
                break
            if token == EOS_ID:
                if rank < k:  # as fairseq: only an </s> among the k best ends a hypothesis
                    prefix, positions = histories[b * k + beam], attended_rows[b * k + beam]
                    score = _normalized(score, len(prefix) + 1, cfg.length_penalty)
                    finished[b].append((score, prefix, positions[:-1]))
            else:
                keep_beam[b][kept], keep_token[b][kept], keep_score[b][kept] = beam, token, score
                kept += 1
        done[b] = len(finished[b]) >= k or kept == 0
    device = top_scores.device
    return {
        "beam": torch.tensor(keep_beam, dtype=torch.long, device=device),
        "token": torch.tensor(keep_token, dtype=torch.long, device=device),
        "score": torch.tensor(keep_score, dtype=torch.get_default_dtype(), device=device),
    }
