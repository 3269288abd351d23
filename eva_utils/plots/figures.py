"""Every figure of the package: training curves, the LR range test, misclassified gallery, confusion matrix,
augmented samples, Grad-CAM overlays and grids (per layer, method, class or exit), the faithfulness table, maps over
training epochs (and their GIF), MSD-Net's budget curve.

Every function returns a ``matplotlib.figure.Figure`` (built without pyplot, so notebooks
show it once and scripts need no display); ``save_figure(fig, path)`` writes it.
Images are shown in RGB and denormalised with the data set's own mean and std.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from eva_utils.core.errors import UserError, unknown_name
from eva_utils.core.files import atomic_write
from eva_utils.data.cifar10 import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, denormalize
from eva_utils.evaluation.metrics import Predictions, check_exit, misclassified
from eva_utils.explain.faithfulness import BASELINES, HIGHER_IS_BETTER

if TYPE_CHECKING:  # for annotations only: multiexit's figures live here, and multiexit names them
    from eva_utils.explain.multiexit import BudgetCurve, ExitPredictions

__all__ = [
    "overlay",
    "plot_budget_curve",
    "plot_confusion_matrix",
    "plot_faithfulness",
    "plot_history",
    "plot_lr_finder",
    "cam_evolution_frames",
    "save_animation",
    "show_cam_evolution",
    "save_figure",
    "size_label",
    "show_cams",
    "show_exit_cams",
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
    """Train and test loss, accuracy per epoch, and the learning rate (when the history holds it).

    Args:
        history: a :class:`~eva_utils.training.History` or its ``to_dict()``.
        title: figure title.
    """
    epochs = _history_series(history, "epoch")
    if not epochs:
        raise UserError("the history is empty: train for at least one epoch first")
    lrs = [lr for lr in _history_series(history, "lr") if np.isfinite(lr)] if _has(history, "lr") else []
    panels = 3 if len(lrs) == len(epochs) else 2
    fig = Figure(figsize=(5.5 * panels, 4), layout="constrained")
    axes = fig.subplots(1, panels)
    ax_loss, ax_acc = axes[:2]
    for split, style in (("train", "-o"), ("test", "-s")):
        ax_loss.plot(epochs, _history_series(history, f"{split}_loss"), style, ms=3, label=split)
        ax_acc.plot(epochs, [100 * a for a in _history_series(history, f"{split}_acc")], style, ms=3, label=split)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.legend()
    if panels == 3:
        axes[2].plot(epochs, lrs, "-o", ms=3, color="tab:green")
        axes[2].set(xlabel="epoch", ylabel="learning rate", title="learning rate (at the end of each epoch)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers: no tick at 2.5
    if title:
        fig.suptitle(title)
    return fig


def _has(history: Any, name: str) -> bool:
    return name in history if isinstance(history, Mapping) else hasattr(history, name)


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


# ----------------------------------------------------------------------------- Grad-CAM figures


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


def overlay(
    image: np.ndarray | torch.Tensor,
    cam: np.ndarray | torch.Tensor,
    alpha: float = 0.5,
    colormap: str = "jet",
) -> np.ndarray:
    """Blend a heatmap over an image, in RGB order, for ``imshow``.

    pytorch-grad-cam's ``show_cam_on_image`` returns a BGR heatmap unless ``use_rgb=True``
    (red and blue swapped under matplotlib); this uses matplotlib colormaps, RGB throughout.

    Args:
        image: float RGB in [0, 1], (H, W, 3) or a batch (N, H, W, 3), e.g. from
            ``eva_utils.data.denormalize``. A (H, W) grey image is repeated to RGB.
        cam: (H, W) or (N, H, W) in [0, 1], e.g. one entry of :func:`~eva_utils.cam.layer_cams`.
        alpha: weight of the heatmap in [0, 1]: ``(1 - alpha) * image + alpha * colormap(cam)``.
        colormap: a matplotlib colormap name ("jet": blue = 0, red = 1).

    Returns:
        float32 (H, W, 3) or (N, H, W, 3) in [0, 1].

    Raises:
        UserError: the image is not float RGB in [0, 1] (says which way it is off and the fix), or the
            map does not match it or leaves [0, 1]; an alpha outside [0, 1]; an unknown colormap.
    """
    img, heat = _numpy(image), _numpy(cam)
    if img.dtype != np.uint8 and img.ndim == heat.ndim:  # grey (H, W) / (N, H, W)
        img = np.repeat(img[..., None], 3, axis=-1)
    problem = _rgb_problem(img)
    if problem:
        raise UserError(f"overlay needs float RGB in [0, 1], channels last: the image {problem}")
    if img.shape[:-1] != heat.shape or (heat.size and not (-1e-3 <= heat.min() and heat.max() <= 1 + 1e-3)):
        span = f" spanning [{heat.min():.3g}, {heat.max():.3g}]" if heat.size else ""
        raise UserError(
            f"overlay needs a map in [0, 1] of the image's size {img.shape[:-1]}, got {heat.shape}{span}: "
            "layer_cams returns such maps (N, H, W); pass cams[name] for the batch or cams[name][i] for one image"
        )
    if not 0.0 <= float(alpha) <= 1.0:
        raise UserError(f"alpha must be in [0, 1], got {alpha}")
    if colormap not in matplotlib.colormaps:
        raise unknown_name("colormap", colormap, list(matplotlib.colormaps))
    colours = matplotlib.colormaps[colormap](np.clip(heat, 0.0, 1.0))[..., :3].astype(np.float32)  # (..., H, W, 3)
    return np.clip((1.0 - alpha) * img.astype(np.float32) + alpha * colours, 0.0, 1.0).astype(np.float32)


def show_cams(
    images: np.ndarray | torch.Tensor,
    cams: Mapping[Any, np.ndarray] | Sequence[np.ndarray],
    titles: Sequence[Sequence[str]] | None = None,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
    alpha: float = 0.5,
    *,
    title_colors: Sequence[Sequence[str]] | None = None,
    cell: tuple[float, float] = (2.3, 2.5),
    interpolation: str = "bilinear",
    sizes: Mapping[str, tuple[int, int]] | None = None,
) -> Figure:
    """Rows = images; columns = the image, then one CAM overlay per entry of ``cams``.

    The one image-by-maps grid of the package: layers (``layer_cams`` output), methods
    (``{"gradcam": ..., "layercam": ...}``), target classes (a list of maps, one per class) and
    a multi-exit model's exits all draw through it.

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


def show_layer_cams(
    images: torch.Tensor, cams: Mapping[str, np.ndarray], labels: Sequence[int], preds: Sequence[int],
    targets: Sequence[int] | None = None, classes: Sequence[str] = CIFAR10_CLASSES,
    mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD, alpha: float = 0.5,
    sizes: Mapping[str, tuple[int, int]] | None = None,
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


def show_exit_cams(
    images: torch.Tensor | np.ndarray,
    cams: Mapping[int, np.ndarray],
    pred: ExitPredictions,
    classes: Sequence[str] = CIFAR10_CLASSES,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    alpha: float = 0.5,
) -> Figure:
    """Rows = images, columns = the image then one Grad-CAM overlay per exit (the MSD-Net blog's grid).

    Each overlay is titled with that exit's prediction, green with a tick when right, red with
    a cross when wrong; each row is labelled with the true class, the number of exits that get
    the image right and its data set index.

    Args:
        images: (N, 3, H, W), ``ToTensor()`` images in [0, 1] unless ``mean``/``std`` are given.
        cams: exit (1-based) -> (N, H, W) maps, e.g. from :func:`~eva_utils.multiexit.exit_cams`.
        pred: every exit's predictions for exactly these images, e.g. ``pred.subset(rows)``
            (:class:`~eva_utils.multiexit.ExitPredictions`).
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


# ----------------------------------------------------------------------------- curves of a model's trade-offs


def plot_lr_finder(lrs: Sequence[float], losses: Sequence[float], best: int) -> Figure:
    """The LR range test: smoothed loss against the learning rate (log scale), the suggestion in red.

    Args:
        lrs: the learning rates tried (after the points skipped at both ends).
        losses: the smoothed loss at each.
        best: index of the suggested rate (steepest descent).
    """
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    ax.plot(lrs, losses)
    ax.scatter([lrs[best]], [losses[best]], color="red", zorder=3, label=f"steepest descent: {lrs[best]:.2e}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="loss (smoothed)", title="LR range test")
    ax.legend()
    return fig


def plot_budget_curve(curve: BudgetCurve, title: str | None = None) -> Figure:
    """Anytime accuracy against the average exit used (left) and average multiply-adds (right).

    The line is the early-exit cascade swept over thresholds; the squares are each exit run
    alone (on the left, the per-exit accuracy of the published table).
    """
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_exit, ax_flops = fig.subplots(1, 2, sharey=True)
    exits = np.arange(1, len(curve.exit_accuracy) + 1)
    acc, fixed = 100 * curve.accuracy, 100 * curve.exit_accuracy
    ax_exit.plot(curve.mean_exit, acc, "-o", ms=3, label="anytime (confidence threshold)")
    ax_exit.plot(exits, fixed, "s", ms=6, mfc="none", label="each exit alone")
    ax_exit.set(xlabel="average exit used", ylabel="accuracy (%)", title="accuracy vs exits used")
    ax_exit.set_xticks(exits)
    if np.all(np.isnan(curve.mean_flops)):
        ax_flops.text(0.5, 0.5, "no costs given:\nbudget_curve(pred, exit_costs(model))", ha="center", va="center",
                      transform=ax_flops.transAxes)
    else:
        ax_flops.plot(curve.mean_flops / 1e6, acc, "-o", ms=3, label="anytime: classifiers on the way counted")
        ax_flops.plot(curve.exit_flops / 1e6, fixed, "s", ms=6, mfc="none", label="each exit alone")
        for k, x, y in zip(exits, curve.exit_flops / 1e6, fixed, strict=False):
            ax_flops.annotate(str(k), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax_flops.set(xlabel="average multiply-adds per image (millions)", title="accuracy vs compute")
    for ax in (ax_exit, ax_flops):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title or "budgeted prediction: stop at the first confident exit")
    return fig


# ----------------------------------------------------------------------------- how faithful the maps are


_METRIC_NAMES = {
    "drop_in_confidence": "drop in\nconfidence", "increase_in_confidence": "increase in\nconfidence",
    "road_morf": "ROAD\nMoRF", "road_lerf": "ROAD\nLeRF", "road_combined": "ROAD\ncombined",
    "deletion_auc": "deletion\nAUC", "insertion_auc": "insertion\nAUC",
}


def plot_faithfulness(
    table: Mapping[str, Mapping[str, float]],
    title: str | None = None,
    row_labels: Mapping[str, str] | None = None,
) -> Figure:
    """Maps x metrics, each cell coloured by its rank in the column (green = most faithful), baselines last, in italics.

    Args:
        table: :func:`~eva_utils.faithfulness.cam_faithfulness`'s ``{map: {metric: value}}``.
        title: the figure's title.
        row_labels: optional display names of the maps (e.g. ``{"layer3": "layer3 (8x8)"}``).
    """
    rows = list(table)
    if not rows:
        raise UserError("the faithfulness table is empty: pass cam_faithfulness(...)'s result")
    metrics = list(table[rows[0]])
    for name in rows:
        if list(table[name]) != metrics:
            raise UserError(f"row {name!r} has metrics {list(table[name])}, row {rows[0]!r} has {metrics}: "
                            "pass one cam_faithfulness(...) result")
    for metric in metrics:
        if metric not in HIGHER_IS_BETTER:
            raise unknown_name("faithfulness metric", metric, list(HIGHER_IS_BETTER))
    values = np.array([[table[r][m] for m in metrics] for r in rows], dtype=np.float64)  # (R, M)
    goodness = np.where([HIGHER_IS_BETTER[m] for m in metrics], values, -values)
    ranks = goodness.argsort(0).argsort(0) / max(len(rows) - 1, 1)  # 0 = worst, 1 = best in each column
    fig = Figure(figsize=(1.15 * len(metrics) + 2.2, 0.42 * len(rows) + 1.5), layout="constrained")
    ax = fig.subplots()
    ax.imshow(ranks, cmap="RdYlGn", vmin=-0.15, vmax=1.15, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(metrics)):
            ax.text(j, i, f"{values[i, j]:.3f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(metrics)),
                  [f"{_METRIC_NAMES.get(m, m)}\n({'higher' if HIGHER_IS_BETTER[m] else 'lower'} = better)" for m in metrics],
                  fontsize=8)
    ax.xaxis.tick_top()
    labels = [(row_labels or {}).get(r, r) for r in rows]
    ax.set_yticks(range(len(rows)), [f"{lab} (baseline)" if r in BASELINES else lab for r, lab in zip(rows, labels, strict=True)],
                  fontsize=8)
    for tick, r in zip(ax.get_yticklabels(), rows, strict=True):
        if r in BASELINES:
            tick.set_fontstyle("italic")
    first_baseline = next((i for i, r in enumerate(rows) if r in BASELINES), None)
    if first_baseline:
        ax.axhline(first_baseline - 0.5, color="black", lw=1.5)
    ax.tick_params(length=0)
    fig.suptitle(title or "How faithful is each map? (colour: rank in its column, green = best)", fontsize=10)
    return fig


# ----------------------------------------------------------------------------- maps over training epochs


def size_label(layer: str, size: tuple[int, int] | None) -> str:
    """A layer's name with its feature map's size, e.g. ``layer4\\n4x4 map (coarse)`` (see ``cam.map_sizes``).

    Maps under 5 pixels wide are called coarse: their CAM can only say which part of a 2x2 or 4x4 grid mattered.
    """
    if size is None:
        return layer
    h, w = size
    return f"{layer}\n{h}x{w} map{' (coarse)' if min(h, w) < 5 else ''}"


def _check_evolution(rgb: np.ndarray, evolution: Mapping[str, np.ndarray], epochs: Sequence[int]) -> None:
    if not evolution:
        raise UserError("evolution is empty: pass CamTracker.evolution() (layer -> (E, N, H, W))")
    for layer, maps in evolution.items():
        if maps.ndim != 4 or maps.shape[0] != len(epochs) or maps.shape[1] != len(rgb):
            raise UserError(f"{layer}'s maps have shape {maps.shape}; expected ({len(epochs)} epochs, {len(rgb)} images, H, W)")


def _row_names(labels: Sequence[int] | None, classes: Sequence[str], n: int) -> list[str]:
    return [f"true {classes[int(labels[i])]}" if labels is not None else f"image {i}" for i in range(n)]


def show_cam_evolution(
    images: np.ndarray | torch.Tensor,
    evolution: Mapping[str, np.ndarray],
    epochs: Sequence[int],
    labels: Sequence[int] | None = None,
    classes: Sequence[str] = CIFAR10_CLASSES,
    sizes: Mapping[str, tuple[int, int]] | None = None,
    alpha: float = 0.5,
) -> Figure:
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
    rgb = _numpy(images)
    _check_evolution(rgb, evolution, epochs)
    names = _row_names(labels, classes, len(rgb))
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


def cam_evolution_frames(
    images: np.ndarray | torch.Tensor,
    evolution: Mapping[str, np.ndarray],
    epochs: Sequence[int],
    labels: Sequence[int] | None = None,
    classes: Sequence[str] = CIFAR10_CLASSES,
    preds: Sequence[Sequence[int]] | None = None,
    sizes: Mapping[str, tuple[int, int]] | None = None,
    alpha: float = 0.5,
) -> list[Figure]:
    """One figure per recorded epoch (rows = images, columns = the image then each layer), for :func:`save_animation`.

    Args: as for :func:`show_cam_evolution`; ``preds`` (E, N) are the predictions at each epoch (``CamTracker.preds``),
    shown in each panel's title.
    """
    rgb = _numpy(images)
    _check_evolution(rgb, evolution, epochs)
    names = _row_names(labels, classes, len(rgb))
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
    padded = []
    for p in pixels:
        canvas = np.full((h, w, 3), 255, np.uint8)
        canvas[:p.shape[0], :p.shape[1]] = p
        padded.append(Image.fromarray(canvas))
    ms = int(round(1000 * seconds_per_frame))
    buffer = io.BytesIO()
    padded[0].save(buffer, format="GIF", save_all=True, append_images=padded[1:], loop=0,
                   duration=[ms] * (len(padded) - 1) + [3 * ms])
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))
