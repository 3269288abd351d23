"""The two training pipelines side by side: images/s and CPU-seconds per epoch of the albumentations loader
(``augment_on="cpu"``) and of the device loader (``augment_on="device"``: ``data.DeviceLoader``), no model.

    python benchmarks/loader_speed.py                      # the default preset, about a minute on 2 cores
    python benchmarks/loader_speed.py --augmentation page  # Page's preset (flip, pad-crop, 8x8 cutout)
    python benchmarks/loader_speed.py --device cuda        # adds the device loader on the GPU

Rows: the albumentations train preset through ``data.make_loader`` with 0, 1 and 2 workers; the device loader on
the CPU with torch's threads as they are and with one thread (and on ``--device`` when it is a GPU). Each row
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


def time_passes(make_loader: Callable[[], Any], passes: int, sync: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Images/s and CPU-seconds per 50,000 images of ``passes`` passes over the loader ``make_loader()`` builds."""
    loader = make_loader()
    for _ in loader:  # warm-up: first imports, allocations, cuDNN
        pass
    sync()
    images, wall, cpu = 0, time.perf_counter(), _cpu_s()
    for _ in range(passes):
        for batch, _labels in loader:
            images += len(batch)
    sync()
    wall, cpu = time.perf_counter() - wall, _cpu_s() - cpu
    return {"images_per_s": images / wall, "cpu_s_per_epoch": cpu / images * EPOCH, "images": images}


def _tiled(tile: int, transform: Any = None) -> data.ArrayDataset:
    sample = data.load_sample(True)
    return data.ArrayDataset(np.tile(sample.images, (tile, 1, 1, 1)), np.tile(sample.labels, tile), transform, sample.classes)


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
    args = parser.parse_args(argv)
    rows = loader_rows(args.augmentation, args.device, args.tile, args.passes)
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} torch threads; torch {torch.__version__}; preset "
          f"{args.augmentation}; batch 512; {rows[0]['images']:,} images per row; ratios against albumentations, 2 workers\n")
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
