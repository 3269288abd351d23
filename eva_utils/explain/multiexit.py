"""Multi-exit ("anytime") networks such as MSD-Net: every classifier's predictions, tables, budgets, Grad-CAM.

What the MSD-Net Grad-CAM visualiser and its blog show, as functions returning arrays, strings and Figures (the
command line ``eva-utils msd`` and notebook 03 print and plot them):

* ``pred = predict_exits(model, test_loader)``: every exit's probabilities in one forward per batch;
* ``exit_accuracy(pred)``, ``per_class_exit_accuracy(pred)``: the per-classifier table (published MSDNet-GCN CIFAR-10
  model: 90.8% at exit 1 up to 94.3%, mean 93.5%) and the classes x exits table (the blog's "truck" table);
* ``correctness(pred)`` (images x exits), ``difficulty(pred)`` (how many exits are right), ``select_class(pred, "dog",
  classes)``; predictions and tables live in :mod:`eva_utils.explain.exits`, as text in :mod:`~.exit_text`;
* ``anytime_predict(pred, threshold)`` and ``budget_curve(pred, exit_costs(model))`` (:mod:`eva_utils.explain.budgets`):
  stop at the first exit whose softmax confidence reaches a threshold; accuracy against exits and multiply-adds used;
* ``exit_cams(model, images)`` (here): Grad-CAM of each exit for its own prediction, on the classifier's input
  (``model.exit_feature_modules()``); ``plots.show_exit_cams`` and ``plots.plot_budget_curve`` draw them.

Exits are numbered from 1 (shallowest) wherever a person reads or passes them; arrays have one row per exit, so exit
``k`` is row ``k - 1``: ``pred.preds[k - 1]``.

Cost accounting (``exit_costs``): an anytime prediction that stops at exit ``k`` has run blocks 1..k **and**
classifiers 1..k (it needed each earlier confidence to go on): ``anytime[k] = sum(blocks[:k]) + sum(classifiers[:k])``.
Running exit ``k`` alone costs ``single[k] = sum(blocks[:k]) + classifiers[k-1]``, which is ``model.exit_flops()``.
Counts are multiply-adds of Conv2d and Linear layers for one image (as in the MSD-Net paper's FLOP counts).

Example::

    from eva_utils import data, models, multiexit, plots
    model = models.load_msdnet_gcn_checkpoint("anytime_cifar_10.pth.tar")
    test_set = data.load_sample(train=False)                      # ToTensor() images in [0, 1]
    pred = multiexit.predict_exits(model, data.make_loader(test_set, 256))
    print(multiexit.format_exit_accuracy(multiexit.exit_accuracy(pred)))
    curve = multiexit.budget_curve(pred, multiexit.exit_costs(model))
    fig = plots.plot_budget_curve(curve)

References: Huang et al., "Multi-Scale Dense Networks for Resource Efficient Image Classification", ICLR 2018;
Selvaraju et al., "Grad-CAM", ICCV 2017; https://github.com/siddsax/VisualizeMSDNet (the visualiser).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from eva_utils.core.errors import UserError
from eva_utils.evaluation.metrics import check_exit
from eva_utils.explain.budgets import (
    AnytimeResult,
    BudgetCurve,
    ExitCosts,
    anytime_predict,
    budget_curve,
    default_thresholds,
    exit_costs,
)
from eva_utils.explain.cam import layer_cams
from eva_utils.explain.exit_text import (
    format_budget_curve,
    format_class_exit_accuracy,
    format_correctness,
    format_difficulty_counts,
    format_exit_accuracy,
)
from eva_utils.explain.exits import (
    ExitPredictions,
    class_index,
    correctness,
    difficulty,
    examples_by_difficulty,
    exit_accuracy,
    per_class_exit_accuracy,
    predict_exits,
    select_class,
)
from eva_utils.models.msdnet_model import MSDNet

__all__ = ["AnytimeResult", "BLOG_EXITS", "BudgetCurve", "ExitCosts", "ExitPredictions", "anytime_predict", "budget_curve",
           "class_index", "correctness", "default_exits", "default_thresholds", "difficulty", "examples_by_difficulty",
           "exit_accuracy", "exit_cams", "exit_costs", "format_budget_curve", "format_class_exit_accuracy",
           "format_correctness", "format_difficulty_counts", "format_exit_accuracy", "per_class_exit_accuracy",
           "predict_exits", "select_class"]

#: The exits the blog compares (after blocks 10, 5, 3 and 1), deepest first.
BLOG_EXITS: tuple[int, ...] = (10, 5, 3, 1)


# ----------------------------------------------------------------------------- Grad-CAM per exit


def default_exits(num_exits: int, preferred: Sequence[int] = BLOG_EXITS) -> tuple[int, ...]:
    """The blog's exits 10, 5, 3, 1, each clipped to ``num_exits``, duplicates dropped (3 exits: (3, 1))."""
    return tuple(dict.fromkeys(min(int(k), num_exits) for k in preferred))


class _FirstExits(nn.Module):
    """Runs only the first ``k`` blocks of an MSD-Net and returns exit ``k``'s logits (N, num_classes)."""

    def __init__(self, model: nn.Module, k: int) -> None:
        super().__init__()
        self.model = model
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, num_exits=self.k)[-1]


def exit_cams(
    model: nn.Module, images: torch.Tensor, exits: Sequence[int] | None = None, targets: Any = None,
    labels: Sequence[int] | np.ndarray | torch.Tensor | None = None, method: str = "gradcam", batch_size: int = 64,
) -> dict[int, np.ndarray]:
    """Grad-CAM of each chosen exit, on that exit's classifier input.

    For exit ``k`` this is :func:`eva_utils.cam.layer_cams` on ``model.exit_feature_modules()[k - 1]``
    (the coarsest-scale map of block ``k``) explaining output ``k - 1``; only blocks 1..k run.

    Args:
        model: a multi-exit model with ``exit_feature_modules()`` (e.g. an MSD-Net).
        images: (N, C, H, W) as the model expects them (``ToTensor()`` in [0, 1] for MSDNet-GCN weights).
        exits: 1-based exits; default :func:`default_exits` (the blog's 10, 5, 3, 1, clipped).
        targets: ``None``: each exit explains **its own** prediction; ``"true"``: the ``labels``;
            one class index per image (or one for all): every exit explains that class.
        labels: (N,) true classes, for ``targets="true"``.
        method: a :data:`eva_utils.cam.CAM_METHODS` name.
        batch_size: images per forward/backward pass.

    Returns:
        Dict exit -> float32 (N, H, W) maps in [0, 1], in the order of ``exits``.
    """
    if not hasattr(model, "exit_feature_modules"):
        raise UserError(f"{type(model).__name__} has no exit_feature_modules(): per-exit Grad-CAM needs a multi-exit "
                        "model such as eva_utils.models.MSDNet")
    taps = model.exit_feature_modules()
    exits = default_exits(len(taps)) if exits is None else tuple(check_exit(k, len(taps)) for k in exits)
    if not exits:
        raise UserError("exits is empty: pass at least one exit number")
    options = dict(targets=targets, method=method, batch_size=batch_size, labels=labels)
    maps = {}
    for k in exits:
        name = f"exit {k}"
        if isinstance(model, MSDNet):  # stop after block k: the same logits for less work
            maps[k] = layer_cams(_FirstExits(model, k), images, {name: taps[k - 1]}, **options)[name]
        else:
            maps[k] = layer_cams(model, images, {name: taps[k - 1]}, output_index=k - 1, **options)[name]
    return maps
