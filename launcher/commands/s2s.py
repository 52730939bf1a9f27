"""``s2s``: train the paper's deep LSTM translator (DESIGN.md §1, §3, §6)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import torch

from data_shards.errors import DataError
from data_shards.reader import ShardReader
from data_shards.shard_text import ShardTextConfig, shard_text
from data_shards.vocab import Vocab
from data_shards.wmt14 import find_test_set, training_pairs, wmt14_root
from dist_train import distributed, rng
from dist_train.checkpoint import Checkpointer, load_checkpoint, resolve_resume
from dist_train.metrics import JsonlSink, ProgressBarSink, Sinks
from dist_train.trainers.s2s import S2SConfig, S2STrainer, vocab_sizes
from launcher.commands.common import print_summary, say
from launcher.config import ConfigError, load_config, preset_file, presets_of, to_dict
from launcher.paths import PROJECT_ROOT, shards_home, shared_data

NAME = "s2s"


def add_job_flags(p: argparse.ArgumentParser, job: str, default_preset: str) -> None:
    """The flags every training job shares (DESIGN.md §8)."""
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
        help="raw corpora to shard when --data is not given (else $WMT14_ROOT, else ../shared/data)",
    )
    p.add_argument(
        "--dev",
        type=Path,
        default=None,
        metavar="SHARD_DIR",
        help="dev shards (same vocabulary): perplexity every eval.every_steps and at the end; "
        "default with --data unset: newstest2013",
    )
    p.add_argument("--run-dir", type=Path, default=None, metavar="DIR", help="default: runs/<job>-<preset>")
    p.add_argument(
        "--resume",
        default="auto",
        metavar="auto|never|PATH",
        help="auto: the newest complete checkpoint in the run directory, if any",
    )
    p.add_argument(
        "--local_rank",
        "--local-rank",
        type=int,
        default=None,
        help="as $LOCAL_RANK; DeepSpeed's launcher (deepspeed --num_gpus N, --hostfile) passes it",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. max_steps=20 optim.lr=0.5")


def add_parser(jobs) -> None:
    p = jobs.add_parser(
        NAME,
        help="train the seq2seq LSTM translator",
        description="Train Sutskever et al.'s deep LSTM encoder-decoder on shard-text shards, "
        "as one process or data-parallel under torchrun (one process per replica).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_job_flags(p, NAME, "small")
    p.set_defaults(run=run, parser=p)


def resolve_config(args: argparse.Namespace, config_type, job: str):
    files = [preset_file(job, args.preset)] + ([args.config] if args.config else [])
    try:
        return load_config(config_type, files=files, overrides=args.overrides)
    except ConfigError as err:
        args.parser.error(str(err))


def set_threads(requested: int, topology: distributed.Topology) -> int:
    threads = requested or max(1, (os.cpu_count() or 1) // topology.local_world_size)
    torch.set_num_threads(threads)
    return threads


def vocab_state(manifest: dict, data: Path, sizes: tuple[int, int]) -> dict:
    """What decoding needs, stored in every checkpoint so that one file is enough to translate."""
    tokens = {
        side: Vocab.load(data / manifest["vocab"][side]["file"]).tokens[:size]
        for side, size in zip(("src", "tgt"), sizes)
    }
    spm = {}
    for side, name in manifest["tokenizer"].get("models", {}).items():
        spm[side] = torch.frombuffer(bytearray((data / name).read_bytes()), dtype=torch.uint8)
    return {"tokens": tokens, "tokenizer": manifest["tokenizer"], "spm_models": spm}


def default_shards(args: argparse.Namespace, topology: distributed.Topology) -> tuple[Path, Path | None]:
    """runs/shards/wmt14-{train,dev}: the discovered raw WMT'14 training corpora and newstest2013 (the
    paper's dev set, encoded with the training vocabulary), sharded by rank 0 the first time."""
    train, dev = shards_home() / "wmt14-train", shards_home() / "wmt14-dev"
    if not (train / "manifest.json").is_file() and topology.is_main:
        root = wmt14_root(args.data_root, dict(os.environ), shared_data())
        src, tgt = training_pairs(root)
        say(f"s2s: sharding the WMT'14 training corpora in {root} into {train} (once)")
        shard_text(ShardTextConfig(src=src, tgt=tgt, out=train, overwrite=True))
        try:
            dev_src, dev_ref = find_test_set(root, 2013)
        except DataError:
            say(f"s2s: no newstest2013 under {root}, so no dev set")
        else:
            say(f"s2s: sharding the dev set {dev_src.name} into {dev} (once)")
            shard_text(
                ShardTextConfig(
                    src=(dev_src,),
                    tgt=(dev_ref,),
                    out=dev,
                    vocab_from=train,
                    overwrite=True,
                    max_len=1000,
                    max_len_ratio=1000.0,
                    progress=False,
                )
            )
    distributed.barrier(topology)
    return train, dev if (dev / "manifest.json").is_file() else None


def dev_reader(dev: Path | None, cfg: S2SConfig, topology: distributed.Topology) -> ShardReader | None:
    if dev is None:
        return None
    reader_cfg = dataclasses.replace(cfg.data, shuffle=False, num_workers=0)
    return ShardReader(dev, reader_cfg, replica_rank=topology.replica_rank, num_replicas=topology.num_replicas)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args, S2SConfig, NAME)
    if args.local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    topology = distributed.init_distributed(devices_per_replica=cfg.parallel.devices_per_replica)
    try:
        data, dev = (args.data, args.dev) if args.data else default_shards(args, topology)
        return train(args, cfg, topology, data, dev or args.dev)
    finally:
        distributed.shutdown()


def train(args, cfg: S2SConfig, topology: distributed.Topology, data: Path, dev: Path | None) -> int:
    if cfg.train.precision == "fp16" and topology.device.type != "cuda":
        args.parser.error("precision=fp16 needs a GPU (use bf16 on CPU)")
    threads = set_threads(cfg.train.threads, topology)
    rng.seed_everything(cfg.train.seed)
    run_dir = args.run_dir or PROJECT_ROOT / "runs" / f"{NAME}-{args.preset}"
    reader = ShardReader(data, cfg.data, replica_rank=topology.replica_rank, num_replicas=topology.num_replicas)
    checkpointer = Checkpointer(
        run_dir / "checkpoints",
        every_steps=cfg.train.checkpoint_every_steps,
        every_minutes=cfg.train.checkpoint_every_minutes,
        keep=cfg.train.keep_checkpoints,
    )
    sizes = vocab_sizes(cfg.vocab, reader.shards.manifest)
    extra = {"config": to_dict(cfg), "data": str(data), "vocab": vocab_state(reader.shards.manifest, data, sizes)}
    sinks = Sinks([])
    trainer = S2STrainer(cfg, topology, reader, checkpointer, sinks, extra, dev_reader(dev, cfg, topology))
    resume_from = resolve_resume(args.resume, checkpointer)
    if resume_from is not None:
        trainer.load_state_dict(load_checkpoint(resume_from))
    if topology.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps({**to_dict(cfg), "data_dir": str(data)}, indent=1) + "\n")
        say(
            f"s2s: {topology.num_replicas} replica(s), {threads} thread(s) each, {len(reader)} steps/epoch, "
            f"{trainer.total_steps} steps, vocab {sizes[0]}/{sizes[1]}, run dir {run_dir}"
            + (f", resumed from {resume_from.name}" if resume_from else "")
        )
        sinks.sinks += [
            JsonlSink(run_dir / "train.jsonl"),
            ProgressBarSink(
                total=trainer.total_steps,
                initial=trainer.step,
                desc=NAME,
                shown={"words_per_s": "{:,.0f}", "loss": "{:.3f}", "lr": "{:.3g}", "dev_ppl": "{:.1f}"},
            ),
        ]
    summary = trainer.train()
    sinks.close()
    if topology.is_main:
        print_summary({"job": NAME, "run_dir": str(run_dir), "checkpoint": str(checkpointer.latest()), **summary})
    return 0
