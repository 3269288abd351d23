"""Image files as model inputs: finding and reading them (the presets that make tensors of them are in
:mod:`eva_utils.data.presets`).

``find_images(paths)`` accepts a root folder above class folders (``data/cat/1.jpg``, as torchvision's ImageFolder
expects), a plain folder of images, or single files; ``read_image`` returns an RGB PIL image whatever the file held.

Example::

    from eva_utils import inputs
    files = inputs.find_images("data")                        # [ImageFile("data/cat/1.jpg", "cat/1.jpg"), ...]
    images = [inputs.read_image(f.path) for f in files]       # RGB PIL images
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eva_utils.core.errors import DataNotFoundError, UserError, first_line

__all__ = ["IMAGE_EXTENSIONS", "MAX_PIXELS", "MIN_SIDE", "ImageFile", "ImageSizeError", "UnreadableImageError",
           "check_image_size", "find_images", "read_image"]

# Files with these suffixes are taken from folders; others (notes, .DS_Store) are ignored there.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
MIN_SIDE = 8  # pixels: below this an image holds nothing to explain
MAX_PIXELS = 40_000_000  # 40 megapixels: a phone photo passes, a 10,000 x 10,000 image does not


class UnreadableImageError(UserError):
    """A file that is not an image PIL can decode (corrupt, truncated, or another kind of file)."""


class ImageSizeError(UnreadableImageError):
    """An image smaller than :data:`MIN_SIDE` on a side or larger than :data:`MAX_PIXELS`: the one size rule."""


def check_image_size(width: int, height: int, name: str = "the image") -> None:
    """The size rule of every entry point (``cam``, ``msd``, the app, ``read_image``), checked before decoding.

    Raises:
        ImageSizeError: a side under :data:`MIN_SIDE` pixels (there is nothing to explain in it) or more than
            :data:`MAX_PIXELS` in all (decoding it could take gigabytes); the message says which and what to do.
    """
    if min(width, height) < MIN_SIDE:
        raise ImageSizeError(f"{name} is {width}x{height} pixels: at least {MIN_SIDE}x{MIN_SIDE} is needed to say "
                             "anything about it")
    if width * height > MAX_PIXELS:
        raise ImageSizeError(f"{name} is {width}x{height} pixels, more than {MAX_PIXELS // 1_000_000} megapixels: "
                             "resize it first (the model sees 32x32 or 224x224 anyway)")


# ----------------------------------------------------------------------------- image files


@dataclass(frozen=True)
class ImageFile:
    """One image found on disk.

    Attributes:
        path: where it is.
        name: how to show it: the path relative to the folder it was found in (``cat/1.jpg``), or the file's name.
        given: True for a file named directly (it must be readable), False for one found in a folder.
    """

    path: Path
    name: str
    given: bool = False


def read_image(path: str | os.PathLike) -> Any:
    """Open an image file as an RGB PIL image, fully decoded.

    Grayscale and palette images are converted to RGB; transparent ones (RGBA, LA, palette with transparency) are
    composited on white; EXIF orientation is applied. High-bit-depth grayscale is scaled to 8 bits by its type's full
    range, never clipped: 16-bit (also held in 32-bit integers) by 1/257, floats in 0..1 by 255 (0..255 as they are).

    Raises:
        UnreadableImageError: not an image PIL can decode, or high-bit-depth values with no 8-bit reading (not finite,
            negative, or beyond 16 bits).
        ImageSizeError: outside the size rule (:func:`check_image_size`), read from the header before decoding.
    """
    import warnings

    from PIL import Image, ImageOps

    path = Path(path)
    try:
        with warnings.catch_warnings():  # PIL's decompression-bomb warning: the size rule is checked right here
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened:
            check_image_size(*opened.size, name=str(path))
            image = ImageOps.exif_transpose(opened)
            image.load()
            if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
                image = _to_8_bits(image, path)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            return image.convert("RGB")
    except UnreadableImageError:
        raise
    except Image.DecompressionBombError as exc:  # PIL's own, far higher limit: say ours, and the image's size
        size = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{int(size.group(1)) / 1e6:,.0f} megapixels, " if size else ""
        raise ImageSizeError(f"{path} is {pixels}more than {MAX_PIXELS // 1_000_000} megapixels: resize it first "
                             "(the model sees 32x32 or 224x224 anyway)") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise UnreadableImageError(f"{path} is not an image PIL can read ({first_line(exc)})") from exc


def _to_8_bits(image: Any, path: Path) -> Any:
    """A 16-bit, 32-bit integer or float grayscale PIL image as mode "L", scaled by its type's range."""
    import numpy as np
    from PIL import Image

    values = np.asarray(image, dtype=np.float64)
    if not np.isfinite(values).all():
        raise UnreadableImageError(f"{path} holds pixel values that are not finite (NaN or infinite)")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if low < 0 or high > 65535:
        raise UnreadableImageError(f"{path} holds {image.mode} pixel values from {low:g} to {high:g}, outside the "
                                   f"0..65535 of 16 bits; save it as an 8- or 16-bit image")
    if image.mode.startswith("I"):
        scale = 1 / 257  # 16 bits (also as 32-bit integers, which is how 16-bit images often arrive)
    else:  # floats: 0..1 as most tools write them, else 0..255, else 16-bit values
        scale = 255 if high <= 1 else 1 if high <= 255 else 1 / 257
    return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8))  # mode "L"


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

    Files named directly are checked now and must be readable images; files found in folders are only filtered by
    suffix (:data:`IMAGE_EXTENSIONS`), and a corrupt one is the caller's to skip when :func:`read_image` fails.

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
        raise UserError(f"no images in {where} (looked for {', '.join(IMAGE_EXTENSIONS[:5])}, ... files in it and its "
                        "subfolders)")
    return found
