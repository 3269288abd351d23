"""Wall time of whole training epochs, the loader included: ResNet18 (default recipe) against the custom ResNet (page24).

    python /work/shared/data/unpack_cifar10.py /tmp/full/cifar10_full.npz      # all 50,000 training images
    python benchmarks/epoch_time.py --data /tmp/full/cifar10_full.npz          # CPU: about 5 minutes at width 16
    python benchmarks/epoch_time.py --data sample --max-batches 3              # a quick look

Each recipe runs ``setup_run`` and ``train_run`` for ``--epochs`` epochs (2: the first pays for starting the loader workers
and warming up) with its own batch size, augmentation and loader, as ``eva-utils train`` would. The table gives
each recipe's median epoch time and the ratio to ResNet18's, then how many ResNet18 epochs take as long as the
custom ResNet's 24: the number to compare accuracies at the same wall time. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile

import torch

from eva_utils.training.recipe import TrainConfig, setup_run, train_run


def epoch_seconds(config: TrainConfig) -> list[float]:
    """The seconds of each epoch of ``config``'s run (written into a temporary folder)."""
    with tempfile.TemporaryDirectory() as out:
        setup = setup_run(TrainConfig.from_dict({**config.to_dict(), "out": out}))
        return list(train_run(setup).history.seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="sample", help="an npz of CIFAR-10 arrays (default: the bundled sample)")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-batches", type=int, default=None, help="batches per pass (a quick look)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    common = dict(data=args.data, download=False, width=args.width, epochs=args.epochs, device=args.device,
                  max_batches=args.max_batches, progress=False)
    recipes = {"resnet18, default": TrainConfig(**common), "custom_resnet, page24": TrainConfig.page24(**common)}
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"device {args.device}, width {args.width}, data {args.data}, {args.epochs} epochs each")
    medians = {}
    for name, config in recipes.items():
        seconds = epoch_seconds(config)
        medians[name] = statistics.median(seconds[1:] or seconds)
        print(f"  {name}: batch {config.batch_size}, epochs " + ", ".join(f"{s:.1f} s" for s in seconds))
    base = medians["resnet18, default"]
    print(f"\n{'recipe':<26}{'s/epoch':>10}{'ratio':>9}")
    for name, median in medians.items():
        print(f"{name:<26}{median:>10.1f}{median / base:>8.2f}x")
    custom = medians["custom_resnet, page24"]
    print(f"\nthe custom ResNet's 24 epochs ({24 * custom / 60:.1f} min) take as long as "
          f"{24 * custom / base:.1f} epochs of ResNet18")


if __name__ == "__main__":
    main()
