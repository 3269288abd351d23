"""CIFAR-10: its classes and statistics, the data set (downloaded) and the bundled sample, over HWC arrays.

Both sources give an :class:`ArrayDataset` applying an albumentations transform to each HWC uint8 RGB image:
``get_cifar10`` the full data set (``torchvision.datasets.CIFAR10``, downloaded on first use), ``load_sample`` the
2,000 train and 1,000 test real images shipped inside the package (offline demos, tests, the notebooks' smoke runs).
Your own ``.npz`` arrays and data sets by name are :mod:`eva_utils.data.arrays`'s, seeded loaders
:mod:`eva_utils.data.loaders`'.

Example::

    from eva_utils import data, transforms
    train_set = data.load_sample(train=True, transform=transforms.train_transforms())
    train_loader = data.make_loader(train_set, batch_size=128, shuffle=True, seed=0)
"""

from __future__ import annotations

import os
import urllib.error
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from eva_utils.core.errors import DataNotFoundError, UserError, first_line

__all__ = ["CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "ArrayDataset", "denormalize", "get_cifar10",
           "load_sample", "to_chw_float"]

CIFAR10_CLASSES: tuple[str, ...] = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                    "truck")
# Per-channel statistics of the 50,000 training images, pixels in [0, 1]. Not ImageNet's (0.485, 0.456, 0.406); the std
# is the pixel std, not the often-copied (0.2023, 0.1994, 0.2010), which is a mean of per-image stds.
CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)

Transform = Callable[..., Any]


def to_chw_float(image: np.ndarray) -> torch.Tensor:
    """Turn one HWC uint8 image into a CHW float tensor in [0, 1] (what ``ToTensor()`` does)."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


class ArrayDataset(Dataset):
    """Images held as an (N, H, W, 3) uint8 RGB array, with integer labels.

    Args:
        images: (N, H, W, 3) uint8 RGB.
        labels: (N,) class indices.
        transform: an albumentations ``Compose`` (called as ``transform(image=img)``) or any
            callable taking the HWC array; ``None`` gives a CHW float tensor in [0, 1].
        classes: class names, index = label.
    """

    def __init__(self, images: np.ndarray, labels: Sequence[int] | np.ndarray, transform: Transform | None = None,
                 classes: Sequence[str] = CIFAR10_CLASSES) -> None:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise UserError(f"images must be an (N, H, W, 3) uint8 RGB array, got shape {images.shape} "
                            f"dtype {images.dtype}")
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) != len(images):
            raise UserError(f"got {len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels
        self.transform = transform
        self.classes = tuple(classes)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.images[index]  # (H, W, 3) uint8
        label = int(self.labels[index])
        if self.transform is None:
            return to_chw_float(image), label
        if type(self.transform).__module__.startswith("albumentations"):
            return self.transform(image=image)["image"], label
        return self.transform(image), label

    def reseed(self, seed: int) -> None:
        """Seed the transform's own random state (albumentations 2.x ignores global seeds)."""
        if hasattr(self.transform, "set_random_seed"):
            self.transform.set_random_seed(int(seed) % 2**32)


def load_sample(train: bool = True, transform: Transform | None = None) -> ArrayDataset:
    """The real CIFAR-10 images bundled with the package: 200 per class (train) or 100 per class (test).

    Args:
        train: the training part (2,000 images) or the test part (1,000 images).
        transform: applied to each HWC uint8 image, see :class:`ArrayDataset`.

    Returns:
        An :class:`ArrayDataset`, ordered by class (shuffle in the loader).
    """
    split = "train" if train else "test"
    with resources.files("eva_utils.sample_data").joinpath("cifar10_sample.npz").open("rb") as f:
        with np.load(f) as npz:
            images, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
            classes = tuple(str(c) for c in npz["classes"])
    return ArrayDataset(images, labels, transform, classes)


def get_cifar10(root: str | os.PathLike = "./data", train: bool = True, transform: Transform | None = None,
                download: bool = True) -> ArrayDataset:
    """CIFAR-10 through ``torchvision.datasets.CIFAR10``, with an albumentations transform.

    Args:
        root: folder holding (or to receive) ``cifar-10-batches-py``.
        train: the 50,000 training images or the 10,000 test images.
        transform: applied to each HWC uint8 image, see :class:`ArrayDataset`.
        download: fetch the data set (about 170 MB) when it is not in ``root``.

    Returns:
        An :class:`ArrayDataset`.

    Raises:
        DataNotFoundError: the data is not in ``root`` and ``download`` is off.
    """
    from torchvision.datasets import CIFAR10

    root = Path(root).expanduser()
    if not download and not (root / CIFAR10.base_folder).is_dir():
        raise DataNotFoundError(f"CIFAR-10 not found in {root} (expected {root / CIFAR10.base_folder}); allow the "
                                "download (download=True), or use the bundled sample (data='sample')", param="download")
    try:
        raw = CIFAR10(root=str(root), train=train, download=download)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:  # no network, a proxy, the site down
        raise DataNotFoundError(f"the CIFAR-10 download from {CIFAR10.url.split('/')[2]} failed ({first_line(exc)}): "
                                "check the internet connection and try again, or train offline on the bundled sample "
                                "(data='sample') or on your own copy as an .npz file (data='path/to/file.npz')",
                                param="data") from exc
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted."
        raise DataNotFoundError(f"CIFAR-10 in {root} is missing or corrupt ({exc}); delete "
                                f"{root / CIFAR10.base_folder} and download it again") from exc
    return ArrayDataset(raw.data, raw.targets, transform, raw.classes)


def denormalize(images: torch.Tensor | np.ndarray, mean: Sequence[float] = CIFAR10_MEAN,
                std: Sequence[float] = CIFAR10_STD) -> np.ndarray:
    """Undo ``Normalize``: CHW or NCHW normalised tensors to HWC / NHWC float RGB in [0, 1].

    Args:
        images: (C, H, W) or (N, C, H, W), normalised with ``mean`` and ``std``.
        mean: the per-channel mean used to normalise (the data set's own, not ImageNet's).
        std: the per-channel std used to normalise.

    Returns:
        float32 array (H, W, C) or (N, H, W, C), clipped to [0, 1], ready for ``imshow``.
    """
    x = images.detach().cpu().float().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, np.float32)
    if x.ndim not in (3, 4) or x.shape[-3] != len(mean):
        raise UserError(f"denormalize expects (C, H, W) or (N, C, H, W) with C={len(mean)}, got shape {x.shape}")
    x = x * np.asarray(std, np.float32)[:, None, None] + np.asarray(mean, np.float32)[:, None, None]
    return np.clip(np.moveaxis(x, -3, -1), 0.0, 1.0).astype(np.float32)  # channels last
