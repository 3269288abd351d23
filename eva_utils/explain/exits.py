"""A multi-exit network's predictions: every exit's probabilities over a data set, and the tables read off them.

``pred = predict_exits(model, test_loader)`` runs every exit in one forward per batch; ``exit_accuracy(pred)``,
``per_class_exit_accuracy(pred)``, ``correctness(pred)`` and ``difficulty(pred)`` are the visualiser's tables;
``select_class(pred, "dog", classes)`` keeps one class. Exits are numbered from 1; exit ``k`` is row ``k - 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from eva_utils.core.checks import positive_int
from eva_utils.core.errors import UserError, unknown_name
from eva_utils.data.cifar10 import CIFAR10_CLASSES
from eva_utils.evaluation.metrics import Predictions, check_exit, output_probs

__all__ = ["ExitPredictions", "class_index", "correctness", "difficulty", "examples_by_difficulty", "exit_accuracy",
           "per_class_exit_accuracy", "predict_exits", "select_class"]


# ----------------------------------------------------------------------------- predictions


class ExitPredictions(NamedTuple):
    """Every exit's outputs over a data set, in data set order.

    Attributes:
        probs: (E, N, C) float32 softmax probabilities, row ``k - 1`` = exit ``k``.
        preds: (E, N) predicted classes.
        labels: (N,) true classes.
        indices: (N,) position of each image in the data set (the test-set index).
    """

    probs: np.ndarray
    preds: np.ndarray
    labels: np.ndarray
    indices: np.ndarray

    @property
    def num_exits(self) -> int:
        """Number of exits E."""
        return int(self.probs.shape[0])

    @property
    def correct(self) -> np.ndarray:
        """(E, N) bool: exit k-1's prediction equals the label."""
        return self.preds == self.labels[None, :]

    @property
    def confidence(self) -> np.ndarray:
        """(E, N) probability each exit gives its own prediction (the max softmax)."""
        return np.take_along_axis(self.probs, self.preds[..., None], axis=2)[..., 0]

    def exit(self, k: int) -> Predictions:
        """Exit ``k`` (1-based) as :class:`~eva_utils.evaluation.Predictions`."""
        k = check_exit(k, self.num_exits)
        return Predictions(self.probs[k - 1], self.preds[k - 1], self.labels, self.indices)

    def subset(self, rows: Sequence[int] | np.ndarray) -> ExitPredictions:
        """The images at ``rows`` (positions in this object, not data set indices)."""
        rows = np.asarray(rows)
        return ExitPredictions(self.probs[:, rows], self.preds[:, rows], self.labels[rows], self.indices[rows])


def _dataset_indices(loader: DataLoader, n: int) -> np.ndarray:
    """Data set positions of a sequential loader's items; a ``Subset`` maps to its parent's indices."""
    dataset = loader.dataset
    if isinstance(dataset, Subset):
        return np.asarray(dataset.indices, dtype=np.int64)[:n]
    return np.arange(n, dtype=np.int64)


def predict_exits(model: nn.Module, loader: DataLoader, device: str | torch.device | None = None) -> ExitPredictions:
    """Run a multi-exit model over an unshuffled ``loader``: one forward per batch, all exits kept.

    Args:
        model: returns a list of logits, shallowest first (a single tensor is one exit); run in eval mode, then restored.
        loader: yields ``(images, labels)`` in data set order, as the model expects them (``ToTensor()`` images in
            [0, 1] for MSDNet-GCN weights).
        device: default the model's own device.

    Returns:
        :class:`ExitPredictions`; ``indices`` are positions in ``loader.dataset``, or in its parent if it is a ``Subset``.

    Raises:
        UserError: a shuffled loader or an empty data set.
    """
    p, y = output_probs(model, loader, device, caller="predict_exits")  # (E, N, C), (N,)
    return ExitPredictions(p, p.argmax(2), y, _dataset_indices(loader, len(y)))


# ----------------------------------------------------------------------------- tables


def exit_accuracy(pred: ExitPredictions) -> np.ndarray:
    """(E,) accuracy of each exit; ``.mean()`` is the "Mean" row of the published table."""
    if len(pred.labels) == 0:
        raise UserError("no images: the selection is empty")
    return pred.correct.mean(axis=1)


def per_class_exit_accuracy(pred: ExitPredictions, num_classes: int | None = None) -> np.ndarray:
    """(C, E) accuracy of every exit on every true class (NaN for a class without images).

    Args:
        pred: from :func:`predict_exits`.
        num_classes: default the width of ``pred.probs``.
    """
    num_classes = pred.probs.shape[2] if num_classes is None else int(num_classes)
    counts = np.bincount(pred.labels, minlength=num_classes)[:num_classes]  # (C,)
    hits = np.stack([np.bincount(pred.labels, weights=c, minlength=num_classes)[:num_classes] for c in pred.correct])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts[None, :] > 0, hits / counts[None, :], np.nan).T  # (C, E)


def correctness(pred: ExitPredictions) -> np.ndarray:
    """(N, E) bool, images x exits: whether exit ``k`` gets image ``i`` right."""
    return pred.correct.T


def difficulty(pred: ExitPredictions) -> np.ndarray:
    """(N,) number of exits that get each image right (the blog's difficulty: high = easy)."""
    return pred.correct.sum(axis=0)


def class_index(name: str | int, classes: Sequence[str]) -> int:
    """The index of class ``name`` (case-insensitive), or an index passed as is.

    Raises:
        UserError: an unknown name (the message lists the valid ones) or an index out of range.
    """
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
        if not 0 <= int(name) < len(classes):
            raise UserError(f"class index {name} is out of range 0..{len(classes) - 1}")
        return int(name)
    lowered = [c.lower() for c in classes]
    key = str(name).strip().lower()
    if key not in lowered:
        raise unknown_name("class", str(name), classes)
    return lowered.index(key)


def select_class(pred: ExitPredictions, name: str | int, classes: Sequence[str] = CIFAR10_CLASSES) -> ExitPredictions:
    """Only the images whose true class is ``name`` (e.g. ``"dog"``), data set indices kept."""
    return pred.subset(np.flatnonzero(pred.labels == class_index(name, classes)))


def examples_by_difficulty(pred: ExitPredictions, n: int = 6) -> np.ndarray:
    """Rows of ``n`` images spread from the hardest to the easiest, for an image x exit grid.

    Images are sorted by difficulty (ties by data set index) and ``n`` are taken at even steps, so the grid shows
    images right at few exits as well as at all of them.

    Returns:
        (min(n, N),) row positions in ``pred``.
    """
    n = positive_int(n, "n")
    order = np.lexsort((pred.indices, difficulty(pred)))  # hardest first
    if len(order) <= n:
        return order
    return order[np.round(np.linspace(0, len(order) - 1, n)).astype(int)]
