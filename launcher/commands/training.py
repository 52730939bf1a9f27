"""What every training job's command shares (DESIGN.md §8): its flags, its typed config from preset,
file and overrides, threads, and the run around a trainer: run directory, checkpoints, resume,
the resolved config, the JSONL log, the progress bar and the summary line."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch

from data_shards import ReaderConfig
from data_shards.errors import UserError
from data_shards.reader import ShardReader, should_pin_memory
from dist_train import distributed, rng
from dist_train.checkpoint import Checkpointer, load_checkpoint, resolve_resume
from dist_train.metrics import JsonlSink, ProgressBarSink, Sinks, start_prometheus
from dist_train.metrics.prometheus import write_targets
from dist_train.parallel.replica import check_replica
from dist_train.precision import configure_numerics
from dist_train.preemption import StopSignals
from launcher.commands.common import print_summary, say
from launcher.config import ConfigError, load_config, preset_file, presets_of, to_dict
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
        type=Path,
        default=None,
        metavar="SHARD_DIR",
        help="training shards; default: runs/shards/<corpus>, sharded from the raw data on first use",
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
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides, e.g. max_steps=20 optim.lr=0.5 (max_steps=0 and max_minutes=0 mean no limit: "
        "num_epochs decides; every key and its meaning: the preset files in launcher/presets and README)",
    )


def replica_reader(folder: Path, reader_cfg: ReaderConfig, topology: distributed.Topology) -> ShardReader:
    """This replica's reader of the shards in ``folder``: its share of every epoch, its batches pinned
    when they go to a GPU."""
    return ShardReader(
        folder,
        reader_cfg,
        replica_rank=topology.replica_rank,
        num_replicas=topology.num_replicas,
        pin_memory=should_pin_memory(topology.device),
    )


def resolve_config(args: argparse.Namespace, config_type, job: str):
    files = [preset_file(job, args.preset)] + ([args.config] if args.config else [])
    try:
        overrides = args.overrides + (["data.skip_corrupt=true"] if args.skip_corrupt else [])
        return load_config(config_type, files=files, overrides=overrides)
    except ConfigError as err:
        args.parser.error(str(err))


def set_threads(requested: int, topology: distributed.Topology) -> int:
    threads = requested or max(1, (os.cpu_count() or 1) // topology.local_world_size)
    torch.set_num_threads(threads)
    return threads


def run_directory(args: argparse.Namespace, job: str) -> Path:
    return args.run_dir or PROJECT_ROOT / "runs" / f"{job}-{args.preset}"


def launch(args: argparse.Namespace, config_type, job: str, start: Callable) -> int:
    """The typed config, then the process group (one replica per process), then ``start(cfg, topology)``."""
    cfg = resolve_config(args, config_type, job)
    topology = distributed.init_distributed(
        devices_per_replica=cfg.parallel.devices_per_replica,
        device=cfg.parallel.device,
        timeout_s=cfg.parallel.collective_timeout_s,
        trace_dir=run_directory(args, job) / "flight_recorder",
    )
    check_replica(cfg.parallel, topology)  # before anything is built: a layout an engine cannot run
    try:
        code = start(cfg, topology)
    except BaseException:
        distributed.shutdown(finished=False)
        raise
    distributed.shutdown(finished=True)
    return code


def run_training(
    args: argparse.Namespace,
    cfg,
    topology: distributed.Topology,
    *,
    job: str,
    data: Path,
    make_trainer: Callable,
    about: str,
    shown: dict[str, str],
) -> int:
    """Build the trainer (``make_trainer(checkpointer, sinks, run_dir)``), resume it, train, summarize."""
    if cfg.train.precision == "fp16" and topology.device.type != "cuda":
        args.parser.error("precision=fp16 needs a GPU (use bf16 on CPU)")
    threads = set_threads(cfg.train.threads, topology)
    configure_numerics(tf32=cfg.train.tf32, deterministic=cfg.train.deterministic)
    rng.seed_everything(cfg.train.seed)
    run_dir = run_directory(args, job)
    checkpointer = Checkpointer(
        run_dir / "checkpoints",
        every_steps=cfg.train.checkpoint_every_steps,
        every_minutes=cfg.train.checkpoint_every_minutes,
        keep=cfg.train.keep_checkpoints,
    )
    sinks = Sinks([])
    trainer = make_trainer(checkpointer, sinks, run_dir)
    prometheus = start_prometheus(cfg.metrics, topology, job=job, run_dir=run_dir, say=say)
    if prometheus is not None:
        sinks.sinks.append(prometheus)
    if topology.is_main and (removed := checkpointer.remove_incomplete()):
        say(f"{job}: removed {len(removed)} incomplete checkpoint file(s) of a save that never finished")
    resume_from = resolve_resume(args.resume, checkpointer)
    if resume_from is not None:
        resume(trainer, resume_from, job)
    if topology.is_main:
        checkpointer.check_room(trainer.checkpoint_bytes())
        (run_dir / "config.json").write_text(json.dumps({**to_dict(cfg), "data_dir": str(data)}, indent=1) + "\n")
        say(
            f"{job}: {topology.num_replicas} replica(s), {threads} thread(s) each, {len(trainer.reader)} steps/epoch, "
            f"{trainer.total_steps} steps, {about}, {trainer.precision.describe()} on {topology.device.type}, "
            f"run dir {run_dir}" + (f", resumed from {resume_from.name}" if resume_from else "")
        )
        progress = ProgressBarSink(total=trainer.horizon, initial=trainer.step, desc=job, shown=shown)
        began = {"resumed_from": resume_from.name} if resume_from else {}
        sinks.sinks += [JsonlSink(run_dir / "train.jsonl", begins_at=trainer.step, note=began), progress]
    trainer.stop_signals = StopSignals().install()  # SIGTERM, SIGUSR1, Ctrl-C: checkpoint at the next step, exit 0
    try:
        summary = trainer.train()
    finally:  # an error ends the progress bar's line before it is printed
        sinks.close()
    if prometheus is not None and topology.is_main:
        write_targets(run_dir, [])  # the job is over: nothing left to scrape
    if topology.is_main:
        print_summary({"job": job, "run_dir": str(run_dir), "checkpoint": str(checkpointer.latest()), **summary})
    return 0


def resume(trainer, checkpoint: Path, job: str) -> None:
    """Load a checkpoint into the trainer; one of another job, model, vocabulary or layout is a one-line
    error naming it (nothing is written before this)."""
    state = load_checkpoint(checkpoint, job, f"resuming {job}")
    try:
        trainer.load_state_dict(state)
    except KeyError as err:
        raise UserError(
            checkpoint, f"lacks {err}, which a {job} checkpoint holds: written by another version of this program?"
        ) from None
    except (RuntimeError, ValueError, IndexError) as err:
        detail = " ".join(str(err).split())  # torch's size mismatches come one per line
        detail = detail if len(detail) < 400 else detail[:400] + " ..."
        raise UserError(checkpoint, f"does not fit this run (another model, vocabulary or layout?): {detail}") from None
