"""Anytime prediction with a multi-exit network: stop at the first confident exit, and what that costs.

``anytime_predict(pred, threshold, costs)`` stops each image at the first exit whose softmax confidence reaches
``threshold``; ``budget_curve(pred, exit_costs(model))`` sweeps the threshold: accuracy against the average number
of exits and multiply-adds used. See :mod:`eva_utils.explain.multiexit` for how the costs are counted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
from torch import nn

from eva_utils.core.errors import UserError
from eva_utils.explain.exits import ExitPredictions, exit_accuracy

__all__ = ["AnytimeResult", "BudgetCurve", "ExitCosts", "anytime_predict", "budget_curve", "default_thresholds",
           "exit_costs"]


class ExitCosts(NamedTuple):
    """Multiply-adds per image of stopping at each exit, see the module docstring.

    Attributes:
        anytime: (E,) blocks 1..k and classifiers 1..k (the early-exit cascade).
        single: (E,) blocks 1..k and classifier k only (``model.exit_flops()``).
    """

    anytime: np.ndarray
    single: np.ndarray


def exit_costs(model: nn.Module, input_size: tuple[int, int, int] = (3, 32, 32)) -> ExitCosts:
    """The cost of stopping at each exit of an MSD-Net (anything with ``flops_breakdown``).

    Args:
        model: e.g. :class:`~eva_utils.models.MSDNet`.
        input_size: (C, H, W) of one image.
    """
    if not hasattr(model, "flops_breakdown"):
        raise UserError(f"{type(model).__name__} has no flops_breakdown(): exit costs need an eva_utils MSDNet")
    blocks, heads = (np.asarray(v, dtype=np.float64) for v in model.flops_breakdown(input_size))
    return ExitCosts(np.cumsum(blocks) + np.cumsum(heads), np.cumsum(blocks) + heads)


class AnytimeResult(NamedTuple):
    """Early-exit predictions at one confidence threshold.

    Attributes:
        threshold: the confidence an exit needs to answer.
        exits: (N,) 1-based exit each image stopped at.
        preds: (N,) the prediction of that exit.
        accuracy: fraction right.
        mean_exit: average exit used (1 = all stop at the first).
        mean_flops: average multiply-adds per image (NaN without costs).
    """

    threshold: float
    exits: np.ndarray
    preds: np.ndarray
    accuracy: float
    mean_exit: float
    mean_flops: float


def anytime_predict(pred: ExitPredictions, threshold: float, costs: ExitCosts | None = None) -> AnytimeResult:
    """Stop at the first exit whose max softmax probability is ``>= threshold`` (the last exit otherwise).

    ``threshold=0`` makes every image stop at exit 1; any threshold above 1 sends every image to the last exit.

    Args:
        pred: from :func:`predict_exits`.
        threshold: confidence needed to stop.
        costs: from :func:`exit_costs`, for the average multiply-adds.
    """
    if len(pred.labels) == 0:
        raise UserError("no images: the selection is empty")
    stops = pred.confidence >= threshold  # (E, N)
    stops[-1] = True
    first = stops.argmax(axis=0)  # (N,) 0-based exit
    preds = pred.preds[first, np.arange(len(first))]
    flops = float(costs.anytime[first].mean()) if costs is not None else float("nan")
    return AnytimeResult(
        float(threshold), first + 1, preds, float((preds == pred.labels).mean()), float(first.mean() + 1), flops,
    )


class BudgetCurve(NamedTuple):
    """Anytime accuracy against cost, one point per threshold (increasing), plus each single exit.

    Attributes:
        thresholds: (T,) confidence thresholds, increasing (0 first, ``inf`` last).
        accuracy: (T,) accuracy of the early-exit predictions.
        mean_exit: (T,) average exit used.
        mean_flops: (T,) average multiply-adds per image (NaN without costs).
        exit_share: (T, E) fraction of images stopping at each exit.
        exit_accuracy: (E,) accuracy of each exit on all images.
        exit_flops: (E,) cost of running each exit alone (``ExitCosts.single``; NaN without costs).
    """

    thresholds: np.ndarray
    accuracy: np.ndarray
    mean_exit: np.ndarray
    mean_flops: np.ndarray
    exit_share: np.ndarray
    exit_accuracy: np.ndarray
    exit_flops: np.ndarray


def default_thresholds(pred: ExitPredictions, n: int = 21) -> np.ndarray:
    """Thresholds that spread the curve evenly: 0, ``n`` quantiles of the non-final exits' confidences, inf.

    Returns:
        Sorted unique thresholds; the first sends every image to exit 1, the last to the last exit.
    """
    conf = pred.confidence[:-1].ravel() if pred.num_exits > 1 else np.zeros(0)
    quantiles = np.quantile(conf, np.linspace(0.0, 1.0, n)) if conf.size else np.zeros(0)
    return np.unique(np.concatenate([[0.0], quantiles, [np.inf]]))


def budget_curve(pred: ExitPredictions, costs: ExitCosts | None = None, thresholds: Iterable[float] | None = None) -> BudgetCurve:
    """Sweep the early-exit threshold: accuracy against average exits and multiply-adds.

    A threshold chosen on the swept images is optimistic: choose it on held-out images, report test-set accuracy.

    Args:
        pred: from :func:`predict_exits`.
        costs: from :func:`exit_costs` (``None``: no FLOPs, only exits).
        thresholds: default :func:`default_thresholds`.
    """
    ts = default_thresholds(pred) if thresholds is None else np.sort(np.asarray(list(thresholds), dtype=np.float64))
    if ts.size == 0:
        raise UserError("thresholds is empty")
    results = [anytime_predict(pred, t, costs) for t in ts]
    share = np.stack([np.bincount(r.exits - 1, minlength=pred.num_exits) / len(r.exits) for r in results])
    single = costs.single if costs is not None else np.full(pred.num_exits, np.nan)
    return BudgetCurve(
        ts,
        np.array([r.accuracy for r in results]),
        np.array([r.mean_exit for r in results]),
        np.array([r.mean_flops for r in results]),
        share,
        exit_accuracy(pred),
        np.asarray(single, dtype=np.float64),
    )
