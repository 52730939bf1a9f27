"""What every training job's command shares (DESIGN.md §8): its flags, its typed config from preset,
file and overrides, threads, and the run around a trainer: run directory, checkpoints, resume,
the resolved config, the JSONL log, the progress bar and the summary line."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from data_shards.shard_set import shard_location
from dist_train import distributed, rng
from dist_train.atomic_files import atomic_write
from dist_train.checkpoint import CheckpointFolder, resolve_resume
from dist_train.checkpoint.elastic import SavedLayout, keep_samples_per_update, saved_layout
from dist_train.checkpoint.schema import plain_config
from dist_train.metrics import JsonlSink, ProgressBarSink, start_prometheus, start_tensorboard
from dist_train.metrics.prometheus import write_targets
from dist_train.parallel.replica import check_replica
from dist_train.precision import configure_numerics
from dist_train.preemption import StopSignals
from dist_train.profiling import start_profiler
from launcher.commands.common import print_summary, say
from launcher.config import ConfigError, load_config, preset_file, presets_of
from launcher.paths import PROJECT_ROOT


def add_job_flags(p: argparse.ArgumentParser, job: str, default_preset: str, *, raw_data: str) -> None:
    """The flags every training job shares (DESIGN.md §8); ``raw_data`` says where its raw data is
    looked for."""
    p.add_argument(
        "--preset", default=default_preset, choices=presets_of(job), help="launcher/presets/<job>-<preset>.toml"
    )
    p.add_argument("--config", type=Path, default=None, metavar="F.toml", help="a TOML file applied after the preset")
    p.add_argument(
        "--data",
        type=shard_location,
        default=None,
        metavar="SHARDS",
        help="training shards: a folder, an http(s):// URL, pipe:COMMAND with {name}, or s3:// or gs:// read "
        "with data.url_command (docs/data.md); default: runs/shards/<corpus>, sharded from the raw data on first use",
    )
    p.add_argument(
        "--data-root",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"raw data to shard when --data is not given (else {raw_data})",
    )
    p.add_argument("--run-dir", type=Path, default=None, metavar="DIR", help="default: runs/<job>-<preset>")
    p.add_argument(
        "--skip-corrupt",
        action="store_true",
        help="leave out (and count: corrupt_samples) shards and samples that fail their sha256 or do not decode, "
        "instead of stopping with an error naming the shard (as data.skip_corrupt=true)",
    )
    p.add_argument(
        "--resume",
        default="auto",
        metavar="auto|never|PATH",
        help="auto: the newest complete checkpoint in the run directory, if any",
    )
    p.add_argument(
        "--summary-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the summary line to PATH when the run ends (at its horizon or time limit, not on a "
        "signal): how a job graph (reproduce --submit) knows the run is done",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides, e.g. max_steps=20 optim.lr=0.5 (max_steps=0 and max_minutes=0 mean no limit: "
        "num_epochs decides; every key and its meaning: docs/s2s.md and docs/gan.md)",
    )


def resolve_config(args: argparse.Namespace, config_type, job: str):
    files = [preset_file(job, args.preset)] + ([args.config] if args.config else [])
    try:
        overrides = args.overrides + (["data.skip_corrupt=true"] if args.skip_corrupt else [])
        return load_config(config_type, files=files, overrides=overrides)
    except ConfigError as err:
        args.parser.error(str(err))


def set_threads(requested: int, topology: distributed.Topology) -> int:
    threads = requested or max(1, distributed.local_cores() // topology.local_world_size)
    torch.set_num_threads(threads)
    return threads


def run_directory(args: argparse.Namespace, job: str) -> Path:
    return args.run_dir or PROJECT_ROOT / "runs" / f"{job}-{args.preset}"


@dataclass(frozen=True)
class JobData:
    train: str | Path  # a folder or a URL (data_shards.shard_set.shard_location)
    dev: str | Path | None = None


@dataclass(frozen=True)
class Job:
    """A training command: its config type and its trainer's builder (in ``dist_train.trainers.<job>``),
    and the default data it shards once (``launcher.default_data``) when ``--data`` is not given."""

    name: str
    config_type: type
    build_trainer: Callable  # (cfg, topology, run_dir, data, dev) -> Trainer
    default_data: Callable[[Path | None, bool], JobData]  # (--data-root, with a dev set) -> the shards, made once


def run_job(args: argparse.Namespace, job: Job) -> int:
    """Config → process group → data → trainer → resume → train → summary, in that order, once."""
    cfg = resolve_config(args, job.config_type, job.name)
    run_dir = run_directory(args, job.name)
    topology = distributed.init_distributed(
        devices_per_replica=cfg.parallel.replica_width(),
        device=cfg.parallel.device,
        timeout_s=cfg.parallel.collective_timeout_s,
        trace_dir=run_dir / "flight_recorder",
    )
    try:
        check_replica(cfg.parallel, topology)  # before anything is built: a layout an engine cannot run
        threads = set_threads(cfg.train.threads, topology)
        configure_numerics(tf32=cfg.train.tf32, deterministic=cfg.train.deterministic)
        rng.seed_everything(cfg.train.seed)
        data = job_data(args, job, topology)
        resume = find_resume(args, job.name, run_dir, topology)
        if resume is not None:  # on another replica count: as many samples an update as before
            cfg = keep_samples_per_update(cfg, job.name, resume.layout, topology.num_replicas, resume.path)
        trainer = job.build_trainer(cfg, topology, run_dir, data.train, data.dev)
        code = run_trainer(args, job.name, cfg, trainer, data.train, threads, resume)
    except BaseException:
        distributed.shutdown(finished=False)
        raise
    distributed.shutdown(finished=True)
    return code


def job_data(args: argparse.Namespace, job: Job, topology: distributed.Topology) -> JobData:
    """``--data`` and ``--dev`` as given; else the job's default shards, made by the main process the
    first time while the others wait, and its answer taken by all (with ``--dev`` in place of its dev set
    when given)."""
    dev = getattr(args, "dev", None)
    if args.data is not None:
        return JobData(args.data, dev)
    made = job.default_data(args.data_root, dev is None) if topology.is_main else None
    default = distributed.all_gather_objects(made, topology)[0]
    return default if dev is None else replace(default, dev=dev)


@dataclass(frozen=True)
class Resume:
    path: Path
    layout: SavedLayout  # how the run that wrote it was laid out

    def describe(self, num_replicas: int) -> dict:
        """What the log, the start line and the summary say of it."""
        said = {"resumed_from": self.path.name}
        if self.layout.num_replicas != num_replicas:
            said["resumed_on"] = f"{num_replicas} replica(s) from {self.layout.num_replicas} at step {self.layout.step}"
        return said


def find_resume(args: argparse.Namespace, job: str, run_dir: Path, topology) -> Resume | None:
    """``--resume``'s checkpoint (auto: the newest complete one), once the main process has removed the
    files of saves that never finished; None to start afresh."""
    folder = CheckpointFolder(run_dir / "checkpoints")
    if topology.is_main and (removed := folder.remove_incomplete()):
        say(f"{job}: removed {len(removed)} incomplete checkpoint file(s) of a save that never finished")
    path = resolve_resume(args.resume, folder)
    return None if path is None else Resume(path, saved_layout(path, job))


def run_trainer(args: argparse.Namespace, job: str, cfg, trainer, data: str | Path, threads: int, resume) -> int:
    """Resume the trainer, record the run (config.json, train.jsonl, progress bar, Prometheus), train,
    print the summary."""
    topology, run_dir, checkpointer = trainer.topology, trainer.run_dir, trainer.checkpointer
    prometheus = start_prometheus(cfg.metrics, topology, job=job, run_dir=run_dir, say=say)
    if prometheus is not None:
        trainer.sinks.sinks.append(prometheus)
    resumed = {}
    if resume is not None:
        checkpointer.resume(resume.path)
        resumed = resume.describe(topology.num_replicas)
        if prometheus is not None:
            prometheus.note_resume(resume.layout.num_replicas, topology.num_replicas, resume.layout.step)
    if topology.is_main:
        checkpointer.folder.check_room(checkpointer.estimated_bytes())
        config = {**plain_config(cfg), "data_dir": str(data)}
        (run_dir / "config.json").write_text(json.dumps(config, indent=1) + "\n")
        say(
            f"{job}: {topology.num_replicas} replica(s), {threads} thread(s) each, {trainer.steps_per_epoch} "
            f"steps/epoch, {trainer.total_steps} steps, {trainer.about()}, {trainer.precision.describe()} on "
            f"{topology.device.type}, run dir {run_dir}"
            + "".join(f", {k.replace('_', ' ')} {v}" for k, v in resumed.items())
        )
        progress = ProgressBarSink(total=trainer.horizon, initial=trainer.step, desc=job, shown=trainer.shown)
        trainer.sinks.sinks += [JsonlSink(run_dir / "train.jsonl", begins_at=trainer.step, note=resumed), progress]
    trainer.sinks.sinks += start_tensorboard(cfg.metrics, topology, run_dir, begins_at=trainer.step)
    trainer.sinks.sinks += start_profiler(cfg.profile, run_dir, topology.rank, topology.device, begins_at=trainer.step)
    trainer.stop_signals = StopSignals().install()  # SIGTERM, SIGUSR1, Ctrl-C: checkpoint at the next step, exit 0
    try:
        summary = trainer.train()
    finally:  # an error ends the progress bar's line before it is printed
        trainer.sinks.close()
    if prometheus is not None and topology.is_main:
        write_targets(run_dir, [])  # the job is over: nothing left to scrape
    if topology.is_main:
        latest = checkpointer.folder.latest()
        summary = {"job": job, "run_dir": str(run_dir), "checkpoint": str(latest), **summary, **resumed}
        print_summary(summary)
        if args.summary_file is not None and "stopped_by_signal" not in summary:
            atomic_write(args.summary_file, json.dumps(summary, sort_keys=True) + "\n")
    return 0
