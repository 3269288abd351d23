"""The whole CPU training path, so a user can predict their own run: images/s of training and
evaluation at the shipped width (16) and at the recipe's width (64), and the data loader's share.

    python benchmarks/cpu_path.py               # about 5 minutes on a 2-core machine
    python benchmarks/cpu_path.py --batches 4   # quicker, noisier

For each width, at batch 512 (the default recipe) with the albumentations train preset and the
default loader (2 workers on 2 cores):

* ``step``: forward + backward + SGD step on batches already in memory (the model's own cost);
* ``train loop``: the same steps fed by the real loader, as ``fit`` runs them (what an epoch costs);
* ``loader alone``: the loader with no model;
* ``evaluation``: forward passes under ``no_grad`` in eval mode, batch 512;
* loader share = (train loop time - step time) / train loop time: the part of an epoch spent waiting
  for data, on this machine, where loader workers and the model share the same cores.

Ratios are against the width-16 step of the same run. Epoch estimate = 50,000 / train-loop rate.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn
from train_speed import cpu_name

from eva_utils import data, transforms
from eva_utils.models import resnet18


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    loss = nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def rates(width: int, batch: int, batches: int, train_set: data.ArrayDataset) -> dict[str, float]:
    """Images/s of step, train loop, loader alone and evaluation for one width."""
    torch.manual_seed(0)
    model = resnet18(width=width).train()
    opt = _sgd(model)
    loader = data.make_loader(train_set, batch, shuffle=True, seed=0, drop_last=True)
    batches_seen = []
    for i, (x, y) in enumerate(loader):  # loader alone (and keep the batches for the step timing)
        if i == 0:
            t0 = time.perf_counter()  # from the first batch on: worker start-up is not counted
        batches_seen.append((x, y))
        if i + 1 == batches + 1:
            break
    loader_s = time.perf_counter() - t0
    x, y = batches_seen[0]
    _train_step(model, opt, x, y)  # warm-up
    t0 = time.perf_counter()
    for x, y in batches_seen[1:]:
        _train_step(model, opt, x, y)
    step_s = time.perf_counter() - t0
    n = 0
    for i, (x, y) in enumerate(loader):  # the real loop: loader workers and the model together
        if i == 0:
            t0 = time.perf_counter()  # timed from the first batch on, as the step timing
            continue
        _train_step(model, opt, x, y)
        n += len(x)
        if i == batches:
            break
    loop_s = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        model(x)
        t0 = time.perf_counter()
        for x, _ in batches_seen[1:]:
            model(x)
        eval_s = time.perf_counter() - t0
    images = batches * batch
    return {
        "step": images / step_s,
        "train loop": n / loop_s,
        "loader alone": batches * batch / loader_s,
        "evaluation": images / eval_s,
        "loader share": max(0.0, (loop_s - step_s * n / images) / loop_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--batches", type=int, default=8, help="timed batches per measurement")
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 64])
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} torch threads, loader workers "
          f"{data.default_num_workers()}; torch {torch.__version__}; batch {args.batch}, {args.batches} batches")
    sample = data.load_sample(train=True)  # 2,000 real CIFAR-10 images, repeated so that one pass has enough batches
    repeats = -(-(args.batches + 1) * args.batch // len(sample))
    train_set = data.ArrayDataset(np.concatenate([sample.images] * repeats), np.concatenate([sample.labels] * repeats),
                                  transforms.train_transforms())
    results = {w: rates(w, args.batch, args.batches, train_set) for w in args.widths}
    base = results[args.widths[0]]["step"]
    print(f"\n{'width':>5} {'what':<14}{'images/s':>10}{'ratio':>9}")
    for w, r in results.items():
        for what in ("step", "train loop", "loader alone", "evaluation"):
            print(f"{w:>5} {what:<14}{r[what]:>10.1f}{r[what] / base:>8.2f}x")
        print(f"{w:>5} loader share of the train loop: {100 * r['loader share']:.0f}%; "
              f"epoch of 50,000 images ~ {50_000 / r['train loop'] / 60:.1f} min")


if __name__ == "__main__":
    main()
