"""Translation quality: sacreBLEU on detokenized text (primary) and BLEU on Moses tokens (the paper's kind)."""

from __future__ import annotations

import sacrebleu
from sacremoses import MosesTokenizer


def bleu(hypotheses: list[str], references: list[str], tgt_lang: str) -> dict:
    """``bleu`` with its sacreBLEU signature, and ``bleu_tokenized``, comparable to multi-bleu.perl."""
    metric = sacrebleu.BLEU()
    detokenized = metric.corpus_score(hypotheses, [references])
    moses = MosesTokenizer(lang=tgt_lang)

    def tok(line: str) -> str:
        return " ".join(moses.tokenize(line, escape=False))

    tokenized = sacrebleu.BLEU(tokenize="none", force=True).corpus_score(
        [tok(h) for h in hypotheses], [[tok(r) for r in references]]
    )
    return {
        "bleu": round(detokenized.score, 2),
        "bleu_signature": str(metric.get_signature()),
        "bleu_tokenized": round(tokenized.score, 2),
    }


def copy_baseline_bleu(sources: list[str], references: list[str]) -> float:
    """sacreBLEU of the untranslated sources: what a model must clearly beat to have learned anything."""
    return round(sacrebleu.BLEU().corpus_score(sources, [references]).score, 2)
