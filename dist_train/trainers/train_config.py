"""``train.*``: how long a run trains, how it logs and checkpoints, its numerics and its seed."""

from __future__ import annotations

import math
from dataclasses import dataclass

from data_shards.checks import at_least
from dist_train.precision import LstmPrecision, Precision, check_lstm_precision


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    num_epochs: float = 7.5  # the paper's 7.5 epochs
    max_steps: int = 0  # stop after this many steps, if sooner than num_epochs (0: no step limit)
    max_minutes: float = 0.0  # wall-clock budget: checkpoint and stop when it is spent (0: none)
    log_every: int = 20  # steps per logging interval (JSONL line, progress bar update)
    checkpoint_every_steps: int = 0
    checkpoint_every_minutes: float = 30.0
    keep_checkpoints: int = 3
    max_skipped_in_a_row: int = 20  # updates skipped in a row (non-finite loss/gradients) before the run stops
    grad_accum_steps: int = 1  # batches whose gradients add up into one update (s2s; more sentences per update)
    keep_global_batch: bool = True  # resumed on another replica count: keep the samples per update, or refuse
    record_samples: bool = False  # append each step's sample ids to RUN_DIR/samples-seen/replica-R.txt (audits)
    async_checkpoints: bool = True  # a save waits only for a copy to host memory; a thread writes it
    precision: Precision = "fp32"
    lstm_precision: LstmPrecision = "auto"  # the LSTM recurrence's (dist_train.models.numerics)
    threads: int = 0  # intra-op threads per process (0: the node's cores ÷ processes on it)
    tf32: bool = True  # GPUs: fp32 matmuls and cuDNN in TF32 (Ampere and later; false: full fp32, for parity checks)
    deterministic: bool = False  # bit-identical reruns and resumes on GPUs (slower kernels where atomics are used)
    seed: int = 0

    def __post_init__(self) -> None:
        at_least(self, "train", 0, "max_steps", "max_minutes", note="0: no limit")
        at_least(self, "train", 0, "num_epochs", "checkpoint_every_steps", "checkpoint_every_minutes", "threads")
        at_least(self, "train", 1, "max_skipped_in_a_row", "log_every", "keep_checkpoints", "grad_accum_steps")
        if self.num_epochs == 0 and self.max_steps == 0:
            raise ValueError(
                "train.num_epochs=0 and train.max_steps=0: set one of them (max_steps=0 means no step limit)"
            )
        check_lstm_precision(self.precision, self.lstm_precision)

    def total_steps(self, steps_per_epoch: int) -> int:
        by_epochs = math.ceil(self.num_epochs * steps_per_epoch) if self.num_epochs > 0 else math.inf
        return int(min(self.max_steps or math.inf, by_epochs))
