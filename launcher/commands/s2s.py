"""``s2s``: train the paper's deep LSTM translator (DESIGN.md §1, §3, §6)."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import torch

from data_shards.errors import UserError
from data_shards.reader import ShardReader, ShardSet
from data_shards.shard_text import ShardTextConfig, shard_text
from data_shards.wmt14 import find_test_set, training_pairs, wmt14_root
from dist_train import distributed
from dist_train.trainers.s2s.trainer import S2SConfig, S2STrainer, vocab_sizes
from launcher.commands.common import say
from launcher.commands.training import add_job_flags, launch, replica_reader, run_training
from launcher.config import to_dict
from launcher.paths import shards_home, shared_data

NAME = "s2s"


def add_parser(jobs) -> None:
    p = jobs.add_parser(
        NAME,
        help="train the seq2seq LSTM translator",
        description="Train Sutskever et al.'s deep LSTM encoder-decoder on shard-text shards, "
        "as one process or data-parallel under torchrun (one process per replica).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_job_flags(p, NAME, "small", raw_data="$WMT14_ROOT, else ../shared/data/wmt14-en-fr")
    p.add_argument(
        "--dev",
        type=Path,
        default=None,
        metavar="SHARD_DIR",
        help="dev shards (same vocabulary): perplexity every eval.every_steps and at the end; "
        "default with --data unset: newstest2013",
    )
    p.set_defaults(run=run, parser=p)


def vocab_state(shards: ShardSet, sizes: tuple[int, int]) -> dict:
    """What decoding needs, stored in every checkpoint so that one file is enough to translate."""
    tokens = {side: shards.vocab(side, size).tokens for side, size in zip(("src", "tgt"), sizes)}
    manifest, data = shards.manifest, shards.folder
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
        except UserError:
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
    return replica_reader(dev, reader_cfg, topology)


def run(args: argparse.Namespace) -> int:
    def start(cfg: S2SConfig, topology: distributed.Topology) -> int:
        data, dev = (args.data, args.dev) if args.data else default_shards(args, topology)
        return train(args, cfg, topology, data, dev or args.dev)

    return launch(args, S2SConfig, NAME, start)


def check_inputs(reader: ShardReader, dev: ShardReader | None) -> None:
    """Sentence-pair shards for training and, if given, for the dev set, sharded with the training
    vocabularies: found now, not after the training it would waste."""
    reader.shards.expect("text-pairs", "the s2s job's --data")
    if dev is not None:
        dev.shards.expect("text-pairs", "the s2s job's --dev")
        dev.shards.expect_same_vocabulary(reader.shards, "the dev perplexity")


def train(args, cfg: S2SConfig, topology: distributed.Topology, data: Path, dev: Path | None) -> int:
    reader, dev_set = replica_reader(data, cfg.data, topology), dev_reader(dev, cfg, topology)
    check_inputs(reader, dev_set)  # every input, before anything is built or trained
    sizes = vocab_sizes(cfg.vocab, reader.shards.manifest)
    extra = {"config": to_dict(cfg), "data": str(data), "vocab": vocab_state(reader.shards, sizes)}

    def make_trainer(checkpointer, sinks, run_dir):
        return S2STrainer(cfg, topology, reader, checkpointer, sinks, extra, dev_set)

    return run_training(
        args,
        cfg,
        topology,
        job=NAME,
        data=data,
        make_trainer=make_trainer,
        about=f"vocab {sizes[0]}/{sizes[1]}",
        shown={"words_per_s": "{:,.0f}", "loss": "{:.3f}", "lr": "{:.3g}", "dev_ppl": "{:.1f}"},
    )
