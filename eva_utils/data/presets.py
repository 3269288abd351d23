"""The one home of preprocessing, pixels -> tensor: the training and evaluation transforms, and the inference presets.

* ``train_transforms()`` is the course recipe: horizontal flip, shift-scale-rotate (albumentations 2.x ``Affine``),
  pad to 40 then random crop 32, one 16x16 hole of coarse dropout filled with the data set mean, normalise, to tensor;
  ``test_transforms()`` only normalises. Each augmentation is a keyword (probability 0 or ``pad=0`` switches it off).
  Both map an HWC uint8 RGB image (``transform(image=img)["image"]``) to a CHW float tensor.
* A :class:`Preset` turns one image file's pixels into the normalised tensor a model expects (resize the shorter side,
  centre-crop, scale to [0, 1], normalise): ``imagenet_preset()`` for torchvision's pretrained models (256, 224,
  ImageNet mean/std), ``cifar_preset()`` for eva_utils models (32x32, CIFAR-10 mean/std).

Example::

    from eva_utils import inputs
    preset = inputs.imagenet_preset()
    x = torch.stack([preset(inputs.read_image(f.path)) for f in inputs.find_images("data")])  # (N, 3, 224, 224)
    rgb = preset.to_rgb(x)                                      # (N, 224, 224, 3) in [0, 1], for plots
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from eva_utils.core.errors import UserError, unknown_name
from eva_utils.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD, denormalize

if TYPE_CHECKING:
    import albumentations as A

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "AUGMENTATIONS", "PRESETS", "Preset", "cifar_preset", "get_preset",
           "imagenet_preset", "test_transforms", "train_transforms"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
PRESETS = ("imagenet", "cifar")

#: Named settings of :func:`train_transforms`: ``default`` is the course recipe; ``page`` is David Page's
#: (flip, pad 4 and crop, one 8x8 cutout hole on every image; no affine) for the custom ResNet.
AUGMENTATIONS: dict[str, dict[str, float]] = {"default": {}, "page": {"affine": 0.0, "cutout": 1.0, "cutout_size": 8}}


# ----------------------------------------------------------------------------- training and evaluation transforms


def _albumentations() -> ModuleType:
    """albumentations, imported on first use with NO_ALBUMENTATIONS_UPDATE set: otherwise importing it asks PyPI for a
    newer version (a network call, offline in class and in tests); importing eva_utils does neither."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations
    import albumentations.pytorch  # noqa: F401  (ToTensorV2)

    return albumentations


def _pixel_fill(mean: Sequence[float]) -> tuple[float, ...]:
    """The data set mean in 0..255 pixel units: padding and holes filled with it normalise to 0."""
    return tuple(round(255.0 * m) for m in mean)


def _to_tensor(A: ModuleType, mean: Sequence[float], std: Sequence[float]) -> list[Any]:
    """The last steps of every transform: normalise with the data set's statistics, HWC -> CHW float tensor."""
    return [A.Normalize(mean=tuple(mean), std=tuple(std)), A.pytorch.ToTensorV2()]


def train_transforms(*, mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD, size: int = 32,
                     hflip: float = 0.5, affine: float = 0.5, shift: float = 0.0625, scale: float = 0.1,
                     rotate: float = 15.0, pad: int = 4, cutout: float = 0.5, cutout_size: int = 16,
                     cutout_holes: int = 1, seed: int | None = None) -> A.Compose:
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

    A named set of these settings (:data:`AUGMENTATIONS`) is ``train_transforms(**AUGMENTATIONS["page"])``.
    """
    A = _albumentations()
    import cv2  # installed with albumentations (opencv-python-headless)

    fill = _pixel_fill(mean)
    steps: list[A.BasicTransform] = []
    if hflip > 0:
        steps.append(A.HorizontalFlip(p=hflip))
    if affine > 0:
        steps.append(A.Affine(translate_percent=(-shift, shift), scale=(1.0 - scale, 1.0 + scale),
                              rotate=(-rotate, rotate), border_mode=cv2.BORDER_CONSTANT, fill=fill, p=affine))
    if pad > 0:
        steps += [A.PadIfNeeded(size + 2 * pad, size + 2 * pad, border_mode=cv2.BORDER_CONSTANT, fill=fill),
                  A.RandomCrop(size, size)]
    if cutout > 0 and cutout_holes > 0:
        hole = (cutout_size, cutout_size)
        steps.append(A.CoarseDropout(num_holes_range=(cutout_holes, cutout_holes), hole_height_range=hole,
                                     hole_width_range=hole, fill=fill, p=cutout))
    return A.Compose([*steps, *_to_tensor(A, mean, std)], seed=seed)


def test_transforms(*, mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD) -> A.Compose:
    """Evaluation transform: normalise with the data set's statistics, to tensor."""
    A = _albumentations()
    return A.Compose(_to_tensor(A, mean, std))


# ----------------------------------------------------------------------------- inference presets (one image file)


@dataclass(frozen=True)
class Preset:
    """Preprocessing for one kind of model: resize, centre crop, scale to [0, 1], normalise.

    Attributes:
        name: ``"imagenet"``, ``"cifar"`` or a description.
        size: side of the square model input (the crop).
        resize: the shorter side is resized to this before cropping (``>= size``).
        mean: per-channel mean of ``Normalize``.
        std: per-channel std of ``Normalize``.
    """

    name: str
    size: int
    resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, image: Any) -> torch.Tensor:
        """One image (PIL, or an HWC uint8 array such as a CIFAR-10 sample) -> normalised (3, size, size)."""
        from torchvision.transforms import functional as TF  # what torchvision's weights.transforms() runs

        array = np.array(image.convert("RGB") if hasattr(image, "convert") else image)  # a writable copy
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=-1)  # grey -> RGB
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
            raise UserError(f"expected an RGB image (H, W, 3) uint8 or a PIL image, got {array.dtype} {array.shape}")
        x = torch.from_numpy(array).permute(2, 0, 1)  # (3, H, W) uint8
        x = TF.resize(x, [self.resize], antialias=True)  # shorter side -> resize
        x = TF.center_crop(x, [self.size, self.size])  # (3, size, size)
        return TF.normalize(x.float().div(255.0), list(self.mean), list(self.std))

    def to_rgb(self, images: torch.Tensor) -> np.ndarray:
        """Undo the normalisation of (N, 3, H, W) (or one (3, H, W)) tensors -> float (N, H, W, 3) in [0, 1]."""
        return denormalize(images, self.mean, self.std)


def imagenet_preset(size: int = 224, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> Preset:
    """torchvision's evaluation preprocessing for ImageNet models: resize 256, crop 224 (scaled with ``size``)."""
    return _checked(Preset("imagenet", int(size), round(int(size) * 256 / 224), tuple(mean), tuple(std)))


def cifar_preset(size: int = 32, mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD) -> Preset:
    """CIFAR-10 preprocessing: the whole image squeezed to ``size`` (no crop margin), CIFAR-10 mean/std."""
    return _checked(Preset("cifar", int(size), int(size), tuple(mean), tuple(std)))


def _checked(preset: Preset) -> Preset:
    if preset.size < 8:
        raise UserError(f"the input size must be at least 8 pixels, got {preset.size}")
    for name in ("mean", "std"):
        values = getattr(preset, name)
        if len(values) != 3:
            raise UserError(f"{name} needs 3 values (R G B), got {len(values)}: {values}")
    if not all(s > 0 for s in preset.std):
        raise UserError(f"std values must be positive, got {preset.std}")
    return preset


def get_preset(name: str | Preset, size: int | None = None, mean: Sequence[float] | None = None,
               std: Sequence[float] | None = None) -> Preset:
    """A preset by name (``"imagenet"`` or ``"cifar"``) or an existing one, with any of its settings replaced.

    Args:
        name: a preset name, or a :class:`Preset` to adjust.
        size: the model's input side; the resize step scales with it (ImageNet: 256/224 of it).
        mean: per-channel mean (3 values) instead of the preset's.
        std: per-channel std (3 values) instead of the preset's.
    """
    if isinstance(name, Preset):
        preset = name
        if size is not None:
            preset = dataclasses.replace(preset, size=int(size), resize=round(int(size) * preset.resize / preset.size))
    else:
        factories = {"imagenet": imagenet_preset, "cifar": cifar_preset}
        if str(name).lower() not in factories:
            raise unknown_name("preset", str(name), PRESETS)
        preset = factories[str(name).lower()](**({} if size is None else {"size": size}))
    if mean is not None:
        preset = dataclasses.replace(preset, mean=tuple(float(m) for m in mean))
    if std is not None:
        preset = dataclasses.replace(preset, std=tuple(float(s) for s in std))
    return _checked(preset)
