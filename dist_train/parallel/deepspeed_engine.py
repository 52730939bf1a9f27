"""DeepSpeed as the second data-parallel engine, configured by a JSON file (``cluster/deepspeed/``).

The replica stays where the placement put it (``dont_change_device=True``) and our optimizer and
learning-rate schedule stay in charge; DeepSpeed owns the backward, the gradient all-reduce (or,
with ZeRO 1/2, the reduce-scatter and the partitioned optimizer step), clipping and, with an
``fp16``/``bf16`` section, the half-precision weights and loss scaling.

The JSON file is DeepSpeed's own format. Values this program decides are written ``"auto"`` (or
left out) and filled in: the micro-batch (``data.batch_size``), ``gradient_accumulation_steps``
(``train.grad_accum_steps``), the global batch, ``gradient_clipping`` (``optim.max_grad_norm``), and
``fp16``/``bf16`` ``enabled`` (true when ``precision`` names it). A value given explicitly must agree
with the job.

Accumulation: the trainer says which backward ends an update (``set_gradient_accumulation_boundary``)
instead of DeepSpeed counting micro-steps, so an epoch's last, shorter update stays one update; the
loss comes already divided as the job wants it (``scale_wrt_gas=False``).
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import torch
from torch import nn

from data_shards.errors import UserError
from dist_train import PROJECT_ROOT
from dist_train.distributed import Topology, join_deepspeed
from dist_train.precision import MixedPrecision

STAGE0 = {"zero_optimization": {"stage": 0}}  # no file: plain data parallelism, as DDP
SCALER_FIELDS = ("cur_scale", "cur_iter", "last_overflow_iter", "cur_hysteresis")


def find_config(name: str) -> Path:
    """``name`` as given, or relative to the repository (``cluster/deepspeed/zero2.json`` from anywhere)."""
    for path in (Path(name), PROJECT_ROOT / name):
        if path.is_file():
            return path
    shipped = ", ".join(sorted(p.name for p in (PROJECT_ROOT / "cluster" / "deepspeed").glob("*.json")))
    raise UserError(
        name, f"no such DeepSpeed config (parallel.deepspeed_config; shipped in cluster/deepspeed/: {shipped})"
    )


def load_config(
    name: str, *, batch_size: int, num_replicas: int, max_grad_norm: float, precision: str, grad_accum_steps: int = 1
) -> dict:
    """The DeepSpeed config dict for this job: the file's, with the ``"auto"`` values decided."""
    config = STAGE0
    if name:
        path = find_config(name)
        try:
            config = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise UserError(path, f"not valid JSON ({err})") from None
    config = dict(config)
    decided = {
        "train_micro_batch_size_per_gpu": batch_size,
        "gradient_accumulation_steps": grad_accum_steps,
        "train_batch_size": batch_size * num_replicas * grad_accum_steps,
        "gradient_clipping": max_grad_norm,
    }
    for key, value in decided.items():
        given = config.get(key, "auto")
        if given != "auto" and given != value:
            raise UserError(name, f'{key} is {given!r} but this job needs {value!r} (write "auto")')
        config[key] = value
    for half in ("fp16", "bf16"):
        section = dict(config.get(half, {"enabled": False}))
        if section.get("enabled") == "auto":
            section["enabled"] = precision == half
        if section["enabled"] and precision != half:
            raise UserError(name, f"enables {half} but the job runs precision={precision}")
        config[half] = section
    if precision == "fp16" and not config["fp16"]["enabled"]:
        raise UserError(
            name or None,
            "precision=fp16 with engine=deepspeed needs DeepSpeed's loss scaler: a config with an fp16 section, "
            "such as cluster/deepspeed/zero2-fp16.json",
        )
    config.setdefault("zero_allow_untested_optimizer", True)  # our SGD; ZeRO 1/2 parity with DDP is tested
    config.setdefault("steps_per_print", 2**62)
    return config


class DeepSpeedDataParallel:
    """``module(...)`` for the forward, ``update(loss)`` for the rest; the optimizer's state through
    ``optimizer_state_dict``: each replica's own partition when ZeRO (or DeepSpeed's fp16/bf16
    optimizer) shards it (``optimizer_state_sharded``)."""

    def __init__(
        self,
        replica: nn.Module,
        topology: Topology,
        optimizer: torch.optim.Optimizer,
        precision: MixedPrecision,
        *,
        config_file: str,
        batch_size: int,
        max_grad_norm: float,
        grad_accum_steps: int = 1,
    ) -> None:
        config = load_config(
            config_file,
            batch_size=batch_size,
            grad_accum_steps=grad_accum_steps,
            num_replicas=topology.num_replicas,
            max_grad_norm=max_grad_norm,
            precision=precision.precision,
        )
        deepspeed = _import_deepspeed()
        join_deepspeed(deepspeed, topology)
        from deepspeed.runtime.config import DeepSpeedConfig
        from deepspeed.runtime.engine import DeepSpeedEngine

        self.module = DeepSpeedEngine(
            args=None,
            model=replica,
            optimizer=optimizer,
            config=config,
            config_class=DeepSpeedConfig(config),
            dont_change_device=True,
        )
        self.base_optimizer = optimizer  # what the schedule sets; ZeRO steps it on this replica's partition
        self.optimizer_state_sharded = self.module.optimizer is not optimizer

    def batch(self, last: bool):
        """Around a batch's forward and backward: whether it ends its update (DeepSpeed reduces then)."""
        self.module.set_gradient_accumulation_boundary(last)
        return contextlib.nullcontext()

    def accumulate(self, loss: torch.Tensor) -> None:
        """Backward of a batch that is not an update's last: its gradients are kept (under ZeRO 2, added
        into this replica's partition), nothing is stepped."""
        self.module.set_gradient_accumulation_boundary(False)
        self.module.backward(loss, scale_wrt_gas=False)

    def update(self, loss: torch.Tensor) -> torch.Tensor:
        """Backward, all-reduce (or reduce-scatter), clip, step; the gradient norm before clipping."""
        self.module.set_gradient_accumulation_boundary(True)
        self.module.backward(loss, scale_wrt_gas=False)
        if self.optimizer_state_sharded:  # ZeRO measures the partitioned gradients' norm, and its fp16
            self.module.step()  # loss scaler skips non-finite steps; in fp32 ZeRO applies them
            self.applied = self.module.was_step_applied()
            return torch.as_tensor(self.module.get_global_grad_norm(), dtype=torch.float32)
        grad_norm = nn.utils.clip_grad_norm_(self.module.parameters(), math.inf)  # measures, clips nothing
        if torch.isfinite(grad_norm):
            self.module.step()  # clip at gradient_clipping, step, zero the gradients
            self.applied = self.module.was_step_applied()
        else:  # a NaN/inf loss or gradient: no update, as the DDP engine
            self.module.zero_grad()
            self.applied = False
        return grad_norm.detach()

    def optimizer_state_dict(self) -> dict:
        state = {"optimizer": self.base_optimizer.state_dict()}
        scaler = getattr(self.module.optimizer, "loss_scaler", None)
        if scaler is not None:
            state["loss_scaler"] = {f: getattr(scaler, f) for f in SCALER_FIELDS if hasattr(scaler, f)}
        return state

    def load_resharded_optimizer_state_dicts(self, parts: list[dict], replica: int, num_replicas: int) -> None:
        """The partitions other replicas saved (``parts``, one each, in rank order) as this replica's of
        ``num_replicas``: every per-element tensor of the optimizer's state is joined and cut anew."""
        first = parts[0]["optimizer"]
        params = [p for group in self.base_optimizer.param_groups for p in group["params"]]
        state = {}
        for index, fields in first["state"].items():
            size = params[int(index)].numel()
            state[index] = {
                field: reshard([p["optimizer"]["state"][index][field] for p in parts], size, replica, num_replicas)
                if isinstance(value, torch.Tensor) and value.dim() == 1
                else value
                for field, value in fields.items()
            }
        self.load_optimizer_state_dict({**parts[0], "optimizer": {**first, "state": state}})

    def load_optimizer_state_dict(self, state: dict) -> None:
        """After the model's weights are loaded: DeepSpeed's fp32 copies are refreshed from them."""
        if self.optimizer_state_sharded:
            self.module.optimizer.refresh_fp32_params()
        self.base_optimizer.load_state_dict(state["optimizer"])
        scaler = getattr(self.module.optimizer, "loss_scaler", None)
        for field, value in state.get("loss_scaler", {}).items():
            setattr(scaler, field, value)


def reshard(parts: list[torch.Tensor], size: int, replica: int, num_replicas: int) -> torch.Tensor:
    """Replica ``replica``'s partition (``size`` elements) of a flat ZeRO buffer that ``parts`` cut evenly
    between other replicas: DeepSpeed pads the buffer at its end only, so the parts joined are the buffer,
    and the padding (zero gradients: zero moments) is cut or added at the end."""
    flat = torch.cat([part.reshape(-1) for part in parts])
    wanted = size * num_replicas
    flat = flat[:wanted] if len(flat) >= wanted else torch.cat([flat, flat.new_zeros(wanted - len(flat))])
    return flat[replica * size : (replica + 1) * size].clone()


def _import_deepspeed():
    """DeepSpeed without its shared-memory CPU collective: it is JIT-compiled on first use (~30 s)
    and gloo is what it would fall back to anyway."""
    import deepspeed
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    return deepspeed
