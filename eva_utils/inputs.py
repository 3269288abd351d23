"""Moved to :mod:`eva_utils.data.images` (image files) and :mod:`eva_utils.data.presets` (presets); this path keeps working."""

from eva_utils.data.images import IMAGE_EXTENSIONS, ImageFile, UnreadableImageError, find_images, read_image
from eva_utils.data.presets import IMAGENET_MEAN, IMAGENET_STD, PRESETS, Preset, cifar_preset, get_preset, imagenet_preset

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_EXTENSIONS", "PRESETS", "ImageFile", "Preset", "UnreadableImageError",
    "cifar_preset", "find_images", "get_preset", "imagenet_preset", "read_image",
]
