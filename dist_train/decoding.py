"""Left-to-right beam search over one model or an ensemble (the paper's §3.3 decoder).

Batched: B sentences × K hypotheses run as one (B·K)-row decoder step. A hypothesis that emits
</s> leaves the beam and joins its sentence's finished list; a sentence is done once it has K
finished hypotheses or reaches its length limit. Ensembles average the members' log-probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from data_shards.vocab import BOS_ID, EOS_ID, UNK_ID
from dist_train.models.seq2seq import Seq2Seq


@dataclass(frozen=True, kw_only=True)
class BeamConfig:
    beam: int = 12
    max_len_a: float = 1.5  # a hypothesis may be at most a·source_length + b tokens long
    max_len_b: int = 10
    length_penalty: float = 0.0  # GNMT's α: score / ((5 + len) / 6)^α; 0 ranks by log-probability (the paper)
    unk_penalty: float = 0.0  # subtracted from log p(<unk>) at every step (fairseq's --unkpen); inf forbids it

    def __post_init__(self) -> None:
        if self.beam < 1:
            raise ValueError("beam must be at least 1")


def _normalized(score: float, length: int, alpha: float) -> float:
    return score / (((5 + length) / 6) ** alpha) if alpha else score


def _step_log_probs(models: list[Seq2Seq], tokens: torch.Tensor, states: list) -> torch.Tensor:
    """Mean over the ensemble of log p(next | history): (rows, vocab). Updates ``states`` in place."""
    total = None
    for i, model in enumerate(models):
        hidden, states[i] = model.decode(tokens.unsqueeze(1), states[i])
        log_probs = F.log_softmax(model.output(hidden[:, 0]).float(), dim=-1)
        total = log_probs if total is None else total + log_probs
    return total / len(models)


@torch.no_grad()
def beam_search(
    models: list[Seq2Seq], src_tokens: torch.Tensor, src_lengths: torch.Tensor, cfg: BeamConfig
) -> list[list[int]]:
    """The best hypothesis (token ids, without </s>) for each source sentence."""
    batch, k = src_tokens.shape[0], cfg.beam
    device = src_tokens.device
    states = []
    for model in models:
        h, c = model.encode(src_tokens, src_lengths)  # (layers, batch, hidden)
        states.append((h.repeat_interleave(k, dim=1), c.repeat_interleave(k, dim=1)))
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: keep one alive
    history = torch.empty((batch * k, 0), dtype=torch.long, device=device)
    last = torch.full((batch * k,), BOS_ID, dtype=torch.long, device=device)
    max_len = (src_lengths.float() * cfg.max_len_a + cfg.max_len_b).long().tolist()
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch
    for step in range(max(max_len) + 1):
        log_probs = _step_log_probs(models, last, states)  # (batch·k, vocab)
        if cfg.unk_penalty:
            log_probs[:, UNK_ID] -= cfg.unk_penalty
        vocab = log_probs.shape[1]
        candidates = (scores.view(-1, 1) + log_probs).view(batch, k * vocab)
        top_scores, top_index = candidates.topk(2 * k, dim=1)  # (batch, 2k)
        beam_of, token_of = top_index // vocab, top_index % vocab
        keep = _advance(top_scores, beam_of, token_of, history, finished, done, max_len, step, cfg)
        if all(done):
            break
        rows = (torch.arange(batch, device=device).unsqueeze(1) * k + keep["beam"]).view(-1)
        history = torch.cat([history[rows], keep["token"].view(-1, 1)], dim=1)
        states = [(h[:, rows], c[:, rows]) for h, c in states]
        scores, last = keep["score"], keep["token"].view(-1)
    return [max(hyps, key=lambda h: h[0])[1] if hyps else [] for hyps in finished]


def _advance(top_scores, beam_of, token_of, history, finished, done, max_len, step, cfg) -> dict:
    """Move finished candidates out; return the k best unfinished (beam, token, score) per sentence."""
    batch, k = top_scores.shape[0], cfg.beam
    keep_beam = torch.zeros((batch, k), dtype=torch.long, device=top_scores.device)
    keep_token = torch.full((batch, k), EOS_ID, dtype=torch.long, device=top_scores.device)
    keep_score = torch.full((batch, k), float("-inf"), device=top_scores.device)
    scores_list, beams_list, tokens_list = top_scores.tolist(), beam_of.tolist(), token_of.tolist()
    for b in range(batch):
        if done[b]:
            continue
        kept = 0
        for rank, (score, beam, token) in enumerate(zip(scores_list[b], beams_list[b], tokens_list[b])):
            if score == float("-inf") or kept == k:
                break
            prefix = history[b * k + beam].tolist()
            if step >= max_len[b]:  # out of length: every candidate ends here
                finished[b].append((_normalized(score, len(prefix) + 2, cfg.length_penalty), prefix + [token]))
            elif token == EOS_ID:
                if rank < k:  # as fairseq: only an </s> among the k best ends a hypothesis
                    finished[b].append((_normalized(score, len(prefix) + 1, cfg.length_penalty), prefix))
            else:
                keep_beam[b, kept], keep_token[b, kept], keep_score[b, kept] = beam, token, score
                kept += 1
        done[b] = len(finished[b]) >= k or kept == 0
    return {"beam": keep_beam, "token": keep_token, "score": keep_score}
