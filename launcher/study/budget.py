"""What a study should take when it runs here: its steps at the speeds measured on the machine that
wrote docs/REPRODUCTION.md, ``lanes`` at a time."""

from __future__ import annotations

from launcher.study.plan import Study, evaluations

# Measured by the study of 2026-11-30 on that machine (two steps at once, one thread each): seconds per
# s2s step, dev evaluations included, as a base and a part per layer (1, 2, 4 layers: 0.34, 0.41, 0.55 s;
# `small`'s attention and copying: the paper model's times 1.35, not measured in a study); a GAN epoch;
# evaluate-gan on one checkpoint; a test sentence (beams 1, 2 and 12 averaged); a classifier epoch.
SECONDS_PER_STEP = {"paper": (0.27, 0.07), "small": (0.36, 0.095)}
GAN_EPOCH_SECONDS = 27.5
GAN_EVAL_SECONDS = 53.0
TEST_SECONDS_PER_SENTENCE = 0.03
CLASSIFIER_EPOCH_SECONDS = 97.0


def budget_minutes(study: Study, lanes: int = 1) -> float:
    """What the study should take here, ``lanes`` steps at a time, each on 1/lanes of the cores: the
    s2s and GAN steps at the speeds measured on the machine that wrote docs/REPRODUCTION.md (a
    2-core AMD EPYC, one thread a step), the evaluations and the classifier; 0 for the recipes'
    epochs (a cluster's study)."""
    if not (study.steps and study.gan_epochs):
        return 0.0
    base, per_layer = SECONDS_PER_STEP[study.architecture]
    s2s = sum(study.steps * (base + per_layer * run.layers) for run in study.s2s_runs().values())
    gan = study.gan_epochs * GAN_EPOCH_SECONDS + len(study.gan_curve()) * GAN_EVAL_SECONDS
    tests = (len(evaluations(study)) + 2) * study.test_sentences * TEST_SECONDS_PER_SENTENCE  # + the figures'
    classifier = study.classifier_epochs * CLASSIFIER_EPOCH_SECONDS
    return (s2s + gan + tests + classifier) / 60 / max(1, lanes)
