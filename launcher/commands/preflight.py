"""``preflight``: what to run on the cluster before a ten-day job. Every process measures its devices,
matmul peaks, copies between its replica's devices, the all-reduce across all of them, the reader on
the job's shards and the room for checkpoints; rank 0 prints a table (stderr) and one JSON line
(stdout), naming any node and rank below half its peers' median or with a failed measurement."""

from __future__ import annotations

import argparse
from pathlib import Path

from data_shards.errors import UserError
from data_shards.fetch import FetchConfig
from data_shards.shard_set import ShardSet, shard_location
from dist_train.distributed import DEVICE_KINDS, init_distributed, shutdown
from dist_train.preflight import PreflightConfig, run_preflight
from dist_train.preflight_probes import CheckpointSize, estimated_checkpoint, existing_checkpoint
from dist_train.preflight_report import find_problems, summary, table
from dist_train.trainers.s2s.trainer import S2SConfig, vocab_sizes
from launcher.commands.common import make_config, print_summary, say
from launcher.config import ConfigError, load_config, preset_file

NAME = "preflight"
PRECISIONS = ("fp32", "bf16", "fp16")
PAPER_VOCAB = (160_000, 80_000)  # shard-text's defaults: the paper's vocabularies
PROBLEMS_EXIT = 3


def add_parser(jobs) -> None:
    p = jobs.add_parser(
        NAME,
        help="measure every node before a long job and name the slow ones; one JSON line",
        description="Run under torchrun (or submit preflight) with the job's own layout: "
        "torchrun --nnodes N --nproc_per_node P ... -m launcher.main preflight --data SHARDS --run-dir DIR. "
        "Every process reports its device and software (GPU, driver, CUDA, cuDNN, NCCL; or CPU and gloo), "
        "its matmul peak per precision, the copy bandwidth of its replica's device hops (host<->GPU on "
        "GPUs, a memcpy on CPU), the all-reduce bus bandwidth (nccl-tests' busbw = algbw x 2(n-1)/n) at a "
        "few sizes and its small-message latency, the reader's tokens/s on --data, and the free disk in "
        "--run-dir against one checkpoint (the newest one there, else estimated from --preset's model). "
        "Rank 0 prints a table on stderr and one JSON line on stdout naming every node and rank whose "
        "figure is below half the median of its peers (a latency above twice it), that failed a "
        "measurement, or whose disk cannot hold the checkpoints the job keeps.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--data",
        type=shard_location,
        default=None,
        help="the job's shards (a folder or a URL): measure the reader (default: skip)",
    )
    p.add_argument(
        "--run-dir", type=Path, default=Path("runs"), help="where the job will write checkpoints: free disk there"
    )
    p.add_argument("--devices-per-replica", type=int, default=1, help="8: the paper's layout (its hops are measured)")
    p.add_argument("--device", choices=DEVICE_KINDS, default="auto", help="as parallel.device")
    p.add_argument(
        "--precision",
        nargs="+",
        choices=PRECISIONS,
        default=["fp32", "bf16"],
        help="matmul peaks in these (fp16 is measured on GPUs only)",
    )
    p.add_argument("--seconds", type=float, default=2.0, help="about how long each measurement takes")
    p.add_argument("--reader-workers", type=int, default=2, help="DataLoader workers of the reader, as the job's")
    p.add_argument("--preset", default="paper", help="s2s preset whose checkpoint size the disk must hold")
    p.add_argument("--keep-checkpoints", type=int, default=3, help="as train.keep_checkpoints")
    p.add_argument("--collective-timeout-s", type=float, default=300.0, help="how long to wait for a peer")
    p.add_argument(
        "--fail-on-problems",
        action="store_true",
        help=f"exit {PROBLEMS_EXIT} when a problem is found (e.g. preflight ... --fail-on-problems && sbatch ...)",
    )
    p.set_defaults(run=run, parser=p)


def run(args: argparse.Namespace) -> int:
    cfg = make_config(
        args.parser,
        PreflightConfig,
        data=args.data,
        run_dir=args.run_dir,
        precisions=tuple(args.precision),
        seconds=args.seconds,
        reader_workers=args.reader_workers,
        keep_checkpoints=args.keep_checkpoints,
    )
    try:  # an unknown preset is a usage error now, not a failed measurement later
        preset_file("s2s", args.preset)
    except ConfigError as err:
        args.parser.error(str(err))
    topology = init_distributed(
        devices_per_replica=args.devices_per_replica, device=args.device, timeout_s=args.collective_timeout_s
    )
    if topology.is_main:
        say(f"preflight: {topology.world_size} process(es), about {args.seconds:g} s per measurement")
    reports = run_preflight(cfg, topology, lambda: checkpoint_size(args))
    code = 0
    if reports is not None:
        problems = find_problems(reports)
        say(table(reports, problems))
        print_summary(summary(reports, problems))
        code = PROBLEMS_EXIT if problems and args.fail_on_problems else 0
    shutdown(finished=True)
    return code


def checkpoint_size(args: argparse.Namespace) -> CheckpointSize:
    """The newest checkpoint in --run-dir, else an estimate from --preset's model with --data's
    vocabularies (the preset's caps applied), or the paper's 160k/80k without --data."""
    found = existing_checkpoint(args.run_dir)
    if found is not None:
        return found
    cfg = load_config(S2SConfig, files=[preset_file("s2s", args.preset)])
    manifest = shard_manifest(args.data) if args.data is not None else None
    if manifest is not None:
        src, tgt = vocab_sizes(cfg.vocab, manifest)
        vocab = f"{args.data}'s vocabularies"
    else:
        src, tgt = cfg.vocab.src_vocab_size or PAPER_VOCAB[0], cfg.vocab.tgt_vocab_size or PAPER_VOCAB[1]
        vocab = "the preset's vocabularies" if cfg.vocab.src_vocab_size else "the paper's 160k/80k vocabularies"
    label = f"preset {args.preset} with {vocab} ({src:,}/{tgt:,})"
    return estimated_checkpoint(
        cfg.model, src_vocab_size=src, tgt_vocab_size=tgt, optimizer=cfg.optim.name, label=label
    )


def shard_manifest(data: str | Path) -> dict | None:
    """``--data``'s manifest; None where it cannot be read (the reader's probe names the problem)."""
    try:
        return ShardSet(data, verify_sha256=False, how=FetchConfig(max_retries=0)).manifest
    except UserError:
        return None
