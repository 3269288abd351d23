"""Figures: training curves, misclassified gallery, confusion matrix, augmented samples, per-layer Grad-CAM.

Every function returns a ``matplotlib.figure.Figure`` (built without pyplot, so notebooks
show it once and scripts need no display); ``save_figure(fig, path)`` writes it.
Images are shown in RGB and denormalised with the data set's own mean and std.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .cam import overlay
from .data import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, denormalize
from .errors import UserError
from .evaluation import Predictions, misclassified

__all__ = [
    "plot_confusion_matrix",
    "plot_history",
    "save_figure",
    "show_layer_cams",
    "show_misclassified",
    "show_samples",
]


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save ``fig`` (folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def _grid(n: int, cols: int, cell: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    fig = Figure(figsize=(cell[0] * cols, cell[1] * rows), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes


def _history_series(history: Any, name: str) -> list[float]:
    return list(history[name] if isinstance(history, Mapping) else getattr(history, name))


def plot_history(history: Any, title: str | None = None) -> Figure:
    """Train and test loss (left) and accuracy (right) per epoch.

    Args:
        history: a :class:`~eva_utils.training.History` or its ``to_dict()``.
        title: figure title.
    """
    epochs = _history_series(history, "epoch")
    if not epochs:
        raise UserError("the history is empty: train for at least one epoch first")
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    for split, style in (("train", "-o"), ("test", "-s")):
        ax_loss.plot(epochs, _history_series(history, f"{split}_loss"), style, ms=3, label=split)
        ax_acc.plot(epochs, [100 * a for a in _history_series(history, f"{split}_acc")], style, ms=3, label=split)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers: no tick at 2.5
    if title:
        fig.suptitle(title)
    return fig


def _images_of(dataset: Any, rows: Sequence[int]) -> torch.Tensor:
    """(N, C, H, W) tensors of the data set items ``rows``."""
    return torch.stack([torch.as_tensor(dataset[int(i)][0]) for i in rows])


def show_misclassified(
    dataset: Any,
    pred: Predictions,
    n: int = 10,
    classes: Sequence[str] = CIFAR10_CLASSES,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
    cols: int = 5,
) -> Figure:
    """A gallery of the ``n`` most confident mistakes, titled ``true -> pred (p=0.93)``.

    Args:
        dataset: the data set ``pred`` was computed on (items ``(normalised image, label)``).
        pred: from :func:`~eva_utils.evaluation.predict`.
        n: images to show (10 or 20 in the course); fewer are shown, and said, when fewer exist.
        classes: class names.
        mean: the normalisation mean of ``dataset`` (used to show true colours).
        std: the normalisation std of ``dataset``.
        cols: images per row.
    """
    if n <= 0:
        raise UserError(f"n must be positive, got {n}")
    rows = misclassified(pred, k=n)
    if len(rows) == 0:
        fig = Figure(figsize=(4, 1.5), layout="constrained")
        fig.text(0.5, 0.5, "no misclassified images", ha="center", va="center")
        return fig
    fig, axes = _grid(len(rows), cols, (2.3, 2.6))
    images = denormalize(_images_of(dataset, pred.indices[rows]), mean, std)
    for ax, row, image in zip(axes.flat, rows, images, strict=False):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(f"{classes[pred.labels[row]]} -> {classes[pred.preds[row]]}\n(p={pred.confidence[row]:.2f})", fontsize=9)
    title = f"{len(rows)} most confident misclassified images (true -> predicted)"
    if len(rows) < n:
        warnings.warn(f"asked for {n} misclassified images but there are only {len(rows)}", stacklevel=2)
        title = f"only {len(rows)} misclassified images (asked for {n}): true -> predicted"
    fig.suptitle(title)
    return fig


def plot_confusion_matrix(cm: np.ndarray, classes: Sequence[str] = CIFAR10_CLASSES, normalize: bool = True) -> Figure:
    """Confusion matrix (rows true, columns predicted), counts or row-normalised percentages."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(classes):
        raise UserError(f"confusion matrix must be ({len(classes)}, {len(classes)}), got {cm.shape}")
    shown = 100 * cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    fig = Figure(figsize=(7.5, 6.5), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(shown, cmap="Blues")
    fig.colorbar(im, ax=ax, label="% of true class" if normalize else "images")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix" + (" (% of each true class)" if normalize else ""))
    threshold = shown.max() / 2
    for i in range(len(classes)):
        for j in range(len(classes)):
            text = f"{shown[i, j]:.0f}" if normalize else f"{int(shown[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if shown[i, j] > threshold else "black")
    return fig


def show_samples(
    dataset: Any,
    n: int = 32,
    cols: int = 8,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
) -> Figure:
    """A grid of (augmented) training images with their class, to see what the augmentations do.

    Args:
        dataset: items ``(normalised CHW tensor, label)``, e.g. ``load_sample(transform=train_transforms())``.
        n: images to show (random, reproducible with ``seed``).
        cols: images per row.
        seed: which images.
        classes: class names (default the data set's own, else CIFAR-10's).
        mean: normalisation mean of the data set.
        std: normalisation std of the data set.
    """
    if len(dataset) == 0:
        raise UserError("the data set is empty: nothing to show")
    classes = classes or getattr(dataset, "classes", CIFAR10_CLASSES)
    rows = np.random.default_rng(seed).choice(len(dataset), size=min(n, len(dataset)), replace=False)
    items = [dataset[int(i)] for i in rows]
    images = denormalize(torch.stack([torch.as_tensor(x) for x, _ in items]), mean, std)
    fig, axes = _grid(len(items), cols, (1.6, 1.8))
    for ax, image, (_, label) in zip(axes.flat, images, items, strict=False):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(classes[int(label)], fontsize=9)
    fig.suptitle("training images after augmentation")
    return fig


def show_layer_cams(
    images: torch.Tensor,
    cams: Mapping[str, np.ndarray],
    labels: Sequence[int],
    preds: Sequence[int],
    targets: Sequence[int] | None = None,
    classes: Sequence[str] = CIFAR10_CLASSES,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
    alpha: float = 0.5,
) -> Figure:
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
    """

    n = len(images)
    targets = list(preds) if targets is None else list(targets)
    if not (len(labels) == len(preds) == len(targets) == n):
        raise UserError(f"got {n} images but {len(labels)} labels, {len(preds)} preds and {len(targets)} targets")
    for name, cam in cams.items():
        if len(cam) != n:
            raise UserError(f"cams[{name!r}] holds {len(cam)} maps for {n} images")
    rgb = denormalize(images, mean, std)  # (N, H, W, 3)
    ncols = 1 + len(cams)
    fig = Figure(figsize=(1.9 * ncols + 0.6, 2.0 * n + 0.6), layout="constrained")
    axes = fig.subplots(n, ncols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for col, name in enumerate(["image", *cams], start=0):
        axes[0, col].set_title(name, fontsize=10, fontweight="bold")
    for i in range(n):
        axes[i, 0].imshow(rgb[i], interpolation="nearest")
        mark = "ok" if labels[i] == preds[i] else "wrong"
        axes[i, 0].set_ylabel(
            f"true {classes[labels[i]]}\npred {classes[preds[i]]} ({mark})\nCAM {classes[targets[i]]}", fontsize=8,
        )
        for col, cam in enumerate(cams.values(), start=1):
            axes[i, col].imshow(overlay(rgb[i], cam[i], alpha=alpha), interpolation="bilinear")
    fig.suptitle("Grad-CAM per layer (red = most important for the CAM class)", fontsize=11)
    return fig
