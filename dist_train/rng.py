"""Every random number generator a training process uses, captured and restored.

States are kept as tensors and plain values, so checkpoints load with ``weights_only=True``.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def replica_gpus(devices: tuple[str, ...]) -> list[torch.device]:
    """This replica's distinct GPUs, in its order (the RNG states it owns)."""
    return [torch.device(d) for d in dict.fromkeys(devices) if d.startswith("cuda")]


def capture(devices: tuple[str, ...] = ()) -> dict:
    """Every generator's state; of the GPUs, only this replica's ``devices`` (touching every visible GPU
    would create a CUDA context on each, in every process)."""
    version, keys, gauss = random.getstate()
    kind, np_keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "keys": torch.tensor(keys, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached": cached,
        },
        "torch": torch.get_rng_state(),
    }
    if gpus := replica_gpus(devices):
        state["cuda"] = [torch.cuda.get_rng_state(device) for device in gpus]
    return state


def restore(state: dict, devices: tuple[str, ...] = ()) -> None:
    """The states ``capture`` took; the replica's i-th GPU gets the i-th saved GPU state, so a run resumed
    on other GPU indices, or on fewer GPUs (their states are left as seeded), or on the CPU, still loads."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["keys"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached"])
    )
    torch.set_rng_state(state["torch"])
    for saved, device in zip(state.get("cuda", []), replica_gpus(devices)):
        torch.cuda.set_rng_state(saved, device)


class ProcessRng:
    """This process's generators as one resumable thing (``state_dict``/``load_state_dict``), for checkpoints;
    ``restart(step)`` seeds them from (seed, step, replica) instead (a resume on another replica count)."""

    def __init__(self, devices: tuple[str, ...] = (), seed: int = 0, replica: int = 0) -> None:
        self.devices, self.seed, self.replica = devices, seed, replica

    def restart(self, step: int) -> None:
        seed_everything(int(np.random.SeedSequence([self.seed, step, self.replica]).generate_state(1)[0]))

    def state_dict(self) -> dict:
        return capture(self.devices)

    def load_state_dict(self, state: dict) -> None:
        restore(state, self.devices)


class MicroBatchRng:
    """With ``data.micro_batches``: before each batch of an update, the generators that dropout draws from
    are seeded from (seed, update, the batch's index among all the update's batches, a stream number that
    tells apart a job's uses), so an update's masks are the same whichever replica, and however many
    replicas, take its batches; ``generator`` gives a job's own draws (the GAN's z) keyed alike. Without,
    ``seed_batch`` does nothing: each replica's generators run on."""

    def __init__(self, seed: int, replica: int, batches_per_update: int, enabled: bool) -> None:
        self.seed, self.first, self.enabled = seed, replica * batches_per_update, enabled

    def seed_batch(self, update: int, index: int, stream: int = 0) -> None:
        """Before this replica's ``index``-th batch of ``update``."""
        if self.enabled:
            torch.manual_seed(self.key(update, index, stream))

    def generator(self, device: torch.device, update: int, index: int, stream: int) -> torch.Generator:
        return torch.Generator(device).manual_seed(self.key(update, index, stream))

    def key(self, update: int, index: int, stream: int) -> int:
        words = [self.seed, update, self.first + index, stream]
        return int(np.random.SeedSequence(words).generate_state(1)[0])
