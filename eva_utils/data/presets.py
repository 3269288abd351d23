"""Albumentations presets for CIFAR-10, in the torchvision-references style.

``train_transforms()`` is the course recipe: horizontal flip, shift-scale-rotate
(albumentations 2.x ``Affine``), pad to 40 then random crop 32, one 16x16 hole of
coarse dropout filled with the data set mean, normalise, to tensor.
``test_transforms()`` only normalises. Every augmentation is a keyword: set its
probability to 0 (or ``pad=0``) to switch it off, or tune its strength.

Both take HWC uint8 RGB images (``transform(image=img)["image"]``) and return a
CHW float tensor.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING

from eva_utils.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD

if TYPE_CHECKING:
    import albumentations as A

__all__ = ["train_transforms", "test_transforms"]


def _albumentations() -> ModuleType:
    """albumentations, imported where it is first used: it asks PyPI for a newer version when imported
    (a network call offline, in class and in tests) unless NO_ALBUMENTATIONS_UPDATE is set, so the
    variable is set here, just before, and importing eva_utils does neither."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations
    import albumentations.pytorch  # noqa: F401  (ToTensorV2)

    return albumentations


def _pixel_fill(mean: Sequence[float]) -> tuple[float, ...]:
    """The data set mean in 0..255 pixel units: padding and holes filled with it normalise to 0."""
    return tuple(round(255.0 * m) for m in mean)


def train_transforms(
    *,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
    size: int = 32,
    hflip: float = 0.5,
    affine: float = 0.5,
    shift: float = 0.0625,
    scale: float = 0.1,
    rotate: float = 15.0,
    pad: int = 4,
    cutout: float = 0.5,
    cutout_size: int = 16,
    cutout_holes: int = 1,
    seed: int | None = None,
) -> A.Compose:
    """Training augmentations for 32x32 RGB images.

    Args:
        mean: per-channel mean for ``Normalize`` and the fill colour of padding and holes.
        std: per-channel std for ``Normalize``.
        size: output side (the random crop).
        hflip: probability of a horizontal flip (0 turns it off).
        affine: probability of shift-scale-rotate (0 turns it off).
        shift: largest shift, as a fraction of the side.
        scale: largest zoom in or out, as a fraction (0.1 means 0.9x..1.1x).
        rotate: largest rotation in degrees.
        pad: pixels of padding on each side before the random crop (0 turns pad-and-crop off).
        cutout: probability of coarse dropout (0 turns it off).
        cutout_size: side of each square hole in pixels.
        cutout_holes: number of holes.
        seed: seed for albumentations' own random state (``None``: the loader seeds it).

    Returns:
        An albumentations ``Compose`` producing normalised CHW float tensors.
    """
    fill = _pixel_fill(mean)
    A = _albumentations()
    import cv2  # installed with albumentations (opencv-python-headless)

    steps: list[A.BasicTransform] = []
    if hflip > 0:
        steps.append(A.HorizontalFlip(p=hflip))
    if affine > 0:
        steps.append(
            A.Affine(
                translate_percent=(-shift, shift),
                scale=(1.0 - scale, 1.0 + scale),
                rotate=(-rotate, rotate),
                border_mode=cv2.BORDER_CONSTANT,
                fill=fill,
                p=affine,
            )
        )
    if pad > 0:
        steps.append(A.PadIfNeeded(size + 2 * pad, size + 2 * pad, border_mode=cv2.BORDER_CONSTANT, fill=fill))
        steps.append(A.RandomCrop(size, size))
    if cutout > 0 and cutout_holes > 0:
        steps.append(
            A.CoarseDropout(
                num_holes_range=(cutout_holes, cutout_holes),
                hole_height_range=(cutout_size, cutout_size),
                hole_width_range=(cutout_size, cutout_size),
                fill=fill,
                p=cutout,
            )
        )
    steps += [A.Normalize(mean=tuple(mean), std=tuple(std)), A.pytorch.ToTensorV2()]
    return A.Compose(steps, seed=seed)


def test_transforms(
    *,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
) -> A.Compose:
    """Evaluation transform: normalise with the data set's statistics, to tensor."""
    A = _albumentations()
    return A.Compose([A.Normalize(mean=tuple(mean), std=tuple(std)), A.pytorch.ToTensorV2()])
