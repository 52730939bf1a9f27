"""The floor to beat for the gan job: the paper-mnist step as a plain PyTorch training loop.

What a user writes in an afternoon from the released code: an ``nn.Sequential`` generator (ReLU 1200,
ReLU 1200, sigmoid 784) and a maxout discriminator with dropout, then every step the joint update:
one z, G's loss through D before D's update, D's loss on the same fakes, an SGD step on each. Same
shards, reader, batch, optimizer settings and threads as ``bench gan --preset paper-mnist``, so the
two figures compare the trainers and nothing else. Kept out of the package on purpose.

    python benchmarks/plain_gan.py --steps 200                  # one JSON line
    python -m launcher.main bench gan --preset paper-mnist      # ours, same batches
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_shards import ShardReader  # noqa: E402
from dist_train.models.gan import Maxout  # noqa: E402  (a 5-line layer: the one thing not written again)
from dist_train.timing import Stopwatch  # noqa: E402
from dist_train.trainers.gan.trainer import GanConfig  # noqa: E402
from launcher.config import load_config, preset_file  # noqa: E402


def models(cfg: GanConfig) -> tuple[nn.Module, nn.Module]:
    m, pixels = cfg.model, 28 * 28
    generator = nn.Sequential(
        nn.Linear(m.z_dim, m.g_hidden), nn.ReLU(), nn.Linear(m.g_hidden, m.g_hidden), nn.ReLU(),
        nn.Linear(m.g_hidden, pixels), nn.Sigmoid(),
    )  # fmt: skip
    drop_in, drop_hidden = 1 - m.d_input_keep, 1 - m.d_hidden_keep
    discriminator = nn.Sequential(
        nn.Dropout(drop_in), Maxout(pixels, m.d_units, m.d_pieces), nn.Dropout(drop_hidden),
        Maxout(m.d_units, m.d_units, m.d_pieces), nn.Dropout(drop_hidden), nn.Linear(m.d_units, 1),
    )  # fmt: skip
    return generator, discriminator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("runs/shards/mnist-train"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args()
    cfg = load_config(GanConfig, files=[preset_file("gan", "paper-mnist")], overrides=args.overrides)
    torch.manual_seed(cfg.train.seed)
    generator, discriminator = models(cfg)
    optimize = {"lr": cfg.optim.lr, "momentum": cfg.optim.momentum}
    g_opt = torch.optim.SGD(generator.parameters(), **optimize)
    d_opt = torch.optim.SGD(discriminator.parameters(), **optimize)
    reader = ShardReader(args.data, cfg.data)
    batches = itertools.chain.from_iterable(itertools.repeat(reader))
    times, stopwatch = [], Stopwatch(torch.device("cpu"))
    for i in range(args.warmup + args.steps):
        batch = next(batches)
        stopwatch.start()
        real = batch.images.float().div(255).flatten(1)
        z = torch.rand(len(real), cfg.model.z_dim) * 2 * 3**0.5 - 3**0.5
        fake = generator(z)
        g_loss = F.binary_cross_entropy_with_logits(discriminator(fake), torch.ones(len(z), 1))
        g_opt.zero_grad()
        g_loss.backward(inputs=list(generator.parameters()))
        g_opt.step()
        real_logits, fake_logits = discriminator(real), discriminator(fake.detach())
        d_loss = 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                        + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))  # fmt: skip
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()
        elapsed = stopwatch.stop()
        if i >= args.warmup:
            times.append(elapsed)
    reader.close()
    step_time = statistics.mean(times)
    result = {
        "bench": "plain_pytorch_gan",
        "preset": "paper-mnist",
        "images_per_s": round(cfg.data.batch_size / step_time, 1),
        "step_time_s": round(step_time, 7),
        "step_time_median_s": round(statistics.median(times), 7),
        "steps": args.steps,
        "threads": torch.get_num_threads(),
        "d_loss": round(d_loss.item(), 4),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
