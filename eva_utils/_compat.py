"""Every name of eva_utils 0.1.0 that moved, in one place, each warning with its new home.

The old module paths (``eva_utils.cam``, ``eva_utils.sources``, ...) import their moved names from here.
All of them are removed in :data:`REMOVED_IN`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from eva_utils.core.errors import UserError
from eva_utils.data import labels
from eva_utils.data.cifar10 import CIFAR10_CLASSES
from eva_utils.evaluation import localisation
from eva_utils.explain.multiexit import ExitPredictions
from eva_utils.models.loading import Classifier
from eva_utils.plots import figures
from eva_utils.plots.training import plot_lr_finder
from eva_utils.training import engine, model_to_explain
from eva_utils.training.lr_finder import LRFinderResult, find_lr  # noqa: F401  (the root's find_lr)

REMOVED_IN = "0.3.0"
_F = TypeVar("_F", bound=Callable[..., Any])


def moved(func: _F, old: str) -> _F:
    """A deprecation alias: ``old`` (e.g. ``"eva_utils.cam.overlay"``) still calls ``func``, with a
    DeprecationWarning that names the new home and the release that removes the old name."""

    @functools.wraps(func)
    def alias(*args: Any, **kwargs: Any) -> Any:
        warnings.warn(f"{old} moved to {func.__module__}.{func.__name__}; the old name is removed in {REMOVED_IN}",
                      DeprecationWarning, stacklevel=2)
        return func(*args, **kwargs)

    return alias  # type: ignore[return-value]


# ----------------------------------------------------------------------------- eva_utils.cam

cam_overlay = moved(figures.overlay, "eva_utils.cam.overlay")
cam_show_cams = moved(figures.show_cams, "eva_utils.cam.show_cams")
cam_pointing_hits = moved(localisation.pointing_hits, "eva_utils.cam.pointing_hits")
cam_pointing_game = moved(localisation.pointing_game, "eva_utils.cam.pointing_game")

# ----------------------------------------------------------------------------- eva_utils.multiexit

multiexit_plot_budget_curve = moved(figures.plot_budget_curve, "eva_utils.multiexit.plot_budget_curve")


def _show_exit_cams_0_1(images: Any, cams: Any, labels: Any, preds: Any, difficulty: Any = None,
                        indices: Any = None, classes: Sequence[str] = CIFAR10_CLASSES, mean: Any = None,
                        std: Any = None, alpha: float = 0.5) -> Any:
    """0.1.0's ``show_exit_cams(images, cams, labels, preds, ...)``; ``plots.show_exit_cams`` takes the predictions."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    if preds.ndim != 2 or preds.shape[1] != len(labels):
        raise UserError(f"need (E, N) preds for N={len(labels)} images; got preds {preds.shape}")
    rows = np.arange(len(labels)) if indices is None else np.asarray(indices)
    pred = ExitPredictions(np.zeros((*preds.shape, 0), np.float32), preds, labels, rows)
    return figures.show_exit_cams(images, cams, pred, classes, mean, std, alpha)


multiexit_show_exit_cams = moved(_show_exit_cams_0_1, "eva_utils.multiexit.show_exit_cams")

# ----------------------------------------------------------------------------- eva_utils.sources

sources_read_labels = moved(labels.read_labels, "eva_utils.sources.read_labels")
sources_imagenet_categories = moved(labels.imagenet_classes, "eva_utils.sources.imagenet_categories")
sources_torchvision_classifier = moved(model_to_explain.torchvision_classifier, "eva_utils.sources.torchvision_classifier")


def _categories(self: Classifier) -> tuple[str, ...] | None:
    """0.1.0's name of :attr:`Classifier.classes`."""
    warnings.warn(f"Classifier.categories is now Classifier.classes; the old name is removed in {REMOVED_IN}",
                  DeprecationWarning, stacklevel=2)
    return self.classes


Classifier.categories = property(_categories)  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- eva_utils.training (and the root)
# The root's train_one_epoch, evaluate and find_lr come from here (eva_utils._HOMES): the engine's own functions,
# which also take 0.1.0's positional order (with a warning), and a find_lr result that still has 0.1.0's .figure.

_TRAIN_ONE_EPOCH_0_1 = ("model", "criterion", "optimizer", "train_loader", "device", "epoch", "scheduler", "scaler",
                        "amp", "channels_last", "max_batches", "progress")
_EVALUATE_0_1 = ("model", "test_loader", "device", "criterion", "amp", "channels_last", "tta", "max_batches", "progress")


def _old_order(func: _F, old: tuple[str, ...], is_old: Callable[[tuple], bool]) -> _F:
    """``func`` that also takes eva_utils 0.1.0's positional order ``old`` (told apart by ``is_old(args)``), with a
    DeprecationWarning; ``inspect.signature`` shows ``func``'s own parameters."""

    @functools.wraps(func)
    def shim(*args: Any, **kwargs: Any) -> Any:
        if is_old(args):
            name = func.__name__
            warnings.warn(f"{name}({', '.join(old[:len(args)])}) is the order of eva_utils 0.1.0; pass "
                          f"{name}(model, loader, criterion, ...) and the rest by name (the old order is removed in "
                          f"{REMOVED_IN})", DeprecationWarning, stacklevel=2)
            args, kwargs = (), {**dict(zip(old, args, strict=False)), **kwargs}
        return func(*args, **kwargs)

    return shim  # type: ignore[return-value]


# (model, criterion, optimizer, loader, ...) and (model, loader, device, criterion, ...)
train_one_epoch = _old_order(engine.train_one_epoch, _TRAIN_ONE_EPOCH_0_1,
                             lambda args: len(args) >= 3 and isinstance(args[2], torch.optim.Optimizer))
evaluate = _old_order(engine.evaluate, _EVALUATE_0_1, lambda args: len(args) >= 3 and isinstance(args[2], (str, torch.device)))


def _lr_finder_figure(self: LRFinderResult) -> Any:
    """0.1.0's ``find_lr(...).figure``: the curve, drawn by :func:`eva_utils.plots.plot_lr_finder`."""
    warnings.warn("LRFinderResult.figure: draw the curve with eva_utils.plots.plot_lr_finder(result); the attribute "
                  f"is removed in {REMOVED_IN}", DeprecationWarning, stacklevel=2)
    return plot_lr_finder(self)


LRFinderResult.figure = property(_lr_finder_figure)  # type: ignore[attr-defined]
