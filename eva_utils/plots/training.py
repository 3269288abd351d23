"""Figures of a training run: the loss, accuracy and learning-rate curves, the LR range test."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from eva_utils.core.errors import UserError

if TYPE_CHECKING:
    from eva_utils.training.lr_finder import LRFinderResult

__all__ = ["plot_history", "plot_lr_finder", "plot_lr_schedule"]


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


def plot_lr_finder(result: LRFinderResult) -> Figure:
    """The LR range test: smoothed loss against the learning rate (log scale), the suggestion in red.

    Args:
        result: what :func:`eva_utils.training.find_lr` returned; drawn without the points it skipped at both ends.
    """
    lrs, losses, best = result.window()  # the rates and smoothed losses the suggestion was chosen from
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    ax.plot(lrs, losses)
    ax.scatter([lrs[best]], [losses[best]], color="red", zorder=3, label=f"steepest descent: {lrs[best]:.2e}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="loss (smoothed)", title="LR range test")
    ax.legend()
    return fig


def plot_lr_schedule(lrs: Sequence[float], steps_per_epoch: int, title: str = "learning rate per step") -> Figure:
    """The learning rate of every step (``training.lr_schedule``) against the epoch, the peak marked in red."""
    epochs = [i / steps_per_epoch for i in range(len(lrs))]
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(epochs, lrs)
    ax.scatter([epochs[peak]], [lrs[peak]], color="red", zorder=3, label=f"peak {lrs[peak]:.3g} at epoch {epochs[peak]:.1f}")
    ax.set(xlabel="epoch", ylabel="learning rate", title=title)
    ax.legend()
    return fig
