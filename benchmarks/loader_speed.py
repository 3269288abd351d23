"""The two training pipelines side by side: images/s and CPU-seconds per epoch of the albumentations loader
(``augment_on="cpu"``) and of the device loader (``augment_on="device"``: ``data.DeviceLoader``), no model.

    python benchmarks/loader_speed.py                      # the default preset, about a minute on 2 cores
    python benchmarks/loader_speed.py --augmentation page  # Page's preset (flip, pad-crop, 8x8 cutout)
    python benchmarks/loader_speed.py --device cuda        # adds the device loader on the GPU

Rows: the albumentations train preset through ``data.make_loader`` with 0, 1 and 2 workers; the device loader on
the CPU with torch's threads as they are and with one thread (and on ``--device`` when it is a GPU). A second
table runs both pipelines with a training step on every batch (ResNet18, ``--step-width``, on the CPU), beside
the step alone on batches made beforehand: how much of the cores the loader takes from training. Each row
runs ``--passes`` passes over the bundled sample's 2,000 training images tiled ``--tile`` times (batch 512,
the last incomplete batch dropped) after one warm-up pass. CPU-seconds count this process and its loader
workers (``getrusage``: self and children; workers exit at the end of each pass, so theirs are counted), scaled
to an epoch of 50,000 images. Ratios are against the albumentations loader with 2 workers (Colab's default:
2 cores) of the same run: images/s as a speed-up, CPU-seconds as a share.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from train_speed import cpu_name

from eva_utils import data
from eva_utils.data.presets import AUGMENTATIONS, train_transforms

EPOCH = 50_000


def _cpu_s() -> float:
    """CPU-seconds (user + system) of this process and its waited-for children so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_passes(make_loader: Callable[[], Any], passes: int, sync: Callable[[], None] = lambda: None,
                step: Callable[[torch.Tensor, torch.Tensor], None] | None = None) -> dict[str, float]:
    """Images/s and CPU-seconds per 50,000 images of ``passes`` passes over the loader ``make_loader()`` builds,
    each batch given to ``step`` (a training step) when there is one."""
    loader = make_loader()
    for batch, labels in loader:  # warm-up: first imports, allocations, cuDNN
        if step is not None:
            step(batch, labels)
    sync()
    images, wall, cpu = 0, time.perf_counter(), _cpu_s()
    for _ in range(passes):
        for batch, labels in loader:
            if step is not None:
                step(batch, labels)
            images += len(batch)
    sync()
    wall, cpu = time.perf_counter() - wall, _cpu_s() - cpu
    return {"images_per_s": images / wall, "cpu_s_per_epoch": cpu / images * EPOCH, "images": images}


def _tiled(tile: int, transform: Any = None) -> data.ArrayDataset:
    sample = data.load_sample(True)
    return data.ArrayDataset(np.tile(sample.images, (tile, 1, 1, 1)), np.tile(sample.labels, tile), transform, sample.classes)


def training_step(device: str = "cpu", width: int = 4) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One SGD step of ResNet18 (``width``) on a batch: the work that shares the cores with the loader in a run."""
    from eva_utils.models import resnet18

    model = resnet18(width=width).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        loss = torch.nn.functional.cross_entropy(model(images.to(device)), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def step_rows(augmentation: str = "default", tile: int = 5, passes: int = 2, workers: int = 2, batch_size: int = 512,
              width: int = 4) -> list[dict[str, Any]]:
    """Both pipelines feeding a training step on the CPU, and the step alone on batches made beforehand (its ceiling);
    ratios against albumentations with ``workers`` workers and the step."""
    settings = AUGMENTATIONS[augmentation]
    albumentations, pixels = _tiled(tile, train_transforms(**settings)), _tiled(tile)
    transform, step = data.BatchTransform(**settings), training_step("cpu", width)
    made = list(data.DeviceLoader(pixels, batch_size, transform, "cpu"))
    rows = [
        {"pipeline": f"albumentations, {workers} workers + step", **time_passes(
            lambda: data.make_loader(albumentations, batch_size, shuffle=True, num_workers=workers, drop_last=True),
            passes, step=step)},
        {"pipeline": "device loader on the CPU + step", **time_passes(
            lambda: data.DeviceLoader(pixels, batch_size, transform, "cpu"), passes, step=step)},
        {"pipeline": "the step alone (batches made before)", **time_passes(lambda: made, passes, step=step)},
    ]
    for row in rows:
        row["speed_ratio"] = row["images_per_s"] / rows[0]["images_per_s"]
        row["cpu_ratio"] = row["cpu_s_per_epoch"] / rows[0]["cpu_s_per_epoch"]
    return rows


def loader_rows(augmentation: str = "default", device: str = "cpu", tile: int = 5, passes: int = 2,
                workers: tuple[int, ...] = (0, 1, 2), batch_size: int = 512) -> list[dict[str, Any]]:
    """The table's rows: albumentations with each of ``workers``, the device loader on the CPU (all threads, one)
    and on ``device`` when it is a GPU; each with its ratios against albumentations with ``workers[-1]`` workers."""
    settings = AUGMENTATIONS[augmentation]
    albumentations = _tiled(tile, train_transforms(**settings))
    pixels = _tiled(tile)
    transform = data.BatchTransform(**settings)
    rows = []
    for n in workers:
        rows.append({"pipeline": f"albumentations, {n} worker{'s' * (n != 1)}", **time_passes(
            lambda n=n: data.make_loader(albumentations, batch_size, shuffle=True, num_workers=n, drop_last=True), passes)})
    threads = torch.get_num_threads()
    for count in sorted({threads, 1}, reverse=True):
        torch.set_num_threads(count)
        rows.append({"pipeline": f"device loader on the CPU, {count} torch thread{'s' * (count > 1)}", **time_passes(
            lambda: data.DeviceLoader(pixels, batch_size, transform, "cpu"), passes)})
    torch.set_num_threads(threads)
    if torch.device(device).type == "cuda":
        rows.append({"pipeline": f"device loader on {torch.cuda.get_device_name()}", **time_passes(
            lambda: data.DeviceLoader(pixels, batch_size, transform, device), passes, torch.cuda.synchronize)})
    base = rows[len(workers) - 1]
    for row in rows:
        row["speed_ratio"] = row["images_per_s"] / base["images_per_s"]
        row["cpu_ratio"] = row["cpu_s_per_epoch"] / base["cpu_s_per_epoch"]
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as text: images/s, CPU-seconds per epoch, and both ratios."""
    lines = [f"{'pipeline':<44} {'images/s':>10} {'speed':>7} {'CPU-s/epoch':>12} {'CPU share':>10}"]
    lines += [f"{r['pipeline']:<44} {r['images_per_s']:>10.0f} {r['speed_ratio']:>6.2f}x {r['cpu_s_per_epoch']:>12.1f} "
              f"{r['cpu_ratio']:>9.2f}x" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--augmentation", default="default", choices=sorted(AUGMENTATIONS))
    parser.add_argument("--device", default="cpu", help="also time the device loader on this GPU (cuda)")
    parser.add_argument("--tile", type=int, default=5, help="the 2,000 sample images repeated this many times per pass")
    parser.add_argument("--passes", type=int, default=2, help="timed passes per row, after one warm-up pass")
    parser.add_argument("--step-width", type=int, default=4, help="ResNet18 width of the training step rows (0: none)")
    args = parser.parse_args(argv)
    rows = loader_rows(args.augmentation, args.device, args.tile, args.passes)
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} torch threads; torch {torch.__version__}; preset "
          f"{args.augmentation}; batch 512; {rows[0]['images']:,} images per row; ratios against albumentations, 2 workers\n")
    print(table(rows))
    if args.step_width > 0:
        stepped = step_rows(args.augmentation, args.tile, args.passes, width=args.step_width)
        print(f"\nWith a training step running (ResNet18 width {args.step_width}, SGD, on the CPU); ratios against "
              "albumentations with 2 workers and the step\n")
        print(table(stepped))
        rows += stepped
    return rows


if __name__ == "__main__":
    main()
