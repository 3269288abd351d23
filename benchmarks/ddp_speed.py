"""Training images/s on one process against two processes under torchrun (DDP, gloo), on this CPU.

Setting: ResNet18 (``--width``, default 16), SGD, a global batch of ``--batch`` (128) random 32x32 images,
``--steps`` timed optimizer steps after 2 warm-up steps; with 2 processes each takes half the batch and DDP
averages the gradients. Each process gets ``cores / processes`` torch threads, so both runs use the whole CPU.

On a 2-core CPU the expected ratio is near 1x: the same arithmetic split over the same two cores, plus
the gradient all-reduce. The point of running it here is that the distributed path works; the speed-up
is for machines with one GPU per process (Kaggle's 2x T4, a 4-8 GPU server), not measured by this project.

Run::

    python benchmarks/ddp_speed.py              # add --steps 20 for steadier numbers
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch


def worker(args: argparse.Namespace) -> None:
    """One process of the run (under torchrun when WORLD_SIZE is set): print images/s from rank 0."""
    from eva_utils import distributed
    from eva_utils.models import resnet18

    group = distributed.join("cpu")
    world = group.world_size if group else 1
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    torch.manual_seed(0)
    model = resnet18(width=args.width)
    if group is not None:
        model = distributed.wrap(model, group)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(args.batch // world, 3, 32, 32)
    labels = torch.randint(0, 10, (args.batch // world,))
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    for _ in range(2):
        step()
    distributed.barrier(group)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    distributed.barrier(group)
    seconds = time.perf_counter() - start
    if group is None or group.is_main:
        print(f"RESULT {world} {args.steps * args.batch / seconds:.1f}")
    distributed.leave()


def main(args: argparse.Namespace) -> dict[int, float]:
    rates = {}
    for nproc in (1, 2):
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), __file__,
                   "--worker", "--width", str(args.width), "--batch", str(args.batch), "--steps", str(args.steps)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT"))
        rates[nproc] = float(line.split()[2])
    print(f"torch {torch.__version__}; {os.cpu_count()} cores; ResNet18 width {args.width}, global batch {args.batch}, "
          f"{args.steps} steps\n")
    print(f"{'processes':>10s} {'images/s':>10s} {'ratio':>7s}")
    for nproc, rate in rates.items():
        print(f"{nproc:>10d} {rate:>10.1f} {rate / rates[1]:>6.2f}x")
    return rates


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    worker(parsed) if parsed.worker else main(parsed)
