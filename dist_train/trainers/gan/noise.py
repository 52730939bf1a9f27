"""Where the generator's input z comes from during training: one resumable generator per replica."""

from __future__ import annotations

import torch


class NoiseSource:
    """The generator z is drawn from, on the device G runs on, each replica its own (seeded by rank).
    Its state from another kind of device (a CPU run resumed on a GPU) does not fit: it then starts
    afresh from its seed and the step the run resumes at (``step()``)."""

    def __init__(self, device: torch.device, seed: int, step) -> None:
        self.device, self.seed, self.step = device, seed, step
        self.generator = torch.Generator(device).manual_seed(seed)

    def state_dict(self) -> dict:
        return {"state": self.generator.get_state(), "device": self.device.type}

    def load_state_dict(self, state: dict) -> None:
        if state["device"] == self.device.type:
            self.generator.set_state(state["state"])
        else:
            self.restart(self.step())

    def restart(self, step: int) -> None:
        self.generator.manual_seed(self.seed + 7919 * step)
