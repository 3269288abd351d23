"""How faithful the maps are: the table of maps x metrics, coloured by rank."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from eva_utils.core.errors import UserError, unknown_name
from eva_utils.explain.faithfulness import BASELINES, HIGHER_IS_BETTER

__all__ = ["plot_faithfulness"]


_METRIC_NAMES = {
    "drop_in_confidence": "drop in\nconfidence", "increase_in_confidence": "increase in\nconfidence",
    "road_morf": "ROAD\nMoRF", "road_lerf": "ROAD\nLeRF", "road_combined": "ROAD\ncombined",
    "deletion_auc": "deletion\nAUC", "insertion_auc": "insertion\nAUC",
}


def plot_faithfulness(table: Mapping[str, Mapping[str, float]], title: str | None = None,
                      row_labels: Mapping[str, str] | None = None) -> Figure:
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
