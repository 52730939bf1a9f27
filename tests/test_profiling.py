"""Profiler traces a user can open (profile.steps=A-B) and the memory snapshot that a CUDA out-of-memory
error names: traces on CPU, from a real run and from two ranks under torchrun; the out-of-memory path with
a monkeypatched ``torch.cuda`` (no GPU here)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from conftest import ONE_NODE, finished, run_cli, torchrun

from data_shards.errors import UserError
from dist_train.trainers.loop import Trainer


def trace_of(path) -> dict:
    """A Chrome trace's events by kind: the step markers, the operators, the memory records."""
    events = json.loads(path.read_text())["traceEvents"]
    return {
        "steps": sorted(e["name"] for e in events if e.get("name", "").startswith("step ")),
        "operators": {e["name"] for e in events if e.get("cat") == "cpu_op"},
        "shapes": [e["args"]["Input Dims"] for e in events if e.get("cat") == "cpu_op" and "Input Dims" in e["args"]],
        "memory": [e for e in events if e.get("name") == "[memory]"],
    }


def test_a_gan_run_writes_a_trace_of_the_steps_asked_for(mnist_5k_shards, tmp_path):
    run = tmp_path / "run"
    done = run_cli("gan", "--preset", "tiny", "--data", mnist_5k_shards, "--run-dir", run, "max_steps=5",
                   "threads=1", "profile.steps=2-3")  # fmt: skip
    assert done.returncode == 0, done.stderr
    (trace,) = (run / "profile").iterdir()
    assert trace.name == "rank-0-steps-2-3.json" and f"profile: rank 0 wrote {trace}" in done.stderr
    seen = trace_of(trace)
    assert seen["steps"] == ["step 2", "step 3"]
    assert {"aten::addmm", "aten::binary_cross_entropy_with_logits"} & seen["operators"]
    assert seen["shapes"] and seen["memory"], "record_shapes and profile_memory are on"


@pytest.mark.slow
def test_every_rank_writes_its_own_trace_under_torchrun(newstest_small_shards, tmp_path):
    run = tmp_path / "run"
    finished(torchrun(*ONE_NODE, data=newstest_small_shards, run_dir=run, steps=4, overrides=["profile.steps=3-4"]))
    traces = sorted(p.name for p in (run / "profile").iterdir())
    assert traces == ["rank-0-steps-3-4.json", "rank-1-steps-3-4.json"]
    for name in traces:
        seen = trace_of(run / "profile" / name)
        assert seen["steps"] == ["step 3", "step 4"] and "aten::embedding" in seen["operators"], name


def test_profile_steps_must_be_a_span(tmp_path):
    done = run_cli("s2s", "--preset", "tiny", "--data", tmp_path, "profile.steps=5-2")
    assert done.returncode == 2 and "profile.steps must be A-B with 1 <= A <= B (e.g. 10-12), not '5-2'" in done.stderr


def test_cuda_out_of_memory_writes_a_snapshot_and_names_it(tmp_path, monkeypatch):
    def dump(path):
        with open(path, "wb") as f:
            f.write(b"snapshot")

    monkeypatch.setattr(torch.cuda.memory, "_dump_snapshot", dump)
    failing = SimpleNamespace(topology=SimpleNamespace(device=torch.device("cuda", 0), rank=3), run_dir=tmp_path,
                              step=41, _train=lambda: (_ for _ in ()).throw(torch.OutOfMemoryError(
                                  "CUDA out of memory. Tried to allocate 2.00 GiB\nmore")))  # fmt: skip
    with pytest.raises(UserError) as raised:
        Trainer.train(failing)
    snapshot = tmp_path / "profile" / "oom-rank-3-step-42.pickle"
    assert snapshot.read_bytes() == b"snapshot"
    said = str(raised.value)
    assert said.startswith("CUDA out of memory on rank 3 at step 42: CUDA out of memory. Tried to allocate 2.00 GiB;")
    assert f"the allocator's snapshot is in {snapshot}" in said and "\n" not in said
    failing.topology.device = torch.device("cpu")  # elsewhere it is the error it was
    with pytest.raises(torch.OutOfMemoryError):
        Trainer.train(failing)
