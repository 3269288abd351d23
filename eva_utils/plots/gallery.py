"""Galleries of a data set's images: augmented samples, the most confident mistakes, the confusion matrix."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from eva_utils.core.checks import positive_int
from eva_utils.core.errors import UserError
from eva_utils.data.cifar10 import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, denormalize
from eva_utils.evaluation.metrics import Predictions, misclassified

__all__ = ["plot_confusion_matrix", "show_misclassified", "show_samples"]


def _grid(n: int, cols: int, cell: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    fig = Figure(figsize=(cell[0] * cols, cell[1] * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes


def show_misclassified(dataset: Any, pred: Predictions, n: int = 10, classes: Sequence[str] = CIFAR10_CLASSES,
                       mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD,
                       cols: int = 5) -> Figure:
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
    n = positive_int(n, "n")
    rows = misclassified(pred, k=n)
    if len(rows) == 0:
        fig = Figure(figsize=(4, 1.5), layout="constrained")
        fig.text(0.5, 0.5, "no misclassified images", ha="center", va="center")
        return fig
    fig, axes = _grid(len(rows), cols, (2.3, 2.6))
    images = denormalize(torch.stack([torch.as_tensor(dataset[int(i)][0]) for i in pred.indices[rows]]), mean, std)
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


def show_samples(dataset: Any, n: int = 32, cols: int = 8, seed: int = 0, classes: Sequence[str] | None = None,
                 mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD) -> Figure:
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
