"""The DDP engine's gradient accumulation: the batches of an update all-reduce their gradients once."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from dist_train.distributed import Topology
from dist_train.parallel import data_parallel
from dist_train.parallel.engines import TorchEngine
from dist_train.precision import MixedPrecision


def test_an_update_of_three_batches_all_reduces_once_and_equals_one_batch_of_all_of_them(tmp_path, monkeypatch):
    """DDP arms its all-reduce in the forward: ``engine.batch(last=False)`` must cover the forward too, or
    every batch of an update would all-reduce its gradients (correct, and as slow as no accumulation)."""
    launches = []
    timed = data_parallel.AllReduceTimer.hook
    monkeypatch.setattr(
        data_parallel.AllReduceTimer, "hook", lambda state, bucket: launches.append(1) or timed(state, bucket)
    )
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model, inputs = nn.Linear(4, 3), torch.randn(3, 5, 4)
        whole = nn.Linear(4, 3)
        whole.load_state_dict(model.state_dict())
        peers = Topology(world_size=2)  # wrapped in DDP as with peers; the process group has only this one
        engine = TorchEngine(
            model,
            peers,
            torch.optim.SGD(model.parameters(), lr=0.1),
            MixedPrecision("fp32", torch.device("cpu")),
            max_grad_norm=0.0,
        )
        for i, batch in enumerate(inputs):
            with engine.batch(last=i == 2):
                loss = engine.module(batch).square().sum() / 15
                engine.update(loss) if i == 2 else engine.accumulate(loss)
        assert len(launches) == 1  # one bucket, once
        whole.weight.grad = None
        (whole(inputs.reshape(15, 4)).square().sum() / 15).backward()
        assert torch.allclose(model.weight.grad, whole.weight.grad, atol=1e-6)
    finally:
        dist.destroy_process_group()


def test_without_clipping_an_update_reads_the_norm_and_leaves_the_gradients_as_they_are(monkeypatch):
    """``max_grad_norm=0`` (the GAN's): the gradient norm is still returned (and decides whether the update
    is applied), but no clipping pass rescales every gradient by 1."""
    monkeypatch.setattr(nn.utils, "clip_grad_norm_", lambda *a, **k: (_ for _ in ()).throw(AssertionError("clipped")))
    model = nn.Linear(4, 3)
    engine = TorchEngine(model, Topology(), torch.optim.SGD(model.parameters(), lr=0.0),
                         MixedPrecision("fp32", torch.device("cpu")), max_grad_norm=0.0)  # fmt: skip
    norm = engine.update(model(torch.randn(5, 4)).square().sum())
    expected = torch.cat([p.grad.flatten() for p in model.parameters()]).norm()
    assert torch.allclose(norm, expected) and engine.applied
    engine.update(model(torch.full((5, 4), float("inf"))).sum())
    assert not engine.applied  # a non-finite gradient: no update
