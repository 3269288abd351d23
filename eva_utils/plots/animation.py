"""Maps over training epochs: the grid of each image's map after each epoch, and the frames of its GIF."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from eva_utils.core.errors import UserError
from eva_utils.core.files import atomic_write
from eva_utils.data.cifar10 import CIFAR10_CLASSES
from eva_utils.plots.cams import _numpy, show_cams, size_label

__all__ = ["cam_evolution_frames", "save_animation", "show_cam_evolution"]


def _checked_rows(images: np.ndarray | torch.Tensor, evolution: Mapping[str, np.ndarray], epochs: Sequence[int],
                  labels: Sequence[int] | None, classes: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """The images as an array and each one's row name, once ``evolution`` holds a map per epoch and image."""
    rgb = _numpy(images)
    if not evolution:
        raise UserError("evolution is empty: pass CamTracker.evolution() (layer -> (E, N, H, W))")
    for layer, maps in evolution.items():
        if maps.ndim != 4 or maps.shape[0] != len(epochs) or maps.shape[1] != len(rgb):
            raise UserError(f"{layer}'s maps have shape {maps.shape}; expected ({len(epochs)} epochs, {len(rgb)} images, H, W)")
    return rgb, [f"true {classes[int(labels[i])]}" if labels is not None else f"image {i}" for i in range(len(rgb))]


def show_cam_evolution(images: np.ndarray | torch.Tensor, evolution: Mapping[str, np.ndarray], epochs: Sequence[int],
                       labels: Sequence[int] | None = None, classes: Sequence[str] = CIFAR10_CLASSES,
                       sizes: Mapping[str, tuple[int, int]] | None = None, alpha: float = 0.5) -> Figure:
    """Rows = each image at each layer; columns = the image, then its map after each recorded epoch.

    Args:
        images: float RGB in [0, 1], (N, H, W, 3), e.g. ``data.denormalize(tracker.images)``.
        evolution: layer -> (E, N, H, W) maps, e.g. ``CamTracker.evolution()``.
        epochs: the E epochs (0 = before training), e.g. ``CamTracker.epochs``.
        labels: (N,) true classes (the class the tracker's maps explain).
        classes: class names.
        sizes: layer -> (h, w) of its feature map (``CamTracker.sizes``), written beside the rows.
        alpha: heatmap opacity.
    """
    rgb, names = _checked_rows(images, evolution, epochs, labels, classes)
    rows, row_labels, columns = [], [], {f"epoch {e}": [] for e in epochs}
    for i in range(len(rgb)):
        for layer, maps in evolution.items():
            rows.append(rgb[i])
            row_labels.append(f"{names[i]}\n{size_label(layer, (sizes or {}).get(layer))}")
            for k, e in enumerate(epochs):
                columns[f"epoch {e}"].append(maps[k, i])
    return show_cams(np.stack(rows), {name: np.stack(m) for name, m in columns.items()}, row_labels=row_labels,
                     alpha=alpha, cell=(1.45, 1.5), interpolation="nearest",
                     title="Grad-CAM of the true class after each epoch (red = most important)")


def cam_evolution_frames(images: np.ndarray | torch.Tensor, evolution: Mapping[str, np.ndarray], epochs: Sequence[int],
                         labels: Sequence[int] | None = None, classes: Sequence[str] = CIFAR10_CLASSES,
                         preds: Sequence[Sequence[int]] | None = None,
                         sizes: Mapping[str, tuple[int, int]] | None = None, alpha: float = 0.5) -> list[Figure]:
    """One figure per recorded epoch (rows = images, columns = the image then each layer), for :func:`save_animation`.

    Args: as for :func:`show_cam_evolution`; ``preds`` (E, N) are the predictions at each epoch (``CamTracker.preds``),
    shown in each panel's title.
    """
    rgb, names = _checked_rows(images, evolution, epochs, labels, classes)
    frames = []
    for k, e in enumerate(epochs):
        cams = {size_label(layer, (sizes or {}).get(layer)): maps[k] for layer, maps in evolution.items()}
        titles = colours = None
        if preds is not None:
            titles = [[f"pred {classes[int(preds[k][i])]}"] * len(cams) for i in range(len(rgb))]
            colours = [["tab:green" if labels is not None and preds[k][i] == labels[i] else "tab:red"] * len(cams)
                       for i in range(len(rgb))]
        frames.append(show_cams(rgb, cams, titles=titles, title_colors=colours, row_labels=names, alpha=alpha,
                                cell=(1.6, 1.75), interpolation="nearest",
                                title=f"epoch {e}{' (before training)' if e == 0 else ''}: Grad-CAM of the true class"))
    return frames


def _frame_pixels(frame: Figure | np.ndarray, dpi: int) -> np.ndarray:
    """A figure (or an RGB array) as uint8 (H, W, 3)."""
    if isinstance(frame, Figure):
        canvas = FigureCanvasAgg(frame)
        frame.set_dpi(dpi)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()
    arr = _numpy(frame)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise UserError(f"a frame must be a Figure or an (H, W, 3) RGB array, got shape {arr.shape}")
    return arr


def save_animation(frames: Sequence[Figure | np.ndarray], path: str | os.PathLike, seconds_per_frame: float = 0.8,
                   dpi: int = 80) -> Path:
    """Write ``frames`` (figures of one layout, or RGB arrays) as a looping GIF with Pillow, atomically.

    Frames of different sizes are padded with white to the largest. The last frame is held three times as long.

    Raises:
        UserError: no frames, or a non-positive ``seconds_per_frame``.
    """
    from PIL import Image

    if not frames:
        raise UserError("no frames to animate: record at least one epoch")
    if not seconds_per_frame > 0:
        raise UserError(f"seconds_per_frame must be positive, got {seconds_per_frame}")
    pixels = [_frame_pixels(f, dpi) for f in frames]
    h, w = max(p.shape[0] for p in pixels), max(p.shape[1] for p in pixels)
    padded = [Image.fromarray(np.pad(p, ((0, h - p.shape[0]), (0, w - p.shape[1]), (0, 0)), constant_values=255))
              for p in pixels]  # white below and right of the smaller frames
    ms = int(round(1000 * seconds_per_frame))
    buffer = io.BytesIO()
    padded[0].save(buffer, format="GIF", save_all=True, append_images=padded[1:], loop=0,
                   duration=[ms] * (len(padded) - 1) + [3 * ms])
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))
