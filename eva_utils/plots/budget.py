"""MSD-Net's budget curve: anytime accuracy against the exits used and the compute spent."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

if TYPE_CHECKING:  # for annotations only
    from eva_utils.explain.multiexit import BudgetCurve

__all__ = ["plot_budget_curve"]


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
