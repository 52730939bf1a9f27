"""Device and backend logic, tested without the device: models placed on ``meta`` (a device type other
than ``cpu``, so anything left behind or created on the host shows), and ``torch.cuda`` monkeypatched to
drive the GPU branches of device choice, process groups, RNG state and the engines' checks.

Each test here would have failed for a bug a first multi-GPU run would have met (issue 14, §1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import namedtuple

import pytest
import torch
from conftest import map_sources_for_copying

from data_shards import ReaderConfig, ShardReader
from data_shards.errors import UserError
from dist_train import distributed, flight_recorder, rng
from dist_train.distributed import Topology, all_gather_objects, backend_for, init_distributed, replica_devices
from dist_train.models.gan import build_gan, sample_noise
from dist_train.models.numerics import choose_recurrence_dtype
from dist_train.models.seq2seq import Seq2Seq
from dist_train.parallel.replica import LayoutConfig, ParallelConfig, build_replica, check_replica
from dist_train.precision import MixedPrecision
from dist_train.trainers.classifier import shifted
from dist_train.trainers.gan.trainer import GanConfig
from dist_train.trainers.s2s.batch import model_inputs
from dist_train.trainers.s2s.trainer import S2SConfig
from launcher.config import load_config, preset_file
from launcher.main import build_parser, parse_args
from launcher.paths import PROJECT_ROOT

META = torch.device("meta")
VOCAB = (1000, 1003)
LAYOUTS = {  # name: (placement, devices per replica, wavefront chunk)
    "one device": ("none", 1, 0),
    "one device, wavefront": ("none", 1, 4),
    "paper on 1": ("paper", 1, 0),
    "paper on 2, wavefront": ("paper", 2, 3),
    "paper on 8": ("paper", 8, 0),
    "paper on 8, wavefront": ("paper", 8, 4),
}


def preset_model(preset: str, **model) -> Seq2Seq:
    cfg = load_config(
        S2SConfig, files=[preset_file("s2s", preset)], overrides=[f"model.{k}={v}" for k, v in model.items()]
    )
    torch.manual_seed(0)
    seq2seq = Seq2Seq(cfg.model, src_vocab_size=VOCAB[0], tgt_vocab_size=VOCAB[1])
    map_sources_for_copying(seq2seq)
    return seq2seq


def off_device(module: torch.nn.Module, device: torch.device) -> list[str]:
    tensors = [*module.named_parameters(), *module.named_buffers()]
    return [f"{name} on {t.device}" for name, t in tensors if t.device.type != device.type]


@pytest.fixture(scope="module")
def batch(newstest_small_shards):
    return next(iter(ShardReader(newstest_small_shards, ReaderConfig(batch_size=6, num_workers=0, seed=1))))


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize(
    "preset,model", [("tiny", {}), ("small", {}), ("paper", {}), ("tiny", {"attention": "true", "copy": "true"})]
)
def test_every_model_and_layout_places_everything_and_trains_on_a_non_cpu_device(batch, preset, model, layout):
    """Every parameter and buffer on the layout's devices (none left on the CPU), and a training forward
    and backward that never touches the host: a CPU tensor mixed in, a device read (``.item()``) or a
    boolean mask (a host round trip) raises on ``meta``."""
    placement, count, chunk_len = LAYOUTS[layout]
    cfg = LayoutConfig(placement=placement, devices_per_replica=count, chunk_len=chunk_len)
    replica = build_replica(preset_model(preset, **model), cfg, Topology(devices=("meta",) * count))
    assert off_device(replica, META) == []
    inputs = model_inputs(batch, VOCAB, META)
    assert inputs.src_lengths.device.type == "cpu", "the lengths the model sorts by stay on the host"
    loss = replica(*inputs.as_args()).sum()
    assert loss.device == META
    loss.backward()
    assert [name for name, p in replica.named_parameters() if p.grad is None or p.grad.device != META] == []


@pytest.mark.parametrize("preset", ["paper-mnist", "dcgan-32", "tiny"])
def test_every_gan_moves_whole_and_runs_on_a_non_cpu_device(preset):
    cfg = load_config(GanConfig, files=[preset_file("gan", preset)])
    shape = (1, 28, 28) if preset != "dcgan-32" else (3, 32, 32)
    generator, discriminator = (m.to(META) for m in build_gan(cfg.model, shape))
    assert off_device(generator, META) == [] == off_device(discriminator, META)
    z = sample_noise(cfg.model, 4, None, META)  # no generator: drawn on the device itself
    assert z.device == META and discriminator(generator(z)).device == META
    assert sample_noise(cfg.model, 4, torch.Generator().manual_seed(0), META).device == META


def test_the_classifiers_shift_augmentation_builds_its_indices_where_the_images_are():
    images = torch.zeros(5, 1, 28, 28, device=META)
    assert shifted(images, 2, torch.Generator().manual_seed(0)).device == META


def test_placement_refuses_to_leave_a_part_behind():
    model = preset_model("tiny", attention="true", copy="true")
    model.extra = torch.nn.Linear(2, 2)  # a part placement does not know
    with pytest.raises(ValueError, match=r"extra\.weight \(cpu\)"):
        build_replica(model, LayoutConfig(placement="paper", devices_per_replica=2), Topology(devices=("meta",) * 2))


@pytest.fixture
def gpus(monkeypatch):
    """Eight visible GPUs as far as the device logic can tell; set_device is recorded."""
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(os, "environ", dict(os.environ))  # what init_distributed sets stays in this test
    return chosen


def launched(monkeypatch, *, rank: int, local_rank: int, world_size: int = 2) -> list[tuple]:
    """torchrun's variables for this process; joining the group is recorded instead of done."""
    joined = []
    env = {"RANK": rank, "LOCAL_RANK": local_rank, "WORLD_SIZE": world_size, "LOCAL_WORLD_SIZE": world_size}
    for name, value in env.items():
        monkeypatch.setitem(os.environ, name, str(value))
    monkeypatch.setattr(distributed, "join", lambda *args: joined.append(args))
    return joined


def test_on_gpus_one_process_group_serves_cpu_scalars_and_cuda_gradients(gpus, monkeypatch, tmp_path):
    joined = launched(monkeypatch, rank=1, local_rank=1)
    topology = init_distributed(devices_per_replica=4, trace_dir=tmp_path / "fr")
    assert topology.devices == ("cuda:4", "cuda:5", "cuda:6", "cuda:7") and gpus == [torch.device("cuda:4")]
    ((backend, rank, world_size, _timeout),) = joined
    assert backend == "cpu:gloo,cuda:nccl" == topology.backend and (rank, world_size) == (1, 2)
    assert os.environ["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "2", "a timeout must raise, not abort the process"
    assert os.environ["TORCH_NCCL_DUMP_ON_TIMEOUT"] == "1" and int(os.environ["TORCH_FR_BUFFER_SIZE"]) > 0
    assert os.environ["TORCH_FR_DUMP_TEMP_FILE"].startswith(str(tmp_path / "fr"))
    assert backend_for(("cpu",)) == "gloo"


def test_parallel_device_cpu_is_honoured_with_gpus_visible(gpus, monkeypatch):
    joined = launched(monkeypatch, rank=0, local_rank=3, world_size=4)
    topology = init_distributed(devices_per_replica=2, device="cpu")
    assert topology.devices == ("cpu", "cpu") and gpus == [] and joined[0][0] == "gloo"
    assert replica_devices(1, 1, "auto") == ("cuda:1",)
    with pytest.raises(ValueError, match="parallel.device"):
        ParallelConfig(device="gpu")


def test_two_processes_on_a_one_gpu_machine_say_how_to_run(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserError, match=r"GPUs 1\.\.1, but 1 are visible.*parallel.device=cpu"):
        replica_devices(1, 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="parallel.device=cuda, but no GPU is visible"):
        replica_devices(0, 1, "cuda")


def test_gathered_objects_travel_as_cpu_tensors():
    """A ZeRO partition or an RNG state gathered from a GPU would be unpickled onto that GPU's index on
    every receiver: ``all_gather_objects`` moves every tensor inside to the CPU first (``meta`` cannot
    be copied out, so reaching it shows the move is attempted at any depth)."""
    Pair = namedtuple("Pair", "a b")
    gathered = all_gather_objects({"x": [Pair(torch.ones(2), 3)], "n": 1}, Topology())
    assert isinstance(gathered[0]["x"][0], Pair) and gathered[0]["x"][0].a.device.type == "cpu"
    with pytest.raises(NotImplementedError, match="meta"):
        all_gather_objects({"optimizer": {"state": [(torch.ones(2, device="meta"),)]}}, Topology())


def test_rng_state_is_the_replicas_own_gpus_and_restores_on_fewer(monkeypatch):
    states = {f"cuda:{i}": torch.tensor([i], dtype=torch.uint8) for i in range(8)}
    touched = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: touched.append(str(device)) or states[str(device)])
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: states.__setitem__(str(device), state))
    saved = rng.capture(("cuda:4", "cuda:5", "cuda:6", "cuda:7"))
    assert touched == ["cuda:4", "cuda:5", "cuda:6", "cuda:7"], "only this replica's GPUs"
    rng.restore(saved, ("cuda:0",))  # resumed on a machine with one GPU: no IndexError
    assert states["cuda:0"].tolist() == [4]
    rng.restore(saved, ("cpu",))  # or on the CPU


def test_deepspeed_is_refused_before_anything_starts_for_a_replica_over_several_gpus():
    cfg = LayoutConfig(engine="deepspeed", placement="paper", devices_per_replica=8)
    with pytest.raises(UserError, match="use parallel.engine=ddp"):
        check_replica(cfg, Topology(devices=tuple(f"cuda:{i}" for i in range(8))))
    check_replica(cfg, Topology(devices=("cpu",) * 8))  # on the CPU every device is one: it works (tested elsewhere)
    check_replica(LayoutConfig(placement="paper", devices_per_replica=8), Topology(devices=("cuda:0",) * 8))


def test_bf16_runs_the_recurrence_in_the_precision_chosen_not_autocasts_fp16():
    assert choose_recurrence_dtype("cuda", torch.bfloat16, "auto", 91300) == torch.bfloat16
    assert choose_recurrence_dtype("cuda", torch.bfloat16, "auto", 90100) == torch.float32, "no bf16 RNN in cuDNN"
    assert choose_recurrence_dtype("cuda", torch.float16, "auto", 90100) == torch.float16
    assert choose_recurrence_dtype("cpu", torch.bfloat16, "auto", None) == torch.float32
    assert choose_recurrence_dtype("cuda", torch.bfloat16, "fp32", 91300) == torch.float32
    with pytest.raises(ValueError, match="loss scaler"):
        MixedPrecision("bf16", torch.device("cpu"), "fp16")


@pytest.mark.parametrize("lstm_precision,reaches", [("auto", torch.float32), ("bf16", torch.bfloat16)])
def test_the_dtype_that_reaches_the_recurrence(batch, lstm_precision, reaches):
    model = preset_model("tiny")
    seen = []
    for lstm in [*model.encoder, *model.decoder]:
        lstm.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    precision = MixedPrecision("bf16", torch.device("cpu"), lstm_precision)
    with precision.autocast():
        loss = model(*model_inputs(batch, VOCAB, torch.device("cpu")).as_args()).sum()
    loss.backward()
    assert seen and set(seen) == {reaches}
    assert torch.isfinite(loss) and all(p.grad.dtype == torch.float32 for p in model.parameters())
    assert str(reaches).removeprefix("torch.") in precision.describe()


def test_the_flight_recorder_names_the_rank_that_sent_no_dump(tmp_path):
    """What rank 0 writes when rank 1 hangs: its own record (a pending all-reduce), none from rank 1."""
    record = {
        "entries": [
            {"collective_seq_id": 56, "profiling_name": "gloo:all_reduce", "state": "scheduled", "retired": True},
            {"collective_seq_id": 57, "profiling_name": "gloo:all_reduce", "state": "scheduled", "retired": False},
        ],
        "pg_status": {"0": {"last_enqueued_collective": "57", "last_completed_collective": "56"}},
    }
    (tmp_path / "rank_0.json").write_text(json.dumps(record))
    behind = {**record, "pg_status": {"0": {"last_enqueued_collective": "55"}}}
    (tmp_path / "rank_2.json").write_text(json.dumps(behind))
    line = flight_recorder.stragglers(tmp_path, rank=0, world_size=3, wait_s=0.5)
    assert "rank 0 waits at collective #57 (gloo:all_reduce)" in line
    assert "no flight-recorder dump from rank(s) 1 within 0.5 s" in line and "rank(s) 2 behind it" in line


def test_gpu_check_without_a_gpu_says_so_and_runs_nothing(tmp_path):
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "benchmarks" / "gpu_check.py"), "--work-dir", str(tmp_path / "gc")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0 and "no GPU is visible" in result.stdout and not (tmp_path / "gc").exists()


def test_gpu_check_commands_are_ones_the_command_line_takes(tmp_path):
    """Every check's launcher command parses (its job, flags and overrides exist): a renamed flag must not
    be found first on a lent GPU machine."""
    sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
    import gpu_check

    parser = build_parser()
    for check in gpu_check.checks(tmp_path / "data", tmp_path / "work"):
        if check.command[1:3] == ["-m", "launcher.main"]:
            args = parse_args(parser, check.command[3:])
            job = "s2s" if args.job == "s2s" or args.target in ("s2s", "pipeline") else "gan"
            preset = args.preset or {"s2s": "small", "gan": "tiny"}[job]
            load_config(
                {"s2s": S2SConfig, "gan": GanConfig}[job], files=[preset_file(job, preset)], overrides=args.overrides
            )
        elif "launcher.main" in check.command:  # under torchrun
            parse_args(parser, check.command[check.command.index("launcher.main") + 1 :])
        else:  # pytest: the selected tests exist
            assert (PROJECT_ROOT / check.command[check.command.index("-x") + 1]).is_file(), check.name


def test_threads_fit_the_cores_slurm_allocated_on_a_shared_node(monkeypatch):
    """A job given 4 CPUs of a 64-core node it shares, and not bound to them, sees all 64: its threads are
    sized by the 4 (2 each for 2 local processes); an affinity mask narrower than the allocation wins."""
    from launcher.commands.training import set_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.delenv("SLURM_CPUS_ON_NODE", raising=False)
    assert distributed.local_cores() == 64
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "4")
    assert distributed.local_cores() == 4
    before = torch.get_num_threads()
    try:
        assert set_threads(0, Topology(world_size=2, local_world_size=2)) == 2 and torch.get_num_threads() == 2
        assert set_threads(3, Topology()) == 3, "train.threads given: as given"
        monkeypatch.setenv("SLURM_CPUS_ON_NODE", "1")
        distributed.fit_threads_to_cores()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "8")
    assert distributed.local_cores() == 2
