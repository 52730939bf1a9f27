"""What a checkpoint holds: the one place its keys are written and read (DESIGN.md §6).

Format 2, one dict of tensors and plain values::

    format     2
    job        "s2s" | "gan" | "classifier"
    inference  what using the model needs without the run: config, data folder, and the vocabularies
               (s2s), the image shape (gan) or the test accuracy (classifier)
    weights    {module name: state_dict}: model | generator, discriminator[, generator_ema]
    training   what resuming needs (absent where nothing resumes: the classifier):
               progress    step, train_seconds, seen, skipped_steps, corrupt_samples
               job         {name: state_dict} the same on every replica: schedule, precision
               optimizers  {engine name: state} kept whole on every replica (DDP)
               replicas    one per replica: reader, rng, optimizers (ZeRO's partitions), job (GAN noise)

Format 1, written before format 2 existed, is one flat dict; it is converted on load. A newer
format than this program knows is refused with one line naming both.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from data_shards.errors import UserError
from dist_train.checkpoint.files import read_file

FORMAT = 2
JOBS = {"s2s": "a translation model (s2s)", "gan": "a GAN (gan)", "classifier": "an MNIST classifier"}
INFERENCE_WEIGHTS = {"s2s": ("model",), "gan": ("generator_ema", "generator"), "classifier": ("model",)}  # first found
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Progress:
    """How far a run has come; ``seen`` counts the job's unit (words, images), all replicas together."""

    step: int = 0
    train_seconds: float = 0.0
    seen: int = 0
    skipped_steps: int = 0
    corrupt_samples: int = 0


@dataclass(frozen=True)
class ReplicaState:
    """One replica's own state: its reader's position, its RNGs, its optimizer partitions, its job's own."""

    reader: dict
    rng: dict
    optimizers: dict = field(default_factory=dict)
    job: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingState:
    progress: Progress
    job: dict  # {name: state_dict}, the same on every replica
    optimizers: dict  # {engine name: state}, whole on every replica
    replicas: list[ReplicaState]


@dataclass(frozen=True)
class SavedVocab:
    """What decoding needs: each side's tokens, the tokenizer's description and its models' bytes."""

    tokens: dict[str, list[str]]
    tokenizer: dict
    spm_models: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class RunCheckpoint:
    job: str
    weights: dict[str, dict]
    inference: dict
    training: TrainingState | None = None

    # --- what inference reads ---------------------------------------------------------------

    @property
    def model_config(self) -> dict:
        return self.inference["config"]["model"]

    @property
    def vocab(self) -> SavedVocab:
        return SavedVocab(**self.inference["vocab"])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.inference["image_shape"])

    @property
    def test_accuracy(self) -> float:
        return self.inference["test_accuracy"]

    @property
    def step(self) -> int:
        return self.training.progress.step if self.training else 0

    def module_weights(self, name: str) -> dict:
        if name not in self.weights:
            raise KeyError(name)
        return self.weights[name]

    def inference_network(self, moving_average: bool = True) -> str:
        """The network inference runs: the model; for a gan, the generator that samples (its moving average
        when there is one, unless not ``moving_average``)."""
        names = [n for n in INFERENCE_WEIGHTS[self.job] if n in self.weights]
        return names[0] if moving_average else names[-1]

    def for_inference(self, dtype: str = "fp32") -> RunCheckpoint:
        """Only what inference needs: the network it runs (``inference_network``), floating-point weights in
        ``dtype``, and ``inference``; no training state."""
        name = self.inference_network()
        cast = {k: v.to(DTYPES[dtype]) if v.is_floating_point() else v for k, v in self.weights[name].items()}
        return RunCheckpoint(job=self.job, weights={name: cast}, inference=self.inference)

    # --- the file's dict --------------------------------------------------------------------

    def to_state(self) -> dict:
        state = {"format": FORMAT, "job": self.job, "inference": self.inference, "weights": self.weights}
        if self.training is not None:
            state["training"] = {
                "progress": dataclasses.asdict(self.training.progress),
                "job": self.training.job,
                "optimizers": self.training.optimizers,
                "replicas": [dict(vars(r)) for r in self.training.replicas],  # not asdict: it copies every tensor
            }
        return state

    @classmethod
    def from_state(cls, state: dict) -> RunCheckpoint:
        training = state.get("training")
        if training is not None:
            training = TrainingState(
                progress=Progress(**training["progress"]),
                job=training["job"],
                optimizers=training["optimizers"],
                replicas=[ReplicaState(**r) for r in training["replicas"]],
            )
        return cls(job=state["job"], weights=state["weights"], inference=state["inference"], training=training)


def vocab_state(vocab: SavedVocab) -> dict:
    """A ``SavedVocab`` as the plain dict ``inference["vocab"]`` holds."""
    return dict(vars(vocab))


def read_checkpoint(path: Path, job: str | None = None, purpose: str = "", *, mmap: bool = False) -> RunCheckpoint:
    """A checkpoint file, of any format this program wrote; with ``job``, one of another job is a one-line
    error saying what it is and that ``purpose`` needs the other (``mmap``: see ``read_file``)."""
    state = read_file(path, mmap=mmap)
    found = state.get("format", 1)
    if not isinstance(found, int) or found > FORMAT:
        raise UserError(
            path,
            f"is checkpoint format {found}; this version of the program reads formats 1 to {FORMAT}: "
            "use the version that wrote it, or a newer one",
        )
    if found == 1:
        state = from_format_1(state)
    if job is not None and state.get("job") != job:
        what = JOBS.get(state.get("job"), "not one of this project's checkpoints")
        raise UserError(path, f"is {what}; {purpose or 'this'} needs {JOBS[job]}")
    if state.get("job") not in JOBS:
        raise UserError(path, "is not one of this project's checkpoints")
    try:
        return RunCheckpoint.from_state(state)
    except (KeyError, TypeError) as err:
        raise UserError(path, f"lacks part of a format-{FORMAT} checkpoint ({err})") from None


def format_1_job(state: dict) -> str:
    """Which job wrote a format-1 (flat) checkpoint."""
    if "generator" in state:
        return "gan"
    if "model" in state and "vocab" in state:
        return "s2s"
    if "test_accuracy" in state:
        return "classifier"
    return "unknown"


_FORMAT_1_WEIGHTS = ("model", "generator", "discriminator", "generator_ema")
_FORMAT_1_INFERENCE = ("config", "data", "vocab", "image_shape", "test_accuracy")


def from_format_1(state: dict) -> dict:
    """A format-1 checkpoint (one flat dict: weights, job state, ``trainer``, ``readers``, ``rng``,
    ``replicas`` and the inference keys side by side) as format 2."""
    job = format_1_job(state)
    converted = {
        "format": FORMAT,
        "job": job,
        "weights": {k: state[k] for k in _FORMAT_1_WEIGHTS if k in state},
        "inference": {k: state[k] for k in _FORMAT_1_INFERENCE if k in state},
    }
    if "trainer" not in state:
        return converted
    trainer, unit = state["trainer"], "words" if job == "s2s" else "images"
    replicas = []
    for reader, rng, own in zip(state["readers"], state["rng"], state["replicas"]):
        noise = {"noise": {"state": own["noise"], "device": own.get("noise_device", "cpu")}} if "noise" in own else {}
        replicas.append({"reader": reader, "rng": rng, "optimizers": own.get("optimizers", {}), "job": noise})
    converted["training"] = {
        "progress": {
            "step": trainer["step"],
            "train_seconds": trainer["train_seconds"],
            "seen": trainer[f"{unit}_seen"],
            "skipped_steps": trainer.get("skipped_steps", 0),
            "corrupt_samples": trainer.get("corrupt_samples", 0),
        },
        "job": {k: state[k] for k in ("schedule", "precision") if k in state},
        "optimizers": state["optimizers"],
        "replicas": replicas,
    }
    return converted


def plain_config(config) -> dict:
    """A config dataclass as a JSON/TOML-friendly nested dict (paths as strings, tuples as lists)."""

    def value(v):
        if dataclasses.is_dataclass(v):
            return plain_config(v)
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, tuple):
            return [value(x) for x in v]
        return v

    return {f.name: value(getattr(config, f.name)) for f in dataclasses.fields(config)}
