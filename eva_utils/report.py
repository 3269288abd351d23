"""Write the "look inside" figures of a trained model in one call (used by ``eva-utils demo`` and notebook 01).

``write_report(model, test_set, out)`` predicts the test set and saves: the most confident
misclassified images, the confusion matrix, per-layer Grad-CAM of misclassified images,
a grid of augmented training images, and ``metrics.json`` (accuracy, per-class accuracy).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .cam import layer_cams, resnet_layers
from .data import CIFAR10_MEAN, CIFAR10_STD, make_loader
from .evaluation import accuracy, confusion_matrix, misclassified, per_class_accuracy, predict
from .plots import plot_confusion_matrix, save_figure, show_layer_cams, show_misclassified, show_samples

__all__ = ["write_report"]


def write_report(
    model: nn.Module,
    test_set: Any,
    out: str | os.PathLike,
    train_set: Any | None = None,
    n_misclassified: int = 20,
    n_cam: int = 10,
    method: str = "gradcam",
) -> dict[str, Path]:
    """Predict ``test_set`` and save the figures and metrics into ``out``.

    Args:
        model: a trained eva_utils ResNet (Grad-CAM uses its layer0..layer4).
        test_set: items ``(normalised CHW tensor, label)``, with ``classes``.
        out: folder for the files (created).
        train_set: an augmented training set for the sample grid (skipped when ``None``).
        n_misclassified: images in the gallery.
        n_cam: misclassified images in the Grad-CAM grid.
        method: CAM method name.

    Returns:
        Name -> path of every file written.
    """
    out = Path(out)
    classes = list(getattr(test_set, "classes", []))
    device = next(model.parameters()).device
    pred = predict(model, make_loader(test_set, batch_size=256, shuffle=False, num_workers=0), device=device)
    files: dict[str, Path] = {}
    files["misclassified"] = save_figure(show_misclassified(test_set, pred, n=n_misclassified, classes=classes), out / "misclassified.png")
    cm = confusion_matrix(pred.labels, pred.preds, len(classes))
    files["confusion_matrix"] = save_figure(plot_confusion_matrix(cm, classes), out / "confusion_matrix.png")
    if train_set is not None:
        files["samples"] = save_figure(show_samples(train_set, n=32, classes=classes), out / "samples.png")
    rows = misclassified(pred, k=n_cam)
    if len(rows):
        images = torch.stack([torch.as_tensor(test_set[int(i)][0]) for i in pred.indices[rows]])  # (n, C, H, W)
        cams = layer_cams(model, images, resnet_layers(model), targets=pred.preds[rows], method=method)
        fig = show_layer_cams(images, cams, pred.labels[rows], pred.preds[rows], pred.preds[rows], classes, CIFAR10_MEAN, CIFAR10_STD)
        files["gradcam_layers"] = save_figure(fig, out / "gradcam_layers.png")
    per_class = per_class_accuracy(pred.labels, pred.preds, len(classes))
    metrics = {
        "images": len(pred.labels),
        "accuracy": accuracy(pred),
        "per_class_accuracy": {c: (None if np.isnan(a) else float(a)) for c, a in zip(classes, per_class)},
        "misclassified": int((pred.preds != pred.labels).sum()),
    }
    files["metrics"] = out / "metrics.json"
    files["metrics"].write_text(json.dumps(metrics, indent=1))
    return files
