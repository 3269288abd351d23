"""CIFAR-10 data: constants, data sets over HWC uint8 arrays, seeded loaders.

Two sources share one interface, an :class:`ArrayDataset` that applies an
albumentations transform to each HWC uint8 RGB image:

* ``get_cifar10(root, train=True, transform=...)``: the full data set through
  ``torchvision.datasets.CIFAR10`` (downloads on first use, e.g. in Colab);
* ``load_sample(train=True, transform=...)``: 2,000 train and 1,000 test real
  CIFAR-10 images shipped inside the package, for offline demos, tests and the
  notebooks' smoke runs;
* ``load_npz(path, train=True, transform=...)``: your own arrays in an ``.npz`` file
  (a CIFAR-10 copy, a subset, CINIC-10, CIFAR-10.1...), checked before use.

Example::

    from eva_utils import data, transforms
    train_set = data.load_sample(train=True, transform=transforms.train_transforms())
    train_loader = data.make_loader(train_set, batch_size=128, shuffle=True, seed=0)
"""

from __future__ import annotations

import os
import random
import urllib.error
import zipfile
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from eva_utils.core.errors import DataNotFoundError, UserError, first_line, unknown_name

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATASETS",
    "ArrayDataset",
    "SeededLoader",
    "denormalize",
    "get_cifar10",
    "load_dataset",
    "load_npz",
    "load_sample",
    "make_loader",
    "to_chw_float",
]

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
# Per-channel statistics of the 50,000 CIFAR-10 training images, pixels scaled to [0, 1].
# (Not ImageNet's (0.485, 0.456, 0.406); and the std is the pixel std, not the often-copied
# (0.2023, 0.1994, 0.2010), which is a mean of per-image stds.)
CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)

DATASETS = ("cifar10", "sample")  # by name; any path to an .npz file works too (see load_npz)
_SAMPLE_FILE = "cifar10_sample.npz"

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

    def __init__(
        self,
        images: np.ndarray,
        labels: Sequence[int] | np.ndarray,
        transform: Transform | None = None,
        classes: Sequence[str] = CIFAR10_CLASSES,
    ) -> None:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise UserError(
                f"images must be an (N, H, W, 3) uint8 RGB array, got shape {images.shape} dtype {images.dtype}"
            )
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
        if _is_albumentations(self.transform):
            return self.transform(image=image)["image"], label
        return self.transform(image), label

    def reseed(self, seed: int) -> None:
        """Seed the transform's own random state (albumentations 2.x ignores global seeds)."""
        if hasattr(self.transform, "set_random_seed"):
            self.transform.set_random_seed(int(seed) % 2**32)


def _is_albumentations(transform: Any) -> bool:
    return type(transform).__module__.startswith("albumentations")


def load_sample(train: bool = True, transform: Transform | None = None) -> ArrayDataset:
    """The real CIFAR-10 images bundled with the package: 200 per class (train) or 100 per class (test).

    Args:
        train: the training part (2,000 images) or the test part (1,000 images).
        transform: applied to each HWC uint8 image, see :class:`ArrayDataset`.

    Returns:
        An :class:`ArrayDataset`, ordered by class (shuffle in the loader).
    """
    split = "train" if train else "test"
    with resources.files("eva_utils.sample_data").joinpath(_SAMPLE_FILE).open("rb") as f:
        with np.load(f) as npz:
            images, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
            classes = tuple(str(c) for c in npz["classes"])
    return ArrayDataset(images, labels, transform, classes)


def get_cifar10(
    root: str | os.PathLike = "./data",
    train: bool = True,
    transform: Transform | None = None,
    download: bool = True,
) -> ArrayDataset:
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
        raise DataNotFoundError(
            f"CIFAR-10 not found in {root} (expected {root / CIFAR10.base_folder}); "
            "allow the download (download=True; on the command line leave out --no-download), "
            "or use the bundled sample (data='sample')"
        )
    try:
        raw = CIFAR10(root=str(root), train=train, download=download)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:  # no network, a proxy, the site down
        raise DataNotFoundError(
            f"the CIFAR-10 download from {CIFAR10.url.split('/')[2]} failed ({first_line(exc)}): check the internet "
            "connection and try again, or train offline on the bundled sample (--data sample) or on your own "
            "copy as an .npz file (--data path/to/file.npz)"
        ) from exc
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted."
        raise DataNotFoundError(
            f"CIFAR-10 in {root} is missing or corrupt ({exc}); delete {root / CIFAR10.base_folder} "
            "and download it again"
        ) from exc
    return ArrayDataset(raw.data, raw.targets, transform, raw.classes)


def is_npz_path(name: str | os.PathLike) -> bool:
    """Whether a data set name is a path to an ``.npz`` file rather than a built-in name."""
    return str(name).lower().endswith(".npz")


def _npz_error(path: Path, problem: str) -> UserError:
    return UserError(f"{path}: {problem}")


def _check_npz_split(path: Path, images: np.ndarray, labels: np.ndarray, split: str, n_classes: int) -> None:
    """Check one split's arrays; raise a one-line :class:`UserError` saying what to fix."""
    if images.dtype != np.uint8:
        raise _npz_error(path, f"{split}_images has dtype {images.dtype}; it must be uint8 pixels 0..255 "
                               "(convert floats in [0, 1] with (x * 255).round().astype(np.uint8))")
    if images.ndim == 4 and images.shape[1] == 3 and images.shape[-1] != 3:
        raise _npz_error(path, f"{split}_images has shape {images.shape}, channels first; store them HWC "
                               "(N, H, W, 3): images.transpose(0, 2, 3, 1)")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise _npz_error(path, f"{split}_images has shape {images.shape}; it must be (N, H, W, 3) RGB "
                               "(grayscale: np.repeat(x[..., None], 3, axis=-1))")
    if len(images) == 0:
        raise _npz_error(path, f"{split}_images holds no images")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise _npz_error(path, f"{split}_labels must be a 1-D integer array of class indices, "
                               f"got shape {labels.shape} dtype {labels.dtype}")
    if len(labels) != len(images):
        raise _npz_error(path, f"{split}_images holds {len(images)} images but {split}_labels {len(labels)} labels")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= n_classes:
        raise _npz_error(path, f"{split}_labels range over {low}..{high} but there are {n_classes} classes "
                               f"(labels must be 0..{n_classes - 1}; add or fix the classes array)")


def _class_names(path: Path, array: np.ndarray) -> tuple[str, ...]:
    if array.ndim != 1 or not (np.issubdtype(array.dtype, np.str_) or np.issubdtype(array.dtype, np.bytes_)):
        raise _npz_error(path, f"classes must be a 1-D array of names (np.array(names, dtype=str)), got shape "
                               f"{array.shape} dtype {array.dtype}")
    return tuple(c.decode() if isinstance(c, bytes) else str(c) for c in array.tolist())


def load_npz(path: str | os.PathLike, train: bool = True, transform: Transform | None = None) -> ArrayDataset:
    """Your own images from an ``.npz`` file, as an :class:`ArrayDataset`.

    The file holds ``train_images`` (N, H, W, 3) uint8 RGB and ``train_labels`` (N,) integers,
    optionally ``test_images``/``test_labels`` of the same form and ``classes`` (a str array,
    index = label; without it, CIFAR-10's ten names). Save one with
    ``np.savez(path, train_images=x, train_labels=y, classes=np.array(names))``.

    Args:
        path: the ``.npz`` file.
        train: the training split, or the test split (``test_images``/``test_labels``).
        transform: applied to each HWC uint8 image, see :class:`ArrayDataset`.

    Returns:
        An :class:`ArrayDataset` with the file's class names.

    Raises:
        DataNotFoundError: no such file.
        UserError: not an npz file, a missing array, or arrays of the wrong dtype, shape or
            length, or labels outside the classes; the message says which and how to fix it.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{path} is a folder; give the path of an .npz file with train_images and train_labels")
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file; give the path of an .npz file with train_images and train_labels")
    split = "train" if train else "test"
    if not zipfile.is_zipfile(path):
        raise _npz_error(path, "is not a readable .npz file (not a zip archive); write it with numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            needed = {f"{split}_images", f"{split}_labels"}
            if not needed <= keys:
                missing = ", ".join(sorted(needed - keys))
                raise _npz_error(path, f"has no {missing} (it holds: {', '.join(sorted(keys)) or 'nothing'}); "
                                       f"expected train_images, train_labels and optionally test_images, test_labels, classes")
            images, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
            classes = _class_names(path, npz["classes"]) if "classes" in keys else CIFAR10_CLASSES
    except UserError:
        raise
    except MemoryError as exc:  # a header that declares more than the machine holds
        raise _npz_error(path, f"declares arrays larger than this machine's memory ({first_line(exc)}); "
                               "is it damaged? Otherwise use a subset") from exc
    except ValueError as exc:
        if "pickle" in str(exc):  # object arrays need pickle, which is refused
            raise _npz_error(path, f"cannot be read without pickle ({first_line(exc)}); store classes as a str array "
                                   "(np.array(names, dtype=str)) and numbers as numeric arrays") from exc
        raise _npz_error(path, f"is truncated or damaged ({first_line(exc)}); write it again with numpy.savez") from exc
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:  # truncated, damaged
        raise _npz_error(path, f"is not a readable .npz file ({first_line(exc)}); write it with numpy.savez") from exc
    for name, array in ((f"{split}_images", images), (f"{split}_labels", labels)):
        if not isinstance(array, np.ndarray):  # numpy returns the raw bytes of a member that is not an .npy array
            raise _npz_error(path, f"{name} is not a numpy array (a damaged member); write the file again with numpy.savez")
    if len(classes) == 0 or len(set(classes)) != len(classes):
        raise _npz_error(path, f"classes must be distinct names, got {list(classes)}")
    _check_npz_split(path, images, labels, split, len(classes))
    return ArrayDataset(images, labels.astype(np.int64), transform, classes)


def load_dataset(
    name: str,
    train: bool = True,
    transform: Transform | None = None,
    root: str | os.PathLike = "./data",
    download: bool = True,
) -> ArrayDataset:
    """A data set by name or path.

    ``"cifar10"`` is the full data set (see :func:`get_cifar10`), ``"sample"`` the bundled one,
    and a path ending in ``.npz`` your own arrays (see :func:`load_npz`). An npz file without
    a test split is tested on the bundled CIFAR-10 test images when its classes are CIFAR-10's.
    """
    if name == "cifar10":
        return get_cifar10(root, train=train, transform=transform, download=download)
    if name == "sample":
        return load_sample(train=train, transform=transform)
    if is_npz_path(name):
        if not train and _lacks_test_split(Path(name).expanduser()):
            return _bundled_test_for(Path(name).expanduser(), transform)
        return load_npz(name, train=train, transform=transform)
    raise unknown_dataset(name)


def unknown_dataset(name: str) -> UserError:
    """The error for a data set that is neither a known name nor an ``.npz`` path."""
    return UserError(f"{unknown_name('dataset', name, DATASETS)}, or a path to an .npz file (see eva_utils.data.load_npz)")


def _lacks_test_split(path: Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return "test_images" not in npz.files and "test_labels" not in npz.files
    except Exception:  # load_npz reports what is wrong with the file
        return False


def _bundled_test_for(path: Path, transform: Transform | None) -> ArrayDataset:
    """The bundled test images for an npz file without test arrays, if its classes are CIFAR-10's."""
    with np.load(path, allow_pickle=False) as npz:
        classes = _class_names(path, npz["classes"]) if "classes" in npz.files else CIFAR10_CLASSES
    if classes != CIFAR10_CLASSES:
        raise _npz_error(path, "has no test_images/test_labels, and its classes are not CIFAR-10's, so the bundled "
                               "test images cannot stand in: add a test split to the file")
    return load_sample(train=False, transform=transform)


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

    Workers reseed the data set's transform in ``worker_init_fn``; without workers, every
    new pass reseeds it from the generator. Seeding the generator (``loader.generator``)
    therefore fixes both the shuffle order and the augmentations of the next pass.
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


def make_loader(
    dataset: Dataset,
    batch_size: int = 128,
    shuffle: bool = False,
    num_workers: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    drop_last: bool = False,
) -> SeededLoader:
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
    if int(batch_size) <= 0:
        raise UserError(f"batch_size must be a positive integer, got {batch_size}")
    if len(dataset) == 0:
        raise UserError("the data set is empty: check the data folder or the filter you applied")
    workers = default_num_workers() if num_workers is None else int(num_workers)
    generator = torch.Generator().manual_seed(int(seed))
    return SeededLoader(
        dataset,
        batch_size=int(batch_size),
        shuffle=shuffle,
        num_workers=workers,
        pin_memory=torch.device(device).type == "cuda" if device is not None else False,
        drop_last=drop_last,
        generator=generator,
        worker_init_fn=_seed_worker if workers > 0 else None,
        persistent_workers=False,
    )


def denormalize(
    images: torch.Tensor | np.ndarray,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
) -> np.ndarray:
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
    m = np.asarray(mean, np.float32)[:, None, None]
    s = np.asarray(std, np.float32)[:, None, None]
    x = x * s + m
    x = np.moveaxis(x, -3, -1)  # channels last
    return np.clip(x, 0.0, 1.0).astype(np.float32)
