"""The seq2seq model: padding never changes the answer; reversal and initialization are the paper's."""

from __future__ import annotations

import pytest
import torch
from conftest import HEADS, map_sources_for_copying

from data_shards import ReaderConfig, ShardReader
from data_shards.vocab import PAD_ID
from dist_train.models.seq2seq import Seq2Seq, Seq2SeqConfig, reverse_padded, teacher_forcing, token_losses


def small_model(**kw):
    torch.manual_seed(0)
    cfg = Seq2SeqConfig(embed_dim=24, hidden_dim=32, num_layers=3, **kw)
    model = Seq2Seq(cfg, src_vocab_size=60_000, tgt_vocab_size=60_000).double()
    map_sources_for_copying(model)
    return model


def sentence_losses(model, src, src_lengths, decoder_in, targets) -> list[torch.Tensor]:
    """The model's per-token losses (with copying, of the mixture), split by sentence."""
    mask = targets != PAD_ID
    flat = model(src, src_lengths, decoder_in, mask.flatten().nonzero().squeeze(1), targets[mask])
    return list(flat.split(mask.sum(dim=1).tolist()))


@pytest.mark.parametrize("head", list(HEADS))
def test_padding_does_not_change_final_states_or_token_losses(newstest_small_shards, head):
    """Sentences of a real, padded, bucketed batch against the same sentences run alone."""
    model, attention = small_model(**HEADS[head]), head != "plain"
    reader = ShardReader(newstest_small_shards, ReaderConfig(batch_size=24, bucket_pool=0, num_workers=0, seed=5))
    batch = next(iter(reader))
    assert batch.src_lengths.min() < batch.src_tokens.shape[1], "the batch must actually be padded"
    decoder_in, targets = teacher_forcing(batch.tgt_tokens, batch.tgt_lengths)
    with torch.no_grad():
        state, memory = model.encode(batch.src_tokens, batch.src_lengths)
        h, c = (torch.cat(parts) for parts in zip(*state))  # (layers, batch, hidden)
        losses = token_losses(model.logits(batch.src_tokens, batch.src_lengths, decoder_in), targets)
        per_sentence = sentence_losses(model, batch.src_tokens, batch.src_lengths, decoder_in, targets)
        for i in range(len(batch)):
            n_src, n_tgt = int(batch.src_lengths[i]), int(batch.tgt_lengths[i])
            src, tgt = batch.src_tokens[i : i + 1, :n_src], batch.tgt_tokens[i : i + 1, :n_tgt]
            alone_in, alone_targets = teacher_forcing(tgt, batch.tgt_lengths[i : i + 1])
            state1, memory1 = model.encode(src, batch.src_lengths[i : i + 1])
            h1, c1 = (torch.cat(parts) for parts in zip(*state1))
            alone = token_losses(model.logits(src, batch.src_lengths[i : i + 1], alone_in), alone_targets)[0]
            alone_mixed = sentence_losses(model, src, batch.src_lengths[i : i + 1], alone_in, alone_targets)[0]
            torch.testing.assert_close(per_sentence[i], alone_mixed, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(h[:, i], h1[:, 0], rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(c[:, i], c1[:, 0], rtol=1e-12, atol=1e-12)
            if attention:
                torch.testing.assert_close(memory.outputs[i, :n_src], memory1.outputs[0], rtol=1e-12, atol=1e-12)
                assert memory.mask[i].sum() == n_src and not memory.outputs[i, n_src:].any()
            torch.testing.assert_close(losses[i, : n_tgt + 1], alone, rtol=1e-12, atol=1e-12)
            assert not losses[i, n_tgt + 1 :].any(), "padding positions must carry no loss"


def test_reversal_is_a_switch_and_keeps_padding_in_place():
    tokens = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])
    assert reverse_padded(tokens, torch.tensor([3, 2])).tolist() == [[7, 6, 5, 0], [9, 8, 0, 0]]
    src = torch.tensor([[5, 6, 7, 9]])
    forward, backward = small_model(reverse_source=False), small_model(reverse_source=True)
    plain, _ = forward.encode(src.flip(1), torch.tensor([4]))
    reversed_, _ = backward.encode(src, torch.tensor([4]))
    h_plain, h_reversed = torch.cat([h for h, _ in plain]), torch.cat([h for h, _ in reversed_])
    torch.testing.assert_close(h_plain, h_reversed)


def test_teacher_forcing_and_initialization():
    decoder_in, targets = teacher_forcing(torch.tensor([[11, 12, 13], [14, 0, 0]]), torch.tensor([3, 1]))
    assert decoder_in.tolist() == [[2, 11, 12, 13], [2, 14, 0, 0]]
    assert targets.tolist() == [[11, 12, 13, 3], [14, 3, 0, 0]]
    model = small_model(init_range=0.08)
    for name, param in model.named_parameters():
        assert param.abs().max() <= 0.08, name
        assert param.abs().max() > 0.07, name
    assert not model.src_embed.weight[0].any()
