"""Seeded data loaders: the shuffle order and the augmentations of every pass follow from one seed.

Example::

    from eva_utils import data
    train_loader = data.make_loader(data.load_sample(), batch_size=128, shuffle=True, seed=0)
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from eva_utils.core.checks import positive_int
from eva_utils.core.errors import UserError

__all__ = ["SeededLoader", "default_num_workers", "make_loader"]


def _seed_worker(worker_id: int) -> None:
    """Give each loader worker its own seed for numpy, random and the albumentations transform."""
    info = torch.utils.data.get_worker_info()
    seed = info.seed % 2**32  # torch sets base_seed + worker_id, base_seed drawn from the loader's generator
    random.seed(seed)
    np.random.seed(seed)
    if hasattr(info.dataset, "reseed"):
        info.dataset.reseed(seed)


class SeededLoader(DataLoader):
    """A DataLoader whose augmentations are reproducible from its generator.

    Workers reseed the data set's transform in ``worker_init_fn``; without workers, every new pass reseeds it from the
    generator. Seeding ``loader.generator`` therefore fixes the shuffle order and the augmentations of the next pass.
    """

    def __iter__(self) -> Iterator[Any]:
        if self.num_workers == 0 and hasattr(self.dataset, "reseed"):
            seed = int(torch.randint(0, 2**31 - 1, (), generator=self.generator))
            self.dataset.reseed(seed)
        return super().__iter__()


def default_num_workers() -> int:
    """Loader workers: 2 on a 2-core Colab, at most 4, none on a single core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores <= 1 else min(4, cores)


def make_loader(dataset: Dataset, batch_size: int = 128, shuffle: bool = False, num_workers: int | None = None,
                seed: int = 0, device: str | torch.device | None = None, drop_last: bool = False) -> SeededLoader:
    """A seeded DataLoader with sensible defaults for Colab and laptops.

    Args:
        dataset: e.g. from :func:`load_sample` or :func:`get_cifar10`.
        batch_size: images per batch (> 0).
        shuffle: reshuffle every pass (training).
        num_workers: loader processes; ``None`` picks :func:`default_num_workers`.
        seed: seeds the shuffle order and the augmentations.
        device: pins memory only when this is a CUDA device.
        drop_last: drop the last incomplete batch.

    Returns:
        A :class:`SeededLoader`.
    """
    batch_size = positive_int(batch_size, "batch_size")
    if len(dataset) == 0:
        raise UserError("the data set is empty: check the data folder or the filter you applied")
    workers = default_num_workers() if num_workers is None else int(num_workers)
    pin_memory = device is not None and torch.device(device).type == "cuda"
    return SeededLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, pin_memory=pin_memory,
                        drop_last=drop_last, generator=torch.Generator().manual_seed(int(seed)),
                        worker_init_fn=_seed_worker if workers > 0 else None, persistent_workers=False)
