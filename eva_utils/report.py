"""Write the "look inside" figures of a trained model in one call (used by ``eva-utils demo`` and notebook 01).

``write_report(model, test_set, out)`` predicts the test set and saves: the most confident
misclassified images, the confusion matrix, per-layer Grad-CAM of misclassified images,
a grid of augmented training images, and ``metrics.json`` (accuracy, per-class accuracy).
``write_pretrained_report(out)`` does the same for the model that ships with the package, on
the 1,000 bundled test images, and adds the curves of the run that trained it: the README's
figures.
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
from .data import CIFAR10_MEAN, CIFAR10_STD, load_sample, make_loader
from .evaluation import accuracy, confusion_matrix, misclassified, per_class_accuracy, predict
from .models.shipped import pretrained, pretrained_info, training_history
from .plots import plot_confusion_matrix, plot_history, save_figure, show_layer_cams, show_misclassified, show_samples
from .transforms import test_transforms

__all__ = ["write_pretrained_report", "write_report"]


def write_report(
    model: nn.Module,
    test_set: Any,
    out: str | os.PathLike,
    train_set: Any | None = None,
    n_misclassified: int = 20,
    n_cam: int = 10,
    method: str = "gradcam",
    caption: str | None = None,
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
        caption: a line under every figure saying which model made it.

    Returns:
        Name -> path of every file written.
    """
    out = Path(out)
    save = _captioned_saver(caption)
    classes = list(getattr(test_set, "classes", []))
    device = next(model.parameters()).device
    pred = predict(model, make_loader(test_set, batch_size=256, shuffle=False, num_workers=0), device=device)
    files: dict[str, Path] = {}
    files["misclassified"] = save(show_misclassified(test_set, pred, n=n_misclassified, classes=classes), out / "misclassified.png")
    cm = confusion_matrix(pred.labels, pred.preds, len(classes))
    files["confusion_matrix"] = save(plot_confusion_matrix(cm, classes), out / "confusion_matrix.png")
    if train_set is not None:
        files["samples"] = save(show_samples(train_set, n=32, classes=classes), out / "samples.png")
    rows = misclassified(pred, k=n_cam)
    if len(rows):
        images = torch.stack([torch.as_tensor(test_set[int(i)][0]) for i in pred.indices[rows]])  # (n, C, H, W)
        cams = layer_cams(model, images, resnet_layers(model), targets=pred.preds[rows], method=method)
        fig = show_layer_cams(images, cams, pred.labels[rows], pred.preds[rows], pred.preds[rows], classes, CIFAR10_MEAN, CIFAR10_STD)
        files["gradcam_layers"] = save(fig, out / "gradcam_layers.png")
    per_class = per_class_accuracy(pred.labels, pred.preds, len(classes))
    metrics = {
        "images": len(pred.labels),
        "accuracy": accuracy(pred),
        "per_class_accuracy": {c: (None if np.isnan(a) else float(a)) for c, a in zip(classes, per_class, strict=True)},
        "misclassified": int((pred.preds != pred.labels).sum()),
    }
    files["metrics"] = out / "metrics.json"
    files["metrics"].write_text(json.dumps(metrics, indent=1))
    return files


def _captioned_saver(caption: str | None):
    """``save_figure``, writing ``caption`` under the figure first when there is one."""

    def save(fig: Any, path: Path) -> Path:
        if caption:
            fig.supxlabel(caption, fontsize=9, color="0.3")
        return save_figure(fig, path)

    return save


def write_pretrained_report(out: str | os.PathLike, name: str = "resnet18_w16_cifar10") -> dict[str, Path]:
    """The figures of a model that ships with the package, on the 1,000 bundled CIFAR-10 test images.

    Writes what :func:`write_report` writes (no augmented samples) plus ``curves.png``, the
    loss and accuracy of the run that trained the model, each figure captioned with the model
    and its measured accuracy. ``eva-utils demo --figures images`` makes the README's figures with it.

    Returns:
        Name -> path of every file written.
    """

    info = pretrained_info(name)
    model = pretrained(name)
    test_set = load_sample(train=False, transform=test_transforms())
    caption = (f"shipped model {name} ({info.arch}, width {info.width}, trained on the CPU on all 50,000 CIFAR-10 "
               f"training images): {100 * info.test_accuracy:.1f}% on the 1,000 bundled test images")
    files = write_report(model, test_set, out, caption=caption)
    history = training_history(name)
    fig = plot_history(history, title=f"the run that trained {name}: {len(history['epoch'])} epochs on 50,000 CIFAR-10 images")
    files["curves"] = _captioned_saver(caption)(fig, Path(out) / "curves.png")
    return files
