"""Your own images as arrays in an ``.npz`` file, checked before use, and a data set by name or path.

``load_npz(path)`` reads a CIFAR-10 copy, a subset, CINIC-10, CIFAR-10.1... saved with ``np.savez``;
``load_dataset(name)`` picks ``"cifar10"``, ``"sample"`` or an ``.npz`` path. Both give an ``ArrayDataset``.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from eva_utils.core.errors import DataNotFoundError, UserError, first_line, unknown_name
from eva_utils.data.cifar10 import CIFAR10_CLASSES, ArrayDataset, Transform, get_cifar10, load_sample

__all__ = ["DATASETS", "is_npz_path", "load_dataset", "load_npz", "unknown_dataset"]

DATASETS = ("cifar10", "sample")  # by name; any path to an .npz file works too (see load_npz)


def is_npz_path(name: str | os.PathLike) -> bool:
    """Whether a data set name is a path to an ``.npz`` file rather than a built-in name."""
    return str(name).lower().endswith(".npz")


def _check_npz_split(path: Path, images: np.ndarray, labels: np.ndarray, split: str, n_classes: int) -> None:
    """Check one split's arrays; raise a one-line :class:`UserError` saying what to fix."""
    if images.dtype != np.uint8:
        raise UserError(f"{path}: {split}_images has dtype {images.dtype}; it must be uint8 pixels 0..255 "
                        "(convert floats in [0, 1] with (x * 255).round().astype(np.uint8))")
    if images.ndim == 4 and images.shape[1] == 3 and images.shape[-1] != 3:
        raise UserError(f"{path}: {split}_images has shape {images.shape}, channels first; store them HWC "
                        "(N, H, W, 3): images.transpose(0, 2, 3, 1)")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise UserError(f"{path}: {split}_images has shape {images.shape}; it must be (N, H, W, 3) RGB "
                        "(grayscale: np.repeat(x[..., None], 3, axis=-1))")
    if len(images) == 0:
        raise UserError(f"{path}: {split}_images holds no images")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{path}: {split}_labels must be a 1-D integer array of class indices, "
                        f"got shape {labels.shape} dtype {labels.dtype}")
    if len(labels) != len(images):
        raise UserError(f"{path}: {split}_images holds {len(images)} images but {split}_labels {len(labels)} labels")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= n_classes:
        raise UserError(f"{path}: {split}_labels range over {low}..{high} but there are {n_classes} classes "
                        f"(labels must be 0..{n_classes - 1}; add or fix the classes array)")


def _class_names(path: Path, array: np.ndarray) -> tuple[str, ...]:
    if array.ndim != 1 or not (np.issubdtype(array.dtype, np.str_) or np.issubdtype(array.dtype, np.bytes_)):
        raise UserError(f"{path}: classes must be a 1-D array of names (np.array(names, dtype=str)), got shape "
                        f"{array.shape} dtype {array.dtype}")
    return tuple(c.decode() if isinstance(c, bytes) else str(c) for c in array.tolist())


def load_npz(path: str | os.PathLike, train: bool = True, transform: Transform | None = None) -> ArrayDataset:
    """Your own images from an ``.npz`` file, as an :class:`ArrayDataset`.

    The file holds ``train_images`` (N, H, W, 3) uint8 RGB and ``train_labels`` (N,) integers, optionally
    ``test_images``/``test_labels`` of the same form and ``classes`` (a str array, index = label; without it, CIFAR-10's
    ten names). Save one with ``np.savez(path, train_images=x, train_labels=y, classes=np.array(names))``.

    Args:
        path: the ``.npz`` file.
        train: the training split, or the test split (``test_images``/``test_labels``).
        transform: applied to each HWC uint8 image, see :class:`ArrayDataset`.

    Returns:
        An :class:`ArrayDataset` with the file's class names.

    Raises:
        DataNotFoundError: no such file.
        UserError: not a path, not an npz file, a missing array, arrays of the wrong dtype, shape or length, or labels
            outside the classes; the message says which and how to fix it.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise UserError(f"path must be the path of an .npz file (a str or pathlib.Path), got {type(path).__name__} "
                        f"{path!r:.40}", param="path")
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{path} is a folder; give the path of an .npz file with train_images and train_labels")
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file; give the path of an .npz file with train_images and train_labels")
    split = "train" if train else "test"
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: is not a readable .npz file (not a zip archive); write it with numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            needed = {f"{split}_images", f"{split}_labels"}
            if not needed <= keys:
                missing = ", ".join(sorted(needed - keys))
                raise UserError(f"{path}: has no {missing} (it holds: {', '.join(sorted(keys)) or 'nothing'}); "
                                f"expected train_images, train_labels and optionally test_images, test_labels, classes")
            images, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
            classes = _class_names(path, npz["classes"]) if "classes" in keys else CIFAR10_CLASSES
    except UserError:
        raise
    except MemoryError as exc:  # a header that declares more than the machine holds
        raise UserError(f"{path}: declares arrays larger than this machine's memory ({first_line(exc)}); "
                        "is it damaged? Otherwise use a subset") from exc
    except ValueError as exc:
        if "pickle" in str(exc):  # object arrays need pickle, which is refused
            raise UserError(f"{path}: cannot be read without pickle ({first_line(exc)}); store classes as a str array "
                            "(np.array(names, dtype=str)) and numbers as numeric arrays") from exc
        raise UserError(f"{path}: is truncated or damaged ({first_line(exc)}); write it again with numpy.savez") from exc
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:  # truncated, damaged
        raise UserError(f"{path}: is not a readable .npz file ({first_line(exc)}); write it with numpy.savez") from exc
    for name, array in ((f"{split}_images", images), (f"{split}_labels", labels)):
        if not isinstance(array, np.ndarray):  # numpy returns the raw bytes of a member that is not an .npy array
            raise UserError(f"{path}: {name} is not a numpy array (a damaged member); write the file again with "
                            "numpy.savez")
    if len(classes) == 0 or len(set(classes)) != len(classes):
        raise UserError(f"{path}: classes must be distinct names, got {list(classes)}")
    _check_npz_split(path, images, labels, split, len(classes))
    return ArrayDataset(images, labels.astype(np.int64), transform, classes)


def load_dataset(name: str, train: bool = True, transform: Transform | None = None, root: str | os.PathLike = "./data",
                 download: bool = True) -> ArrayDataset:
    """A data set by name or path.

    ``"cifar10"`` is the full data set (see :func:`get_cifar10`), ``"sample"`` the bundled one, and a path ending in
    ``.npz`` your own arrays (see :func:`load_npz`). An npz file without a test split is tested on the bundled CIFAR-10
    test images when its classes are CIFAR-10's.
    """
    if name == "cifar10":
        return get_cifar10(root, train=train, transform=transform, download=download)
    if name == "sample":
        return load_sample(train=train, transform=transform)
    if not is_npz_path(name):
        raise unknown_dataset(name)
    if not train:
        bundled = _bundled_test_for(Path(name).expanduser(), transform)  # None: the file holds its own test split
        if bundled is not None:
            return bundled
    return load_npz(name, train=train, transform=transform)


def unknown_dataset(name: str) -> UserError:
    """The error for a data set that is neither a known name nor an ``.npz`` path."""
    return UserError(f"{unknown_name('dataset', name, DATASETS)}, or a path to an .npz file (see eva_utils.data.load_npz)")


def _bundled_test_for(path: Path, transform: Transform | None) -> ArrayDataset | None:
    """The bundled test images for an npz file without test arrays, if its classes are CIFAR-10's; None for a file with
    a test split or an unreadable one (load_npz reports what is wrong with it)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "test_images" in npz.files or "test_labels" in npz.files:
                return None
    except Exception:
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            classes = _class_names(path, npz["classes"]) if "classes" in npz.files else CIFAR10_CLASSES
    except ValueError:  # classes that need pickle: the file's reader says so in its own words
        load_npz(path, train=True)
        raise
    if classes != CIFAR10_CLASSES:
        raise UserError(f"{path}: has no test_images/test_labels, and its classes are not CIFAR-10's, so the bundled "
                        "test images cannot stand in: add a test split to the file")
    return load_sample(train=False, transform=transform)
