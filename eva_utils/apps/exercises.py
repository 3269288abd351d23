"""Checks for the exercise notebooks: each compares a student's answer with what eva_utils computes.

Each ``check_*`` returns quietly when the answer is right and raises ``AssertionError`` with a
message that says what is wrong (and a hint) when it is not, so an assert cell reads like a test.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from eva_utils.evaluation.metrics import Predictions, misclassified
from eva_utils.explain.cam import layer_cams

__all__ = ["check_curves", "check_gallery", "check_gradcam"]


def _lines(fig: Any) -> list[np.ndarray]:
    return [np.asarray(line.get_ydata(), dtype=float) for ax in fig.axes for line in ax.get_lines()]


def _plotted(fig: Any, values: list[float], scales: tuple[float, ...] = (1.0, 100.0)) -> bool:
    want = np.asarray(values, dtype=float)
    return any(len(y) == len(want) and np.allclose(y, want * s, rtol=1e-6) for y in _lines(fig) for s in scales)


def check_curves(fig: Any, history: Any) -> None:
    """``fig`` plots the train and test loss and accuracy of ``history`` (accuracy as a fraction or in %)."""
    assert fig is not None and hasattr(fig, "axes"), "make a matplotlib Figure and call it fig"
    assert len(fig.axes) >= 2, "draw the loss and the accuracy in two panels (fig.subplots(1, 2))"
    for name in ("train_loss", "test_loss", "train_acc", "test_acc"):
        assert _plotted(fig, list(getattr(history, name))), f"no line of the figure is history.{name}, epoch by epoch"


def check_gallery(worst: Any, fig: Any, pred: Predictions, k: int = 10) -> None:
    """``worst`` are the rows of the ``k`` most confident mistakes, most confident first; ``fig`` shows them."""
    assert worst is not None, f"set worst to the rows of pred of the {k} most confident mistakes"
    worst = np.asarray(worst)
    expected = misclassified(pred, k=k)
    assert len(worst) == len(expected), f"worst holds {len(worst)} rows, not {len(expected)}"
    wrong = pred.preds[worst] != pred.labels[worst]
    assert wrong.all(), "some rows of worst are predicted correctly: keep only pred.preds != pred.labels"
    assert np.array_equal(worst, expected), ("worst is not sorted by confidence: the most confident mistake "
                                             "(highest pred.confidence) first")
    assert fig is not None and hasattr(fig, "axes"), "make a Figure of those images and call it fig"
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) >= len(expected), f"the figure shows {len(shown)} images, not {len(expected)}"


def check_gradcam(my_cam: Any, model: nn.Module, images: torch.Tensor, layer: nn.Module, atol: float = 1e-5) -> None:
    """``my_cam`` (N, H, W) equals ``layer_cams`` (pytorch-grad-cam's Grad-CAM) at ``layer`` for the predicted class."""
    assert my_cam is not None, "compute my_cam, an (N, H, W) array of maps in [0, 1]"
    mine = my_cam.detach().cpu().numpy() if isinstance(my_cam, torch.Tensor) else np.asarray(my_cam, dtype=float)
    reference = layer_cams(model, images, {"layer": layer})["layer"]
    assert mine.shape == reference.shape, (f"my_cam has shape {mine.shape}, not {reference.shape}: one map per image, "
                                          "upsampled to the input size")
    assert mine.min() >= -atol and mine.max() <= 1 + atol, "scale each map to [0, 1] (divide by its maximum)"
    error = float(np.abs(mine - reference).max())
    assert error <= atol, (f"my_cam differs from Grad-CAM by up to {error:.3g}: weights = mean gradient per channel, "
                           "ReLU of the weighted sum, min-max scale, resize (cv2, bilinear), scale again")
