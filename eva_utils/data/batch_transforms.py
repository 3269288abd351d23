"""The train preset as batched tensor operations: every image of a uint8 batch augmented at once, on any device.

:class:`BatchTransform` takes the keywords of :func:`~eva_utils.data.presets.train_transforms` and reproduces the
distribution of that albumentations preset, step by step and in its order, with one set of random parameters per image:

* horizontal flip with probability ``hflip``;
* shift-scale-rotate with probability ``affine`` (albumentations' ``Affine``: rotation uniform in +-``rotate`` degrees,
  x and y scales apart, uniform in 1 +- ``scale``, a shift of ``int(u * side)`` pixels for ``u`` uniform in +-``shift``,
  about the centre), bilinear, the border filled with the mean, rounded to whole pixels as ``cv2.warpAffine`` does;
* ``pad`` pixels of the mean on each side, then a random crop of ``size`` (offsets uniform in 0..2 * pad);
* with probability ``cutout``, ``cutout_holes`` square holes of ``cutout_size`` pixels filled with the mean;
* normalisation with ``mean`` and ``std``.

The parameters are drawn on the CPU (:meth:`BatchTransform.draw`), so a seed gives the same augmentations on the CPU
and on a GPU; the pixels are computed where the images are. ``tests/data/test_batch_transforms.py`` checks them
against the albumentations preset and ``cv2.warpAffine``.

Example::

    from eva_utils.data import BatchTransform
    from eva_utils.data.presets import AUGMENTATIONS
    transform = BatchTransform(**AUGMENTATIONS["page"])
    batch = transform.apply(images_uint8, torch.Generator().manual_seed(0))  # (N, 3, 32, 32) uint8 -> float, normalised
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from eva_utils.core.errors import UserError
from eva_utils.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD
from eva_utils.data.presets import _pixel_fill

__all__ = ["NO_AUGMENTATION", "BatchTransform", "Draws", "affine_theta"]

#: The settings that leave only the normalisation (``TrainConfig(augment=False)``).
NO_AUGMENTATION: dict[str, float] = {"hflip": 0.0, "affine": 0.0, "pad": 0, "cutout": 0.0}


class Draws(NamedTuple):
    """The random parameters of one batch of ``N`` images (``M`` of them warped, ``K`` holes each)."""

    mirror: torch.Tensor  # (N,) bool: flipped by the crop (the flipped images that are not warped)
    affine_index: torch.Tensor  # (M,) int64: the images that are warped
    theta: torch.Tensor  # (M, 2, 3) float32: F.affine_grid's matrices of those images (a flip included)
    crop: torch.Tensor  # (N, 2) int64: top and left offset of the crop in the padded image
    cutout: torch.Tensor  # (N,) bool
    holes: torch.Tensor  # (N, K, 2) int64: top and left of each hole

    def to(self, device: torch.device | str) -> Draws:
        """The same draws on ``device``."""
        return Draws(*(t.to(device, non_blocking=True) for t in self))


def affine_theta(angle: torch.Tensor, scale_x: torch.Tensor, scale_y: torch.Tensor, shift_x: torch.Tensor,
                 shift_y: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid`` matrices (``align_corners=False``) of albumentations' ``Affine`` on ``height x width`` images.

    albumentations maps a source pixel ``p`` (pixel centres, origin at the top-left pixel) to
    ``c + t + R(angle) S (p - c)`` with ``c`` the image centre, ``S = diag(scale_x, scale_y)`` and
    ``R = [[cos, sin], [-sin, cos]]``; ``affine_grid`` wants the inverse, in coordinates scaled to -1..1.

    Args:
        angle: (M,) degrees.
        scale_x, scale_y: (M,) horizontal and vertical scales.
        shift_x, shift_y: (M,) pixels to the right and down.
        height, width: the image size in pixels.

    Returns:
        (M, 2, 3) float32.
    """
    rad = torch.deg2rad(angle.double())
    cos, sin = torch.cos(rad), torch.sin(rad)
    sx, sy, tx, ty = scale_x.double(), scale_y.double(), shift_x.double(), shift_y.double()
    hx, hy = width / 2, height / 2  # pixels per unit of the normalised coordinates
    inverse = torch.stack([torch.stack([cos / sx, -sin / sx], -1), torch.stack([sin / sy, cos / sy], -1)], -2)  # (M, 2, 2)
    theta = torch.empty(len(angle), 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 1] = inverse[:, 0, 0], inverse[:, 0, 1] * hy / hx
    theta[:, 1, 0], theta[:, 1, 1] = inverse[:, 1, 0] * hx / hy, inverse[:, 1, 1]
    theta[:, 0, 2] = -(inverse[:, 0, 0] * tx + inverse[:, 0, 1] * ty) / hx
    theta[:, 1, 2] = -(inverse[:, 1, 0] * tx + inverse[:, 1, 1] * ty) / hy
    return theta.float()


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


@dataclass(frozen=True)
class BatchTransform:
    """The train preset on batches of tensors; its attributes are :func:`~eva_utils.data.presets.train_transforms`'
    keywords but ``seed`` (a loader seeds the batch's draws), with their defaults and meanings (``mean`` also fills
    the affine warp's border)."""

    mean: Sequence[float] = CIFAR10_MEAN
    std: Sequence[float] = CIFAR10_STD
    size: int = 32
    hflip: float = 0.5
    affine: float = 0.5
    shift: float = 0.0625
    scale: float = 0.1
    rotate: float = 15.0
    pad: int = 4
    cutout: float = 0.5
    cutout_size: int = 16
    cutout_holes: int = 1

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3 or not all(s > 0 for s in self.std):
            raise UserError(f"mean and std need 3 values (R G B), std positive; got {self.mean}, {self.std}")
        for name in ("hflip", "affine", "cutout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"{name} is a probability, from 0 to 1; got {getattr(self, name)}", param=name)
        if self.cutout > 0 and self.cutout_holes > 0 and not 0 < self.cutout_size <= self.size:
            raise UserError(f"cutout_size must be from 1 to the image side ({self.size}), got {self.cutout_size}",
                            param="cutout_size")

    def draw(self, n: int, generator: torch.Generator) -> Draws:
        """The random parameters of ``n`` images, drawn on the CPU from ``generator``."""
        side = self.size
        flip = torch.rand(n, generator=generator) < self.hflip
        warped = torch.rand(n, generator=generator) < self.affine
        angle = _uniform(n, -self.rotate, self.rotate, generator)
        scale_x, scale_y = (_uniform(n, 1.0 - self.scale, 1.0 + self.scale, generator) for _ in range(2))
        shift_x, shift_y = ((_uniform(n, -self.shift, self.shift, generator) * side).trunc() for _ in range(2))  # int()
        crop = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=generator)
        cutout = torch.rand(n, generator=generator) < self.cutout
        holes = torch.randint(0, side - min(self.cutout_size, side) + 1, (n, max(self.cutout_holes, 0), 2),
                              generator=generator)
        index = warped.nonzero().flatten()
        theta = affine_theta(angle[index], scale_x[index], scale_y[index], shift_x[index], shift_y[index], side, side)
        theta[flip[index], 0] *= -1  # a flip before the warp: the warp samples the mirrored image
        return Draws(flip & ~warped, index, theta, crop, cutout, holes)

    def __call__(self, images: torch.Tensor, draws: Draws) -> torch.Tensor:
        """Augment and normalise ``images`` (N, 3, size, size) uint8 with ``draws`` (on the images' device).

        Returns:
            (N, 3, size, size) float32, normalised.
        """
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1:] != (3, self.size, self.size):
            raise UserError(f"expected (N, 3, {self.size}, {self.size}) uint8 images, got {images.dtype} "
                            f"{tuple(images.shape)}")
        fill = torch.tensor(_pixel_fill(self.mean), dtype=torch.uint8, device=images.device).view(1, 3, 1, 1)
        x = images
        if draws.affine_index.numel():
            x = images.clone()
            x[draws.affine_index] = _warp(images[draws.affine_index].float(), draws.theta, fill.float())
        x = _flip_pad_and_crop(x, draws.mirror, draws.crop, self.pad, fill)
        x = _cutout(x, draws.cutout, draws.holes, self.cutout_size, fill)
        scale = 1.0 / (255.0 * torch.tensor(self.std, dtype=torch.float32, device=x.device))
        shift = torch.tensor(self.mean, dtype=torch.float32, device=x.device) / torch.tensor(self.std, device=x.device)
        return x.float().mul_(scale.view(1, 3, 1, 1)).sub_(shift.view(1, 3, 1, 1))  # (x / 255 - mean) / std

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Draw parameters from ``generator`` (a CPU one) and augment ``images`` (N, 3, size, size) uint8 with them."""
        return self(images, self.draw(len(images), generator).to(images.device))


def _warp(x: torch.Tensor, theta: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """(M, 3, H, W) pixel values warped by ``theta`` (M, 2, 3): bilinear, the border ``fill`` (1, 3, 1, 1), rounded
    to uint8 as ``cv2.warpAffine`` on uint8 images is."""
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)  # (M, H, W, 2)
    out = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill
    return out.round_().clamp_(0.0, 255.0).to(torch.uint8)


def _flip_pad_and_crop(x: torch.Tensor, mirror: torch.Tensor, crop: torch.Tensor, pad: int,
                       fill: torch.Tensor) -> torch.Tensor:
    """Pad ``pad`` pixels of ``fill`` (1, 3, 1, 1), crop at ``crop`` (N, 2) (top, left) and flip where ``mirror`` (N,),
    in one gather: flipping first and then padding evenly and cropping is flipping the padded image's columns."""
    n, c, h, w = x.shape
    if pad > 0:
        padded = fill.expand(n, c, h + 2 * pad, w + 2 * pad).clone()
        padded[:, :, pad:pad + h, pad:pad + w] = x
    else:
        padded, crop = x, torch.zeros_like(crop)
    width = w + 2 * pad
    rows = crop[:, :1] + torch.arange(h, device=x.device)  # (N, H): rows of the padded image
    cols = crop[:, 1:] + torch.arange(w, device=x.device)  # (N, W)
    cols = torch.where(mirror[:, None], width - 1 - cols, cols)
    index = (rows[:, :, None] * width + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return padded.flatten(2).gather(2, index).view(n, c, h, w)


def _cutout(x: torch.Tensor, on: torch.Tensor, holes: torch.Tensor, side: int, fill: torch.Tensor) -> torch.Tensor:
    """``holes`` (N, K, 2) (top, left) of ``side`` pixels filled with ``fill`` in the images where ``on`` (N,)."""
    if holes.shape[1] == 0:
        return x
    h, w = x.shape[-2:]
    rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    top, left = holes[..., :1], holes[..., 1:]  # (N, K, 1)
    in_rows = (rows >= top) & (rows < top + side)  # (N, K, H)
    in_cols = (cols >= left) & (cols < left + side)  # (N, K, W)
    mask = (in_rows[:, :, :, None] & in_cols[:, :, None, :]).any(1) & on[:, None, None]  # (N, H, W)
    return torch.where(mask[:, None], fill, x)

