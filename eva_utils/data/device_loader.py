"""A training loader that keeps the data set on the model's device and augments whole batches there.

On a GPU the albumentations loader is the ceiling (Colab's 2 CPU cores augment a few thousand images a second).
:class:`DeviceLoader` holds the training images as one uint8 tensor on the device (CIFAR-10's 50,000: 150 MB),
shuffles them every pass and augments each batch with :class:`~eva_utils.data.batch_transforms.BatchTransform`, as the
fastest CIFAR-10 trainers do (airbench, hlb-CIFAR10).

It is a ``DataLoader`` to the code that uses one (``fit``, ``find_lr``): ``len``, iteration over ``(images, labels)``
on the device, ``batch_size``, ``drop_last``, ``dataset`` (the ``ArrayDataset`` it was made from) and ``generator``:
as with :class:`~eva_utils.data.loaders.SeededLoader`, seeding it fixes the order and augmentations of the next pass.
Under torchrun ``fit`` gives each process its share (:meth:`DeviceLoader.shard`). With ``shuffle=False``,
``drop_last=False`` and ``BatchTransform(**NO_AUGMENTATION)`` it is the test loader on the device.

Example::

    from eva_utils import data
    from eva_utils.data.presets import AUGMENTATIONS
    train_set = data.load_sample(train=True)
    train_loader = data.DeviceLoader(train_set, 512, device="cuda", seed=0)   # the default preset
    page_loader = data.DeviceLoader(train_set, 512, data.BatchTransform(**AUGMENTATIONS["page"]), "cuda")
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from eva_utils.core.checks import positive_int
from eva_utils.core.errors import UserError
from eva_utils.data.batch_transforms import BatchTransform

__all__ = ["DeviceLoader"]


def _pixels(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The (N, H, W, 3) uint8 images and (N,) labels of an ``ArrayDataset``-like data set."""
    images, labels = getattr(dataset, "images", None), getattr(dataset, "labels", None)
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise UserError("the device loader needs a data set holding its pixels as an (N, H, W, 3) uint8 array in "
                        "`images` (an ArrayDataset: data.load_sample, data.get_cifar10, data.load_npz)", param="dataset")
    if len(images) == 0:
        raise UserError("the data set is empty: check the data folder or the filter you applied", param="dataset")
    return images, np.asarray(labels, dtype=np.int64)


class DeviceLoader(DataLoader):
    """Batches of a uint8 data set held on ``device``, shuffled and augmented there; seeded by its ``generator``.

    Args:
        dataset: an :class:`~eva_utils.data.ArrayDataset` (its pixels are used, not its transform).
        batch_size: images per batch (> 0).
        transform: the augmentation, default ``BatchTransform()`` (the train preset's defaults).
        device: where the images are kept and augmented (the model's device).
        shuffle: a new order every pass.
        drop_last: leave out the last incomplete batch (as the train loader does).
        seed: seeds the shuffle order and the augmentations (``generator``).

    Raises:
        UserError: a data set without uint8 pixels, an empty one, a bad batch size.
    """

    def __init__(self, dataset: Dataset, batch_size: int = 512, transform: BatchTransform | None = None,
                 device: str | torch.device = "cpu", shuffle: bool = True, drop_last: bool = True, seed: int = 0) -> None:
        batch_size = positive_int(batch_size, "batch_size")
        images, labels = _pixels(dataset)
        transform = BatchTransform() if transform is None else transform
        if images.shape[1:3] != (transform.size, transform.size):
            raise UserError(f"the transform is for {transform.size}x{transform.size} images, the data set holds "
                            f"{images.shape[2]}x{images.shape[1]}", param="dataset")
        super().__init__(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                         generator=torch.Generator().manual_seed(int(seed)))
        self.device = torch.device(device)
        self.transform = transform
        self.shuffle = shuffle
        self.images = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W) uint8
        self.labels = torch.from_numpy(labels).to(self.device)  # (N,)
        self._share: Sampler[int] | None = None  # this process's indices under torchrun (see shard)

    def shard(self, sampler: Sampler[int], batch_size: int, drop_last: bool) -> DeviceLoader:
        """This process's share under torchrun: the indices ``sampler`` gives each pass (a ``DistributedSampler`` or an
        evaluation shard), ``batch_size`` images a batch, the last one incomplete unless ``drop_last``. The images stay
        shared with this loader; the augmentations come from the new loader's own ``generator``."""
        share = copy.copy(self)  # the images on the device are shared, not copied
        # DataLoader refuses these as attributes once built; this loader reads them in len and iter only
        share.__dict__.update(batch_size=positive_int(batch_size, "batch_size"), sampler=sampler, _share=sampler,
                              drop_last=drop_last, generator=torch.Generator().manual_seed(self.generator.initial_seed()))
        return share

    def __len__(self) -> int:
        n, size = len(self.images) if self._share is None else len(self._share), int(self.batch_size)
        return n // size if self.drop_last else -(-n // size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass; its order and augmentations are drawn from ``generator`` now, when the pass begins."""
        n = len(self.images)
        if self._share is not None:
            order = torch.as_tensor(list(self._share), dtype=torch.int64)
        else:
            order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        draws = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (), generator=self.generator)))
        return self._batches(order.to(self.device), draws)

    def _batches(self, order: torch.Tensor, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The pass over ``order`` (on the device), each batch's augmentations drawn from ``generator`` (CPU)."""
        size = int(self.batch_size)
        for start in range(0, len(self) * size, size):
            index = order[start:start + size]  # (B,)
            draws = self.transform.draw(len(index), generator).to(self.device)
            yield self.transform(self.images[index], draws), self.labels[index]  # (B, 3, H, W) float32, (B,) int64
