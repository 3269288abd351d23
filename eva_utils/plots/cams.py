"""Grad-CAM figures: a heatmap over an image (``overlay``), and the one image-by-maps grid (``show_cams``) that
layers, methods, classes and a multi-exit model's exits draw through.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure

from eva_utils.core.errors import UserError, unknown_name
from eva_utils.data.cifar10 import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, denormalize
from eva_utils.evaluation.metrics import check_exit

if TYPE_CHECKING:  # for annotations only
    from eva_utils.explain.multiexit import ExitPredictions

__all__ = ["overlay", "show_cams", "show_exit_cams", "show_layer_cams", "size_label"]


def _numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _rgb_problem(img: np.ndarray) -> str | None:
    """What keeps ``img`` from being float RGB in [0, 1], channels last; None when it is."""
    if img.dtype == np.uint8:
        return "is uint8 (0..255): use image / 255.0"
    if img.ndim in (3, 4) and img.shape[-1] != 3 and img.shape[-3] == 3:
        return f"has shape {img.shape}, channels first: use eva_utils.data.denormalize(images) (channels last)"
    if img.ndim not in (3, 4) or img.shape[-1] != 3:
        return f"must be (H, W, 3) or (N, H, W, 3) RGB, got shape {img.shape}"
    if img.size and float(img.max()) > 1.0 + 1e-3:
        return f"reaches {float(img.max()):.1f}, like 0..255 pixels: use image / 255.0"
    if img.size and float(img.min()) < -1e-3:
        return f"goes down to {float(img.min()):.2f}, like a normalised image: use eva_utils.data.denormalize(images)"
    return None


def overlay(image: np.ndarray | torch.Tensor, cam: np.ndarray | torch.Tensor, alpha: float = 0.5,
            colormap: str = "jet") -> np.ndarray:
    """Blend a heatmap over an image for ``imshow``, in RGB order (pytorch-grad-cam's default is BGR).

    Args:
        image: float RGB in [0, 1], (H, W, 3) or a batch (N, H, W, 3), e.g. from ``eva_utils.data.denormalize``; a
            (H, W) grey image is repeated to RGB.
        cam: (H, W) or (N, H, W) in [0, 1], e.g. one entry of :func:`~eva_utils.cam.layer_cams`.
        alpha: weight of the heatmap in [0, 1]: ``(1 - alpha) * image + alpha * colormap(cam)``.
        colormap: a matplotlib colormap name ("jet": blue = 0, red = 1).

    Returns:
        float32 (H, W, 3) or (N, H, W, 3) in [0, 1].

    Raises:
        UserError: the image is not float RGB in [0, 1] (says which way it is off and the fix), or the map does not
            match it or leaves [0, 1]; an alpha outside [0, 1]; an unknown colormap.
    """
    img, heat = _numpy(image), _numpy(cam)
    if img.dtype != np.uint8 and img.ndim == heat.ndim:  # grey (H, W) / (N, H, W)
        img = np.repeat(img[..., None], 3, axis=-1)
    problem = _rgb_problem(img)
    if problem:
        raise UserError(f"overlay needs float RGB in [0, 1], channels last: the image {problem}")
    if img.shape[:-1] != heat.shape or (heat.size and not (-1e-3 <= heat.min() and heat.max() <= 1 + 1e-3)):
        span = f" spanning [{heat.min():.3g}, {heat.max():.3g}]" if heat.size else ""
        raise UserError(f"overlay needs a map in [0, 1] of the image's size {img.shape[:-1]}, got {heat.shape}{span}: "
                        "layer_cams returns such maps (N, H, W); pass cams[name] for the batch or cams[name][i] for one "
                        "image")
    if not 0.0 <= float(alpha) <= 1.0:
        raise UserError(f"alpha must be in [0, 1], got {alpha}")
    if colormap not in matplotlib.colormaps:
        raise unknown_name("colormap", colormap, list(matplotlib.colormaps))
    colours = matplotlib.colormaps[colormap](np.clip(heat, 0.0, 1.0))[..., :3].astype(np.float32)  # (..., H, W, 3)
    return np.clip((1.0 - alpha) * img.astype(np.float32) + alpha * colours, 0.0, 1.0).astype(np.float32)


def size_label(layer: str, size: tuple[int, int] | None) -> str:
    """A layer's name with its feature map's size, e.g. ``layer4\\n4x4 map (coarse)`` (see ``cam.map_sizes``).

    Maps under 5 pixels wide are called coarse: their CAM can only say which part of a 2x2 or 4x4 grid mattered.
    """
    if size is None:
        return layer
    h, w = size
    return f"{layer}\n{h}x{w} map{' (coarse)' if min(h, w) < 5 else ''}"


def show_cams(images: np.ndarray | torch.Tensor, cams: Mapping[Any, np.ndarray] | Sequence[np.ndarray],
              titles: Sequence[Sequence[str]] | None = None, row_labels: Sequence[str] | None = None,
              title: str | None = None, alpha: float = 0.5, *, title_colors: Sequence[Sequence[str]] | None = None,
              cell: tuple[float, float] = (2.3, 2.5), interpolation: str = "bilinear",
              sizes: Mapping[str, tuple[int, int]] | None = None) -> Figure:
    """Rows = images; columns = the image, then one CAM overlay per entry of ``cams``.

    The one image-by-maps grid of the package: layers (``layer_cams`` output), methods (``{"gradcam": ..., "layercam":
    ...}``), target classes (a list of maps, one per class) and a multi-exit model's exits all draw through it.

    Args:
        images: float RGB in [0, 1], (N, H, W, 3), e.g. ``eva_utils.data.denormalize(x, mean, std)``.
        cams: column name -> (N, H, W) maps in [0, 1]; or a sequence of such maps (no column names).
        titles: optional (N, K) panel titles, e.g. ``"cat\\np=0.83"``; the column names then head the columns.
        row_labels: optional text left of each row (the image's name, its true class, ...).
        title: the figure's title.
        alpha: heatmap opacity.
        title_colors: optional (N, K) colours of the panel titles (green for right, red for wrong, ...).
        cell: width and height of one panel, in inches.
        interpolation: how the image itself is drawn ("nearest" shows a 32x32 image's real pixels).
        sizes: column name -> (h, w) of the layer's own feature map (``cam.map_sizes``), written under the name:
            every map is drawn at the image's size, so only this says how coarse it really is.

    Returns:
        A ``matplotlib.figure.Figure`` (built without pyplot).
    """
    rgb = _numpy(images)
    if rgb.ndim == 3:
        rgb = rgb[None]  # one image
    names = [str(name) for name in cams] if isinstance(cams, Mapping) else []
    maps = [_numpy(m) for m in (cams.values() if isinstance(cams, Mapping) else cams)]
    maps = [m[None] if m.ndim == 2 else m for m in maps]
    n = len(rgb)
    if not maps:
        raise UserError("cams is empty: pass at least one (N, H, W) map")
    for name, m in zip(names or [""] * len(maps), maps, strict=True):
        if len(m) != n:
            raise UserError(f"got {n} images but a CAM entry {name} holds {len(m)} maps; pass one map per image")
    for what, grid in (("titles", titles), ("title_colors", title_colors)):
        if grid is not None and (len(grid) != n or any(len(row) != len(maps) for row in grid)):
            raise UserError(f"{what} must be {n} rows of {len(maps)} panel entries")
    if row_labels is not None and len(row_labels) != n:
        raise UserError(f"got {len(row_labels)} row labels for {n} images")
    ncols = 1 + len(maps)
    fig = Figure(figsize=(cell[0] * ncols + 0.6, cell[1] * n + (0.6 if title else 0.1)), layout="constrained")
    axes = fig.subplots(n, ncols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for col, name in enumerate(["image", *names]):
        name = size_label(name, sizes.get(name)) if sizes and col else name
        if titles is None:
            axes[0, col].set_title(name, fontsize=9, fontweight="bold")
        else:  # panel titles below: the column's name goes above them
            axes[0, col].annotate(name, (0.5, 1.25), xycoords="axes fraction", ha="center", va="bottom",
                                  fontsize=9, fontweight="bold")
    for i in range(n):
        axes[i, 0].imshow(rgb[i], interpolation=interpolation)
        if row_labels is not None:
            axes[i, 0].set_ylabel(row_labels[i], fontsize=8)
        for k, m in enumerate(maps):
            axes[i, k + 1].imshow(overlay(rgb[i], m[i], alpha=alpha), interpolation="bilinear")
            if not np.any(m[i] > 0):  # nothing but blue: say why, or it reads as a broken figure
                axes[i, k + 1].text(0.5, 0.5, "all zero:\nno positive\nevidence here", transform=axes[i, k + 1].transAxes,
                                    ha="center", va="center", fontsize=7, color="white")
            if titles is not None:
                colour = {"color": title_colors[i][k]} if title_colors is not None else {}
                axes[i, k + 1].set_title(titles[i][k], fontsize=8, pad=2, **colour)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def show_layer_cams(images: torch.Tensor, cams: Mapping[str, np.ndarray], labels: Sequence[int], preds: Sequence[int],
                    targets: Sequence[int] | None = None, classes: Sequence[str] = CIFAR10_CLASSES,
                    mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD, alpha: float = 0.5,
                    sizes: Mapping[str, tuple[int, int]] | None = None) -> Figure:
    """Rows = images, columns = the image then one Grad-CAM overlay per layer.

    Args:
        images: (N, C, H, W) normalised images.
        cams: layer name -> (N, H, W) maps in [0, 1], e.g. from :func:`~eva_utils.cam.layer_cams`.
        labels: (N,) true classes.
        preds: (N,) predicted classes.
        targets: (N,) classes the CAMs explain (default: the predictions).
        classes: class names.
        mean: normalisation mean of ``images``.
        std: normalisation std of ``images``.
        alpha: heatmap opacity.
        sizes: layer -> (h, w) of its feature map (``cam.map_sizes(model, layers, 32)``), shown under each layer.
    """
    n = len(images)
    targets = list(preds) if targets is None else list(targets)
    if not (len(labels) == len(preds) == len(targets) == n):
        raise UserError(f"got {n} images but {len(labels)} labels, {len(preds)} preds and {len(targets)} targets")
    rows = [f"true {classes[labels[i]]}\npred {classes[preds[i]]} ({'ok' if labels[i] == preds[i] else 'wrong'})"
            f"\nCAM {classes[targets[i]]}" for i in range(n)]
    return show_cams(denormalize(images, mean, std), cams, row_labels=rows, alpha=alpha, cell=(1.9, 2.0),
                     interpolation="nearest", title="Grad-CAM per layer (red = most important for the CAM class)",
                     sizes=sizes)


def _unnormalised_rgb(images: torch.Tensor | np.ndarray, mean: Sequence[float] | None,
                      std: Sequence[float] | None) -> np.ndarray:
    """(N, C, H, W) -> (N, H, W, 3) float RGB in [0, 1]; images are ToTensor() output unless mean/std are given."""
    if mean is not None or std is not None:
        return denormalize(images, mean or (0.0, 0.0, 0.0), std or (1.0, 1.0, 1.0))
    x = _numpy(images).astype(np.float32)
    if x.ndim != 4 or x.shape[1] != 3:
        raise UserError(f"images must be (N, 3, H, W), got shape {x.shape}")
    if x.min() < -1e-3 or x.max() > 1 + 1e-3:
        raise UserError("images are not in [0, 1]: they look normalised; pass mean= and std= to undo it")
    return np.clip(np.moveaxis(x, 1, -1), 0.0, 1.0)


def show_exit_cams(images: torch.Tensor | np.ndarray, cams: Mapping[int, np.ndarray], pred: ExitPredictions,
                   classes: Sequence[str] = CIFAR10_CLASSES, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None, alpha: float = 0.5) -> Figure:
    """Rows = images, columns = the image then one Grad-CAM overlay per exit (the MSD-Net blog's grid).

    Each overlay is titled with that exit's prediction, green with a tick when right, red with a cross when wrong; each
    row is labelled with the true class, the number of exits that get the image right and its data set index.

    Args:
        images: (N, 3, H, W), ``ToTensor()`` images in [0, 1] unless ``mean``/``std`` are given.
        cams: exit (1-based) -> (N, H, W) maps, e.g. from :func:`~eva_utils.multiexit.exit_cams`.
        pred: every exit's predictions for exactly these images, e.g. ``pred.subset(rows)``.
        classes: class names.
        mean: normalisation mean of ``images`` (``None``: not normalised).
        std: normalisation std of ``images``.
        alpha: heatmap opacity (red = most important for the explained class).
    """
    preds, labels = np.asarray(pred.preds), np.asarray(pred.labels)
    if preds.ndim != 2 or preds.shape[1] != len(labels) or len(images) != len(labels):
        raise UserError(f"got {len(images)} images but predictions {preds.shape} for {len(labels)}: "
                        "pass pred.subset(rows) for the same rows as the images")
    num_exits, n = preds.shape
    for k in cams:
        check_exit(k, num_exits)
    right = preds == labels[None]  # (E, N)
    titles = [[f"{classes[preds[k - 1, i]]} {'✓' if right[k - 1, i] else '✗'}" for k in cams] for i in range(n)]
    colours = [["tab:green" if right[k - 1, i] else "tab:red" for k in cams] for i in range(n)]
    rows = [f"true {classes[labels[i]]}\n{int(right[:, i].sum())}/{num_exits} exits right\nimage {pred.indices[i]}"
            for i in range(n)]
    return show_cams(_unnormalised_rgb(images, mean, std), {f"exit {k}": m for k, m in cams.items()}, titles=titles,
                     title_colors=colours, row_labels=rows, alpha=alpha, cell=(1.75, 1.95), interpolation="nearest",
                     title="Grad-CAM of each exit for its own prediction (red = most important)")
