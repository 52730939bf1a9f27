"""The pointer-generator's copy path: its vocabulary map, its mixture (against a dense reference),
sharded over the vocabulary, and trained end to end."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import map_sources_for_copying, run_cli

from data_shards.vocab import BOS_ID, EOS_ID, PAD_ID, SPECIALS, UNK_ID
from dist_train.checkpoint import read_checkpoint
from dist_train.models.copying import source_to_target
from dist_train.models.seq2seq import Seq2Seq, Seq2SeqConfig
from dist_train.parallel.placement import place, plan_layout

SRC = torch.tensor([[7, 9, 12, 5, 9], [15, 6, 4, PAD_ID, PAD_ID]])
SRC_LENGTHS = torch.tensor([5, 3])
TGT = torch.tensor([[BOS_ID, 9, 12, 8], [BOS_ID, 15, 6, 9]])  # decoder inputs
TARGETS = torch.tensor([[9, 12, 8, EOS_ID], [15, 6, 9, EOS_ID]])


def copying_model(vocab: int = 20) -> Seq2Seq:
    torch.manual_seed(0)
    cfg = Seq2SeqConfig(embed_dim=8, hidden_dim=8, num_layers=2, init_range=1.0, attention=True, copy=True)
    model = Seq2Seq(cfg, src_vocab_size=vocab, tgt_vocab_size=vocab).double()
    map_sources_for_copying(model)  # source 9, 12, 15, 6 → target 9, <unk>, 15, <unk>
    return model


def dense_mixture(model: Seq2Seq) -> torch.Tensor:
    """log p(y) over the whole vocabulary (batch, time, vocab), written out from the definition."""
    readout = model.read(SRC, SRC_LENGTHS, TGT)
    generate = torch.sigmoid(readout.gate_logit).unsqueeze(-1)
    vocab = torch.softmax(model.output(readout.features), dim=-1)
    ids = readout.copy_ids.unsqueeze(1).expand(-1, TGT.shape[1], -1)
    copied = torch.zeros_like(vocab).scatter_add_(2, ids, readout.attention)
    return (generate * vocab + (1 - generate) * copied).log()


def test_the_vocabulary_map_keeps_specials_and_sends_missing_words_to_unk():
    src, tgt = [*SPECIALS, "the", "Canada", "2006", "house"], [*SPECIALS, "la", "2006", "Canada"]
    assert source_to_target(src, tgt).tolist() == [0, 1, 2, 3, UNK_ID, 6, 5, UNK_ID]


def test_the_loss_is_the_mixture_and_trains_the_gate():
    model = copying_model()
    expected = -dense_mixture(model).gather(2, TARGETS.unsqueeze(-1)).squeeze(-1)
    mask = TARGETS != PAD_ID
    losses = model(SRC, SRC_LENGTHS, TGT, mask.flatten().nonzero().squeeze(1), TARGETS[mask])
    torch.testing.assert_close(losses, expected[mask], rtol=1e-10, atol=1e-10)
    # copying reaches what the softmax alone gives less: a source word the target side lacks
    vocab_only = torch.nn.functional.cross_entropy(
        model.logits(SRC, SRC_LENGTHS, TGT)[mask], TARGETS[mask], reduction="none"
    )
    assert not torch.equal(losses, vocab_only)
    losses.sum().backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(torch.isfinite(g).all() for g in grads.values())  # no NaN where nothing can be copied (</s>)
    assert grads["copy_gate.weight"].abs().sum() > 0 and grads["attention_score.weight"].abs().sum() > 0


def test_beam_steps_read_the_same_mixture_whole_or_sharded():
    model = copying_model(vocab=23).eval()
    with torch.no_grad():
        dense = dense_mixture(model)[:, -1]  # the last decoder step
        state, memory = model.encode(SRC, SRC_LENGTHS)
        hidden, _ = model.decode(TGT, state)
        readout = model.readout(hidden[:, -1:], memory)
        whole = model.log_prob_slices(readout)
        assert [offset for offset, _ in whole] == [0]
        torch.testing.assert_close(whole[0][1], dense, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(whole[0][1].exp().sum(dim=1), torch.ones(2, dtype=torch.double))
        sharded = place(model, plan_layout(2, [torch.device("cpu")] * 8, softmax_shards=4))
        slices = sharded.log_prob_slices(readout)
        assert [offset for offset, _ in slices] == [0, 6, 12, 18]
        torch.testing.assert_close(torch.cat([x for _, x in slices], dim=1), dense, rtol=1e-10, atol=1e-10)


@pytest.mark.slow
def test_a_copying_model_trains_and_translates(newstest_small_shards, tmp_path):
    run = tmp_path / "run"
    trained = run_cli(
        "s2s", "--preset", "tiny", "--data", newstest_small_shards, "--run-dir", run,
        "max_steps=6", "model.attention=true", "model.copy=true",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    checkpoint = sorted((run / "checkpoints").glob("step-*.pt"))[-1]
    saved = read_checkpoint(checkpoint)
    mapped = saved.weights["model"]["source_to_target"]
    src, tgt = saved.vocab.tokens["src"], saved.vocab.tokens["tgt"]
    assert mapped.tolist() == source_to_target(src, tgt).tolist()
    assert (mapped[len(SPECIALS) :] != UNK_ID).sum() > 100, "shared words (names, numbers, punctuation) map across"
    lines = ["The President of the United States, Barack Obama, arrived in Paris in 2013.", "Thank you."]
    translated = run_cli("translate", "--checkpoint", checkpoint, "--beam", "2", stdin="\n".join(lines) + "\n")
    assert translated.returncode == 0, translated.stderr
    assert len(translated.stdout.splitlines()) == len(lines)
    refused = run_cli("s2s", "--preset", "tiny", "--data", newstest_small_shards, "--run-dir", run, "model.copy=true")
    assert refused.returncode == 2 and "model.attention" in refused.stderr
    assert json.loads((run / "config.json").read_text())["model"]["copy"] is True
