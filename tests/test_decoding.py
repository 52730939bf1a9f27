"""Beam search, ensembles, translate and evaluate."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from conftest import HEADS, WMT, map_sources_for_copying, run_cli

from data_shards import TextBatch
from data_shards.vocab import BOS_ID, EOS_ID, UNK_ID
from dist_train.checkpoint import read_checkpoint
from dist_train.decoding import BeamConfig, Hypothesis, beam_search
from dist_train.evaluation import bleu
from dist_train.models.seq2seq import Seq2Seq, Seq2SeqConfig
from dist_train.trainers.s2s.batch import model_inputs
from dist_train.translation import Translator, replace_unknowns
from launcher.commands.translate import example_indices, read_sentences

SRC_SGM = WMT / "newstest2014-sgm" / "newstest2014-fren-src.en.sgm"
REF_SGM = WMT / "newstest2014-sgm" / "newstest2014-fren-ref.fr.sgm"


def random_model(seed=0, vocab=7, head="plain"):
    torch.manual_seed(seed)
    cfg = Seq2SeqConfig(embed_dim=8, hidden_dim=8, num_layers=2, init_range=1.0, **HEADS[head])
    model = Seq2Seq(cfg, src_vocab_size=vocab, tgt_vocab_size=vocab).double().eval()
    map_sources_for_copying(model)
    return model


def sequence_log_prob(model, src, lengths, tokens):
    """log p(tokens </s> | src) by teacher forcing (with copying: of the mixture), as training scores it."""
    target = torch.tensor([tokens], dtype=torch.long)
    batch = TextBatch(src, lengths, target, torch.tensor([len(tokens)]), torch.zeros(1), src_text=[], tgt_text=[])
    sizes = (model.src_embed.num_embeddings, model.tgt_embed.num_embeddings)
    return -model(*model_inputs(batch, sizes, torch.device("cpu")).as_args()).sum().item()


def teacher_forced_attention(model, src, lengths, tokens):
    """For each of ``tokens``, the source position (in the source's own order) attended to most."""
    (state, memory) = model.encode(src, lengths)
    hidden, _ = model.decode(torch.tensor([[BOS_ID, *tokens]]), state)
    _, weights = model.attend(hidden, memory)  # (1, time, src_time), encoder order: reversed
    return (int(lengths[0]) - 1 - weights[0, : len(tokens)].argmax(dim=1)).tolist()


@pytest.mark.parametrize("head", list(HEADS))
def test_wide_beam_finds_the_exact_best_translation(head):
    model = random_model(head=head)
    src, lengths = torch.tensor([[4, 5, 6]]), torch.tensor([3])
    cfg = BeamConfig(beam=60, max_len_a=0.0, max_len_b=3)  # hypotheses of at most 3 tokens
    words = [1, 4, 5, 6]
    candidates = [list(c) for n in range(4) for c in itertools.product(words, repeat=n)]
    with torch.no_grad():
        best = max(candidates, key=lambda c: sequence_log_prob(model, src, lengths, c))
        found = beam_search([model], src, lengths, cfg)[0].tokens
        assert sequence_log_prob(model, src, lengths, found) >= sequence_log_prob(model, src, lengths, best) - 1e-9


@pytest.mark.parametrize("head", list(HEADS))
def test_beam_one_is_greedy_and_batching_changes_nothing(head):
    model, attention = random_model(seed=3, vocab=12, head=head), head != "plain"
    src = torch.tensor([[4, 5, 6, 7, 8], [9, 10, 0, 0, 0], [11, 4, 4, 0, 0]])
    lengths = torch.tensor([5, 2, 3])
    with torch.no_grad():
        batched = [h.tokens for h in beam_search([model], src, lengths, BeamConfig(beam=1))]
        for i in range(3):
            alone = beam_search([model], src[i : i + 1, : lengths[i]], lengths[i : i + 1], BeamConfig(beam=1))[0].tokens
            assert alone == batched[i]
            greedy, (state, memory) = [], model.encode(src[i : i + 1, : lengths[i]], lengths[i : i + 1])
            token = BOS_ID
            for _ in range(int(lengths[i] * 1.5 + 10)):  # then </s> is forced
                hidden, state = model.decode(torch.tensor([[token]]), state)
                slices = model.log_prob_slices(model.readout(hidden, memory))
                token = int(torch.cat([log_probs for _, log_probs in slices], dim=1)[0].argmax())
                if token == EOS_ID:
                    break
                greedy.append(token)
            assert batched[i] == greedy
        wide = beam_search([model], src, lengths, BeamConfig(beam=5))
        for i in range(3):
            s, n = src[i : i + 1, : lengths[i]], lengths[i : i + 1]
            assert sequence_log_prob(model, s, n, wide[i].tokens) >= sequence_log_prob(model, s, n, batched[i]) - 1e-9
            if attention:  # the positions followed the hypothesis through every reordering of the beam
                assert wide[i].attended == teacher_forced_attention(model, s, n, wide[i].tokens)
            else:
                assert wide[i].attended is None


def test_unknown_words_are_replaced_by_the_attended_source_word():
    hypothesis = Hypothesis(tokens=[5, UNK_ID, 6, UNK_ID], attended=[0, 2, 1, 0])
    tokens = replace_unknowns(["Le", "<unk>", "de", "<unk>"], hypothesis, ["The", "Fooland", "report"])
    assert tokens == ["Le", "report", "de", "The"]


def test_ensemble_of_one_model_twice_equals_the_model(tiny_checkpoint):
    sources = (WMT / "newstest2014-plain-derived" / "newstest2014.en").read_text().splitlines()[:6]
    single, double = Translator([tiny_checkpoint]), Translator([tiny_checkpoint, tiny_checkpoint])
    assert single.translate(sources, BeamConfig(beam=3)) == double.translate(sources, BeamConfig(beam=3))
    references = (WMT / "newstest2014-plain-derived" / "newstest2014.fr").read_text().splitlines()[:6]
    assert abs(single.perplexity(sources, references) / double.perplexity(sources, references) - 1) < 1e-9


def test_translator_puts_every_weight_on_its_device(tiny_checkpoint):
    """On ``meta`` (a device without data, no GPU needed): a weight left on the host would show."""
    translator = Translator([tiny_checkpoint, tiny_checkpoint], device="meta")
    tensors = [t for model in translator.models for t in (*model.parameters(), *model.buffers())]
    assert tensors and {t.device.type for t in tensors} == {"meta"}


def test_bleu_of_the_references_themselves_is_100():
    refs = (WMT / "newstest2014-plain-derived" / "newstest2014.fr").read_text().splitlines()[:50]
    scores = bleu(refs, refs, "fr")
    assert scores["bleu"] == 100.0 and scores["bleu_tokenized"] == 100.0
    assert "tok:13a" in scores["bleu_signature"]
    assert bleu(refs[1:] + refs[:1], refs, "fr")["bleu"] < 5


@pytest.mark.slow
def test_translate_writes_one_line_per_input_line(tiny_checkpoint, tmp_path):
    lines = ["The house is small.", "", "Parliament does not support the amendment.", "Hello"]
    source = tmp_path / "in.en"
    source.write_text("\n".join(lines) + "\n")
    result = run_cli("translate", "--checkpoint", tiny_checkpoint, "--beam", "2", "--input", source, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split("\n")) - 1 == len(lines) and result.stdout.split("\n")[1] == ""


@pytest.mark.slow
def test_an_exported_model_holds_no_training_state_and_translates_as_its_checkpoint(tiny_checkpoint, tmp_path):
    sizes = {}
    for dtype in ("fp32", "bf16"):
        result = run_cli("export", "--checkpoint", tiny_checkpoint, "--out", tmp_path / f"{dtype}.pt", "--dtype", dtype)
        assert result.returncode == 0, result.stderr
        sizes[dtype] = json.loads(result.stdout.strip().splitlines()[-1])
        assert sizes[dtype]["bytes"] < sizes[dtype]["checkpoint_bytes"]  # no reader or RNG state (SGD: no moments)
    assert sizes["bf16"]["bytes"] < 0.6 * sizes["fp32"]["bytes"]
    exported = read_checkpoint(tmp_path / "fp32.pt", "s2s")
    assert exported.training is None and set(exported.weights) == {"model"}
    assert exported.vocab.tokens == read_checkpoint(tiny_checkpoint).vocab.tokens
    lines = ["The house is small.", "Parliament does not support the amendment."]
    beam = BeamConfig(beam=2)
    assert Translator([tmp_path / "fp32.pt"]).translate(lines, beam) == Translator([tiny_checkpoint]).translate(
        lines, beam
    )
    assert len(Translator([tmp_path / "bf16.pt"]).translate(lines, beam)) == 2


@pytest.mark.slow
def test_evaluate_prints_bleu_and_perplexity_on_sgm(tiny_checkpoint):
    result = run_cli(
        "evaluate",
        "--checkpoint",
        tiny_checkpoint,
        "--src",
        SRC_SGM,
        "--ref",
        REF_SGM,
        "--beam",
        "2",
        "--limit",
        "40",
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"bleu", "bleu_signature", "bleu_tokenized", "perplexity", "num_sentences"} <= set(summary)
    assert summary["bleu_copy_baseline"] > 1, "English copied into French shares names, numbers, punctuation"
    assert summary["num_sentences"] == 40 and 1 < summary["perplexity"] < 2000
    sources, references = read_sentences(SRC_SGM)[:40], read_sentences(REF_SGM)[:40]
    unpaired = Translator([tiny_checkpoint]).perplexity(sources[1:] + sources[:1], references)
    assert summary["perplexity_other_source"] == round(unpaired, 4) != summary["perplexity"]
    assert summary["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")  # --device auto


@pytest.mark.slow
def test_evaluate_prints_examples_beside_their_references(tiny_checkpoint):
    argv = ["evaluate", "--checkpoint", tiny_checkpoint, "--src", SRC_SGM, "--ref", REF_SGM, "--beam", "1"]
    result = run_cli(*argv, "--limit", "40", "--examples", "3", "--no-progress")
    assert result.returncode == 0, result.stderr
    sources, references = read_sentences(SRC_SGM)[:40], read_sentences(REF_SGM)[:40]
    chosen = example_indices(sources, 3)
    assert len(set(chosen)) == 3 and all(8 <= len(sources[i].split()) <= 20 for i in chosen)  # moderate length
    for n, i in enumerate(chosen, 1):
        shown = f"example {n} of 3 (test sentence {i + 1}):\n  source:    {sources[i]}\n  reference: {references[i]}\n"
        assert shown + "  model:     " in result.stderr, result.stderr
    assert result.stderr.count("  model:     ") == 3
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert f"copying the source unchanged scores BLEU {summary['bleu_copy_baseline']}" in result.stderr
    assert "docs/REPRODUCTION.md" in result.stderr
    refused = run_cli(*argv, "--examples", "-1")
    assert refused.returncode == 2 and "--examples -1" in refused.stderr


def test_examples_are_spread_over_the_test_set_preferring_moderate_lengths():
    moderate, short = "one two three four five six seven eight", "too short"
    sources = [moderate if i % 2 else short for i in range(20)]  # moderate at the odd indices
    assert example_indices(sources, 3) == [3, 11, 17]
    assert example_indices([short] * 4, 2) == [1, 3]  # too few moderate ones: any length
    assert example_indices(sources, 0) == [] and example_indices([short], 5) == [0]


@pytest.mark.slow
def test_evaluate_defaults_to_newstest2014(tiny_checkpoint, tmp_path):
    result = run_cli(
        "evaluate", "--checkpoint", tiny_checkpoint.parent.parent, "--beam", "1", "--limit", "5", "--no-progress"
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["num_sentences"] == 5 and summary["checkpoints"] == [str(tiny_checkpoint)]
    half = run_cli("evaluate", "--checkpoint", tiny_checkpoint, "--src", SRC_SGM)
    assert half.returncode == 2 and "give both --src and --ref" in half.stderr


def test_unk_penalty_keeps_unk_out_of_the_output():
    model = random_model(seed=1, vocab=9)
    with torch.no_grad():
        model.output.bias[1] += 20.0  # make <unk> the most likely word everywhere
    src, lengths = torch.tensor([[4, 5, 6, 7]]), torch.tensor([4])
    with torch.no_grad():
        assert 1 in beam_search([model], src, lengths, BeamConfig(beam=3))[0].tokens
        assert 1 not in beam_search([model], src, lengths, BeamConfig(beam=3, unk_penalty=float("inf")))[0].tokens
