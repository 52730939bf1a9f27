"""The one loader of a trained model for inference (``translate``, ``evaluate``, ``evaluate-gan``, the
MNIST classifier's scores): the model is rebuilt from what its checkpoint says it is and loaded there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dist_train.checkpoint import RunCheckpoint, read_checkpoint
from dist_train.models.classifier import MnistClassifier
from dist_train.models.gan import GanModelConfig, build_gan
from dist_train.models.seq2seq import Seq2Seq, Seq2SeqConfig


@dataclass(frozen=True)
class Loaded:
    model: nn.Module  # in eval mode, on the device asked for
    checkpoint: RunCheckpoint  # what else inference reads: vocabularies, config, image shape


def load_model(path: Path, job: str, purpose: str, device: torch.device | str = "cpu", *, ema: bool = True) -> Loaded:
    """The model a ``job`` (s2s|gan|classifier) checkpoint holds, for ``purpose`` (said in the error when
    the file is of another job); for a gan, the generator, its moving average when it has one and
    ``ema``. Loaded on the host, so that only the weights ever reach the device."""
    saved = read_checkpoint(Path(path), job, purpose)
    model = _BUILDERS[job](saved)
    model.load_state_dict(saved.module_weights(saved.inference_network(moving_average=ema)))
    return Loaded(model.to(device).eval(), saved)


def _s2s(saved: RunCheckpoint) -> nn.Module:
    tokens = saved.vocab.tokens
    sizes = {"src_vocab_size": len(tokens["src"]), "tgt_vocab_size": len(tokens["tgt"])}
    return Seq2Seq(Seq2SeqConfig(**saved.model_config), **sizes)


def _gan(saved: RunCheckpoint) -> nn.Module:
    return build_gan(GanModelConfig(**saved.model_config), saved.image_shape)[0]


def _classifier(saved: RunCheckpoint) -> nn.Module:
    return MnistClassifier()


_BUILDERS = {"s2s": _s2s, "gan": _gan, "classifier": _classifier}
