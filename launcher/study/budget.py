"""What a study should take when it runs here: its steps at the speeds measured on the machine that
wrote docs/REPRODUCTION.md, ``lanes`` at a time."""

from __future__ import annotations

from launcher.study.plan import Study, evaluations

# Measured on the machine that wrote docs/REPRODUCTION.md (2-core AMD EPYC), one thread a step, two
# steps at once: seconds of a 2-layer s2s step (a layer more or less: ±25%), of a dev evaluation, ...
SECONDS_PER_STEP = {"paper": 0.36, "small": 0.5}
DEV_EVAL_SECONDS = 10.0
GAN_EPOCH_SECONDS = 30.0
GAN_EVAL_SECONDS = 40.0
TEST_SECONDS_PER_SENTENCE = 0.05
CLASSIFIER_EPOCH_SECONDS = 60.0


def budget_minutes(study: Study, lanes: int = 1) -> float:
    """What the study should take here, ``lanes`` steps at a time, each on 1/lanes of the cores: the
    s2s and GAN steps at the speeds measured on the machine that wrote docs/REPRODUCTION.md (a
    2-core AMD EPYC, one thread a step), the evaluations and the classifier; 0 for the recipes'
    epochs (a cluster's study)."""
    if not (study.steps and study.gan_epochs):
        return 0.0
    depths = [int(overrides[0].rsplit("=", 1)[1]) for overrides in study.s2s_runs().values()]
    s2s = sum(study.steps * SECONDS_PER_STEP[study.architecture] * (0.5 + d / 4) for d in depths)
    dev = len(depths) * (study.steps // 250) * DEV_EVAL_SECONDS
    gan = study.gan_epochs * GAN_EPOCH_SECONDS + len(study.gan_curve()) * GAN_EVAL_SECONDS
    tests = (len(evaluations(study)) + 2) * study.test_sentences * TEST_SECONDS_PER_SENTENCE  # + the figures'
    classifier = study.classifier_epochs * CLASSIFIER_EPOCH_SECONDS
    return (s2s + dev + gan + tests + classifier) / 60 / max(1, lanes)
