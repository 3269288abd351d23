"""Images from disk as model inputs: finding and reading image files, and preprocessing presets.

``find_images(paths)`` accepts the layouts students have: a root folder one level above class
folders (``data/cat/1.jpg``, as torchvision's ImageFolder and the original GradCam tool expect),
a plain folder of images, or single files. ``read_image`` returns an RGB PIL image whatever the
file held (grayscale, palette, RGBA composited on white, EXIF-rotated photos).

A :class:`Preset` turns one image into the normalised tensor a model expects: resize the
shorter side, centre-crop a square, scale to [0, 1], normalise. Two presets:

* ``imagenet_preset()``: resize 256, crop 224, ImageNet mean/std (torchvision's pretrained models);
* ``cifar_preset()``: 32x32, CIFAR-10 mean/std (eva_utils models and checkpoints).

Example::

    from eva_utils import inputs
    files = inputs.find_images("data")                        # [ImageFile("data/cat/1.jpg", "cat/1.jpg"), ...]
    preset = inputs.imagenet_preset()
    x = torch.stack([preset(inputs.read_image(f.path)) for f in files])   # (N, 3, 224, 224)
    rgb = preset.to_rgb(x)                                      # (N, 224, 224, 3) in [0, 1], for plots
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eva_utils.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD, denormalize
from eva_utils.core.errors import DataNotFoundError, UserError, first_line, unknown_name

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "PRESETS",
    "ImageFile",
    "Preset",
    "UnreadableImageError",
    "cifar_preset",
    "find_images",
    "get_preset",
    "imagenet_preset",
    "read_image",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# Files with these suffixes are taken from folders; others (notes, .DS_Store) are ignored there.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
PRESETS = ("imagenet", "cifar")


class UnreadableImageError(UserError):
    """A file that is not an image PIL can decode (corrupt, truncated, or another kind of file)."""


# ----------------------------------------------------------------------------- image files


@dataclass(frozen=True)
class ImageFile:
    """One image found on disk.

    Attributes:
        path: where it is.
        name: how to show it: the path relative to the folder it was found in (``cat/1.jpg``),
            or the file name for a file given directly.
        given: True for a file named directly (it must be readable), False for one found in a folder.
    """

    path: Path
    name: str
    given: bool = False


def read_image(path: str | os.PathLike) -> Any:
    """Open an image file as an RGB PIL image, fully decoded.

    Grayscale and palette images are converted to RGB; transparent images (RGBA, LA, palette with
    transparency) are composited on white; EXIF orientation is applied.

    Raises:
        UnreadableImageError: not an image PIL can decode (the message says why).
    """
    from PIL import Image, ImageOps

    path = Path(path)
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = first_line(exc)
        raise UnreadableImageError(f"{path} is not an image PIL can read ({reason})") from exc


def _images_in(folder: Path) -> list[ImageFile]:
    """Image files in ``folder`` and its subfolders (class folders), sorted, hidden files skipped."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                path = Path(root) / name
                found.append(ImageFile(path, path.relative_to(folder).as_posix()))
    return found


def find_images(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[ImageFile]:
    """The images at ``paths``: folders (searched with their subfolders) and single files.

    Files named directly are checked now and must be readable images; files found in folders
    are only filtered by suffix (see :data:`IMAGE_EXTENSIONS`), and a corrupt one is the
    caller's to skip when :func:`read_image` fails.

    Args:
        paths: one path or several: a root folder above class folders, a folder of images, or files.

    Returns:
        The images in the order given, each folder's images sorted by path.

    Raises:
        DataNotFoundError: a path that does not exist.
        UnreadableImageError: a file named directly that is not an image.
        UserError: no image at all.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[ImageFile] = []
    for given in map(Path, paths):
        if given.is_dir():
            found.extend(_images_in(given))
        elif given.is_file():
            read_image(given)  # fail now, before any work, for a file the user named
            found.append(ImageFile(given, given.name, given=True))
        else:
            raise DataNotFoundError(f"{given} does not exist: give a folder of images (or of class folders) or image files")
    if not found:
        where = ", ".join(str(p) for p in paths)
        raise UserError(
            f"no images in {where} (looked for {', '.join(IMAGE_EXTENSIONS[:5])}, ... files in it and its subfolders)"
        )
    return found


# ----------------------------------------------------------------------------- preprocessing


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


def imagenet_preset(
    size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Preset:
    """torchvision's evaluation preprocessing for ImageNet models: resize 256, crop 224 (scaled with ``size``)."""
    return _checked(Preset("imagenet", int(size), round(int(size) * 256 / 224), tuple(mean), tuple(std)))


def cifar_preset(
    size: int = 32,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
) -> Preset:
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


def get_preset(
    name: str | Preset,
    size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Preset:
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
