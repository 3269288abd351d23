"""A multi-exit network's tables as text: what ``eva-utils msd`` prints and notebook 03 shows.

Each function returns a string (the caller prints it): the per-exit accuracy, classes x exits, images x exits,
how many images each number of exits gets right, and the budget curve.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eva_utils.core.errors import UserError
from eva_utils.data.cifar10 import CIFAR10_CLASSES
from eva_utils.explain.budgets import BudgetCurve
from eva_utils.explain.exits import ExitPredictions, correctness, difficulty

__all__ = ["format_budget_curve", "format_class_exit_accuracy", "format_correctness", "format_difficulty_counts",
           "format_exit_accuracy"]


def _percent(value: float) -> str:
    return "   -  " if np.isnan(value) else f"{100 * value:5.1f}%"


def format_exit_accuracy(accuracy: Sequence[float] | np.ndarray, flops: Sequence[float] | None = None) -> str:
    """The per-classifier accuracy table with its mean, as text.

    Args:
        accuracy: (E,) from :func:`exit_accuracy`.
        flops: (E,) optional multiply-adds of each exit alone (``ExitCosts.single``), shown in millions.
    """
    acc = np.asarray(accuracy, dtype=np.float64)
    lines = ["exit  accuracy" + ("   MMACs" if flops is not None else "")]
    for k, a in enumerate(acc, start=1):
        cost = f"  {flops[k - 1] / 1e6:6.1f}" if flops is not None else ""
        lines.append(f"{k:>4}  {100 * a:7.2f}%{cost}")
    lines.append(f"mean  {100 * acc.mean():7.2f}%")
    return "\n".join(lines)


def format_class_exit_accuracy(table: np.ndarray, classes: Sequence[str] = CIFAR10_CLASSES) -> str:
    """Classes x exits accuracy (from :func:`per_class_exit_accuracy`) as text; ``*`` marks each class's best exit(s)."""
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or table.shape[0] != len(classes):
        raise UserError(f"table must be (classes={len(classes)}, exits), got shape {table.shape}")
    width = max(5, *(len(c) for c in classes))
    lines = [f"{'class':<{width}} " + "".join(f"{k:>8}" for k in range(1, table.shape[1] + 1))]
    for name, row in zip(classes, table, strict=False):
        best = np.nanmax(row) if np.nanmin(row, initial=np.inf) < np.nanmax(row, initial=-np.inf) else np.nan
        cells = "".join(f"{_percent(a):>7}{'*' if a == best else ' '}" for a in row)
        lines.append(f"{name:<{width}} {cells}")
    return "\n".join(lines)


def format_correctness(
    pred: ExitPredictions,
    classes: Sequence[str] = CIFAR10_CLASSES,
    limit: int | None = 20,
    marks: tuple[str, str] = ("✓", "✗"),
) -> str:
    """Images x exits: which exits get each image right, and its difficulty, as text.

    Args:
        pred: from :func:`predict_exits` (or :func:`select_class`).
        classes: class names.
        limit: rows to show (``None`` or 0: all); a last line says how many were left out.
        marks: symbols for right and wrong (``("1", "0")`` for plain ASCII).
    """
    right, wrong = marks
    cols = max(len(str(pred.num_exits)), len(right), len(wrong)) + 1
    width = max(5, *(len(c) for c in classes))
    lines = [f"{'image':>6}  {'true':<{width}} " + "".join(f"{k:>{cols}}" for k in range(1, pred.num_exits + 1)) + "  right"]
    shown = len(pred.labels) if not limit else min(int(limit), len(pred.labels))
    table, score = correctness(pred), difficulty(pred)
    for i in range(shown):
        cells = "".join(f"{right if c else wrong:>{cols}}" for c in table[i])
        lines.append(f"{pred.indices[i]:>6}  {classes[pred.labels[i]]:<{width}} {cells}  {score[i]:>5}")
    if shown < len(pred.labels):
        lines.append(f"... {len(pred.labels) - shown} more images not shown")
    return "\n".join(lines)


def format_difficulty_counts(pred: ExitPredictions) -> str:
    """How many images are right at 0, 1, ..., E exits, as one line per count."""
    counts = np.bincount(difficulty(pred), minlength=pred.num_exits + 1)
    n = max(len(pred.labels), 1)
    lines = ["exits right  images"]
    lines += [f"{k:>11}  {c:>6}  ({100 * c / n:4.1f}%)" for k, c in enumerate(counts)]
    return "\n".join(lines)


def format_budget_curve(curve: BudgetCurve, max_rows: int = 12) -> str:
    """The threshold sweep (at most ``max_rows`` rows, evenly spaced, ends kept) and each exit alone, as text."""
    t = len(curve.thresholds)
    rows = np.unique(np.round(np.linspace(0, t - 1, min(max_rows, t))).astype(int))
    lines = ["anytime: stop at the first exit with confidence >= threshold",
             "threshold  accuracy  mean exit   MMACs"]
    lines += [f"{curve.thresholds[i]:>9.4f}  {100 * curve.accuracy[i]:7.2f}%  {curve.mean_exit[i]:9.2f}  "
              f"{curve.mean_flops[i] / 1e6:6.1f}" for i in rows]
    lines.append("each exit alone:")
    lines += [f"{'exit ' + str(k):>9}  {100 * a:7.2f}%  {k:9d}  {f / 1e6:6.1f}"
              for k, (a, f) in enumerate(zip(curve.exit_accuracy, curve.exit_flops, strict=True), start=1)]
    return "\n".join(lines)
