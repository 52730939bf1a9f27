"""``train.record_samples``: which samples each replica trained on at each step, to audit exactly-once."""

from __future__ import annotations

from pathlib import Path


class SamplesSeen:
    """Appends one line a step to ``RUN_DIR/samples-seen/replica-R.txt``: the epoch, the step, then the
    ids (in the manifest's order) of the samples this replica's batches held. Off: does nothing."""

    def __init__(self, run_dir: Path, replica: int, enabled: bool) -> None:
        self.path = run_dir / "samples-seen" / f"replica-{replica}.txt"
        self.enabled = enabled

    def record(self, epoch: int, step: int, batches: list) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ids = " ".join(str(i) for batch in batches for i in batch.sample_ids.tolist())
        with open(self.path, "a") as out:
            out.write(f"{epoch} {step} {ids}\n")
