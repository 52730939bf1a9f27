"""The paper's layout: placement, the wavefront pipeline and the vocabulary-parallel softmax, each
against the plain single-device model (on CPU every device is ``cpu``; CUDA runs the same tests)."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import HEADS, map_sources_for_copying

from data_shards import ReaderConfig, ShardReader
from dist_train.decoding import BeamConfig, beam_search
from dist_train.models.seq2seq import OutputLayer, Seq2Seq, Seq2SeqConfig
from dist_train.parallel.pipeline import Wavefront, bubble_fraction
from dist_train.parallel.placement import place, plan_layout
from dist_train.parallel.vocab_parallel import VocabParallelOutput, shard_sizes
from dist_train.trainers.s2s.batch import model_inputs

VOCAB = (1000, 1003)  # uneven softmax shards: 251, 251, 251, 250

DEVICE_KINDS = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


def devices(kind: str, count: int = 8) -> list[torch.device]:
    if kind == "cpu":
        return [torch.device("cpu")] * count
    return [torch.device("cuda", i % torch.cuda.device_count()) for i in range(count)]


def plain_model(head: str) -> Seq2Seq:
    torch.manual_seed(0)
    cfg = Seq2SeqConfig(embed_dim=16, hidden_dim=24, num_layers=4, **HEADS[head])
    model = Seq2Seq(cfg, src_vocab_size=VOCAB[0], tgt_vocab_size=VOCAB[1])
    map_sources_for_copying(model)
    return model


def real_batch(shards):
    """A padded, length-bucketed batch of real sentence pairs."""
    reader = ShardReader(shards, ReaderConfig(batch_size=12, num_workers=0, seed=3))
    batch = next(iter(reader))
    assert batch.src_lengths.min() < batch.src_tokens.shape[1], "the batch must be padded"
    return batch


def grads_by_name(model: Seq2Seq) -> dict[str, torch.Tensor]:
    """Every gradient under the plain model's parameter names (softmax shards concatenated)."""
    grads = {}
    for name, module in model.named_modules():
        if isinstance(module, VocabParallelOutput):
            grads[f"{name}.weight"] = torch.cat([w.grad.cpu() for w in module.weights])
            grads[f"{name}.bias"] = torch.cat([b.grad.cpu() for b in module.biases])
    for name, param in model.named_parameters():
        if not name.startswith("output.weight_") and not name.startswith("output.bias_"):
            grads[name] = param.grad.cpu()
    return grads


def test_layouts_follow_the_paper_and_pack_onto_fewer_devices():
    eight = [torch.device("cuda", i) for i in range(8)]
    layout = plan_layout(4, eight, softmax_shards=4)
    assert layout.layers == eight[:4] and layout.softmax == eight[4:]
    two = eight[:2]
    layout = plan_layout(4, two, softmax_shards=4)
    assert layout.layers == [two[0], two[0], two[1], two[1]] and layout.softmax == [two[0], two[1]] * 2
    assert plan_layout(2, [torch.device("cpu")], 4).layers == [torch.device("cpu")] * 2
    assert shard_sizes(1003, 4) == [251, 251, 251, 250]
    assert bubble_fraction(num_chunks=8, num_layers=4) == pytest.approx(3 / 11)


def test_vocab_parallel_cross_entropy_and_log_probs_equal_the_full_softmax():
    torch.manual_seed(1)
    plain = OutputLayer(24, 1003)
    sharded = VocabParallelOutput(copy.deepcopy(plain), devices("cpu", 4))
    hidden = torch.randn(50, 24) * 3
    targets = torch.randint(0, 1003, (50,))
    targets[:4] = torch.tensor([0, 250, 251, 1002])  # the shards' edges
    h1, h2 = hidden.clone().requires_grad_(), hidden.clone().requires_grad_()
    plain_loss, sharded_loss = plain.token_losses(h1, targets), sharded.token_losses(h2, targets)
    torch.testing.assert_close(sharded_loss, plain_loss, rtol=1e-5, atol=1e-6)
    (plain_loss * torch.arange(50)).sum().backward()
    (sharded_loss * torch.arange(50)).sum().backward()
    torch.testing.assert_close(h2.grad, h1.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.cat([w.grad for w in sharded.weights]), plain.weight.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.cat([b.grad for b in sharded.biases]), plain.bias.grad, rtol=1e-5, atol=1e-6)
    (_, full), pieces = plain.log_prob_slices(hidden)[0], sharded.log_prob_slices(hidden)
    assert [offset for offset, _ in pieces] == [0, 251, 502, 753]
    torch.testing.assert_close(torch.cat([x for _, x in pieces], dim=1), full, rtol=1e-5, atol=1e-5)


def test_a_sharded_softmax_saves_and_loads_as_the_plain_layer():
    plain = OutputLayer(24, 1003)
    sharded = VocabParallelOutput(plain, devices("cpu", 4))
    state = sharded.state_dict()
    assert set(state) == {"weight", "bias"}
    torch.testing.assert_close(state["weight"], plain.weight.detach())
    fresh = VocabParallelOutput(OutputLayer(24, 1003), devices("cpu", 4))
    fresh.load_state_dict(plain.state_dict())
    torch.testing.assert_close(fresh.state_dict()["bias"], plain.bias.detach())
    with pytest.raises(RuntimeError, match="1003"):
        fresh.load_state_dict(OutputLayer(24, 1000).state_dict())


@pytest.mark.parametrize("kind", DEVICE_KINDS)
@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("chunk_len", [1, 3, 8, 500])
def test_paper_layout_pipeline_matches_the_plain_model(newstest_small_shards, kind, head, chunk_len):
    """Loss and every gradient of the placed, pipelined, softmax-sharded replica = the plain model's."""
    plain = plain_model(head)
    placed = place(copy.deepcopy(plain), plan_layout(4, devices(kind), softmax_shards=4))
    assert isinstance(placed.output, VocabParallelOutput)
    pipelined = Wavefront(placed, chunk_len)
    batch = real_batch(newstest_small_shards)
    plain_loss = plain(*model_inputs(batch, VOCAB, torch.device("cpu")).as_args()).sum()
    piped_loss = pipelined(*model_inputs(batch, VOCAB, torch.device(devices(kind)[0])).as_args()).sum()
    torch.testing.assert_close(piped_loss.cpu(), plain_loss, rtol=1e-5, atol=0)
    plain_loss.backward()
    piped_loss.backward()
    expected, got = grads_by_name(plain), grads_by_name(placed)
    assert set(got) == set(expected)
    for name, grad in expected.items():  # fp32 rounding of long sums: tolerance relative to each tensor's scale
        scale = float(grad.abs().max())
        torch.testing.assert_close(got[name], grad, rtol=1e-5, atol=1e-5 * scale, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("kind", DEVICE_KINDS)
@pytest.mark.parametrize("head", ["attention", "copy"])
def test_beam_search_on_the_paper_layout_is_identical(newstest_small_shards, kind, head):
    plain = plain_model(head).eval()
    with torch.no_grad():  # a random model's choices are near ties that another kernel's rounding could flip:
        plain.output.weight.mul_(30)  # sharpen the softmax and attention so that identity is a fair test
        plain.attention_score.weight.mul_(30)
    placed = place(copy.deepcopy(plain), plan_layout(4, devices(kind), softmax_shards=4)).eval()
    batch = real_batch(newstest_small_shards)
    inputs = model_inputs(batch, VOCAB, torch.device("cpu"))
    cfg = BeamConfig(beam=4, max_len_b=5)
    expected = beam_search([plain], inputs.src_tokens, inputs.src_lengths, cfg)
    got = beam_search([placed], inputs.src_tokens.to(devices(kind)[0]), inputs.src_lengths, cfg)
    assert [h.tokens for h in got] == [h.tokens for h in expected]
    assert [h.attended for h in got] == [h.attended for h in expected]
