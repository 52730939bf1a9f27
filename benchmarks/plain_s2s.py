"""The floor to beat: the paper's encoder–decoder as a plain PyTorch training loop.

What a user writes in an afternoon: ``nn.Embedding`` → ``nn.LSTM`` encoder on the padded, reversed
batch → ``nn.LSTM`` decoder from its final state → ``nn.Linear`` over every position →
``cross_entropy(ignore_index=PAD)`` → backward → clip at 5 → optimizer step. Same batches as
``bench s2s`` (the same shards, reader and vocabulary cap), same threads, same optimizer, so the two
figures compare the trainers and nothing else; ``--device`` (default auto: a GPU when one is
visible, as ``bench s2s`` does) puts it on the same device as ours. Kept out of the package on purpose.

    python benchmarks/plain_s2s.py --preset small model.attention=false model.copy=false     # one JSON line
    python -m launcher.main bench s2s --preset small model.attention=false model.copy=false  # ours, same batches
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_shards import ShardReader  # noqa: E402
from data_shards.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID  # noqa: E402
from dist_train.distributed import DEVICE_KINDS, device_kind  # noqa: E402
from dist_train.timing import Stopwatch  # noqa: E402
from dist_train.trainers.s2s.trainer import S2SConfig, vocab_sizes  # noqa: E402
from launcher.config import load_config, preset_file  # noqa: E402


class PlainSeq2Seq(nn.Module):
    def __init__(self, src_vocab: int, tgt_vocab: int, embed: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.src_embed = nn.Embedding(src_vocab, embed, padding_idx=PAD_ID)
        self.tgt_embed = nn.Embedding(tgt_vocab, embed, padding_idx=PAD_ID)
        self.encoder = nn.LSTM(embed, hidden, layers, batch_first=True)
        self.decoder = nn.LSTM(embed, hidden, layers, batch_first=True)
        self.output = nn.Linear(hidden, tgt_vocab)
        for p in self.parameters():
            nn.init.uniform_(p, -0.08, 0.08)

    def forward(self, src: torch.Tensor, decoder_in: torch.Tensor) -> torch.Tensor:
        _, state = self.encoder(self.src_embed(src.flip(1)))  # padding read first, as plain loops do
        hidden, _ = self.decoder(self.tgt_embed(decoder_in), state)
        return self.output(hidden)


def clamp(tokens: torch.Tensor, size: int) -> torch.Tensor:
    return torch.where(tokens >= size, torch.full_like(tokens, UNK_ID), tokens)


def plain_device(requested: str) -> torch.device:
    """The device ``bench s2s`` would train on for ``parallel.device=requested``: the first GPU or the CPU."""
    return torch.device("cuda:0" if device_kind(requested) == "cuda" else "cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--data", type=Path, default=Path("runs/shards/giga-fren-train"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--device", choices=DEVICE_KINDS, default="auto", help="as parallel.device: auto, a GPU when one is visible"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args()
    cfg = load_config(S2SConfig, files=[preset_file("s2s", args.preset)], overrides=args.overrides)
    if cfg.model.attention:
        parser.error(
            "the plain loop is the paper's model, without attention: add model.attention=false model.copy=false"
        )
    device = plain_device(args.device)
    torch.manual_seed(cfg.train.seed)
    reader = ShardReader(args.data, cfg.data)
    src_vocab, tgt_vocab = vocab_sizes(cfg.vocab, reader.shards.manifest)
    m = cfg.model
    model = PlainSeq2Seq(src_vocab, tgt_vocab, m.embed_dim, m.hidden_dim, m.num_layers).to(device)
    optimizer = (
        torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
        if cfg.optim.name == "adam"
        else torch.optim.SGD(model.parameters(), lr=cfg.optim.lr)
    )
    batches, times, words, stopwatch = iter(reader), [], 0, Stopwatch(device)
    for i in range(args.warmup + args.steps):
        batch = next(batches)
        stopwatch.start()
        src, tgt = clamp(batch.src_tokens, src_vocab), clamp(batch.tgt_tokens, tgt_vocab)
        rows = torch.arange(len(batch))
        decoder_in = F.pad(tgt, (1, 0), value=BOS_ID)
        targets = F.pad(tgt, (0, 1), value=PAD_ID)
        targets[rows, batch.tgt_lengths] = EOS_ID
        src, decoder_in, targets = src.to(device), decoder_in.to(device), targets.to(device)
        logits = model(src, decoder_in)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD_ID, reduction="sum")
        optimizer.zero_grad()
        (loss / len(batch)).backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm)
        optimizer.step()
        elapsed = stopwatch.stop()
        if i >= args.warmup:
            times.append(elapsed)
            words += int(batch.src_lengths.sum() + batch.tgt_lengths.sum()) + len(batch)  # targets incl. </s>
    seconds = sum(times)
    result = {
        "bench": "plain_pytorch_s2s",
        "preset": args.preset,
        "words_per_s": round(words / seconds, 1),
        "step_time_s": round(seconds / args.steps, 4),
        "steps": args.steps,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "loss": round(loss.item() / int(targets.ne(PAD_ID).sum()), 4),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
