"""Multi-exit ("anytime") networks such as MSD-Net: every classifier's predictions, tables, budgets, Grad-CAM.

What the MSD-Net Grad-CAM visualiser and its blog show, as functions that return arrays,
strings and Figures (the command line ``eva-utils msd`` and notebook 03 print and plot them):

* ``pred = predict_exits(model, test_loader)``: every exit's probabilities in one forward per batch;
* ``exit_accuracy(pred)``, ``per_class_exit_accuracy(pred)``: the per-classifier table
  (published MSDNet-GCN CIFAR-10 model: 90.8% at exit 1 up to 94.3%, mean 93.5%) and the
  classes x exits table (the blog's "truck" table);
* ``correctness(pred)`` (images x exits) and ``difficulty(pred)`` (how many exits are right);
  ``select_class(pred, "dog", classes)`` for one class;
* ``anytime_predict(pred, threshold)`` and ``budget_curve(pred, exit_costs(model))``: stop at the
  first exit whose softmax confidence reaches a threshold, and accuracy against the average
  number of exits and multiply-adds used, swept over thresholds;
* ``exit_cams(model, images)``: Grad-CAM of each exit for its own prediction, on the
  classifier's input (``model.exit_feature_modules()``); ``plots.show_exit_cams`` draws the
  image x exit grid and ``plots.plot_budget_curve`` the budget curve (figures live in ``plots``).

Exits are numbered from 1 (shallowest) wherever a person reads or passes them: tables,
titles, ``exits=``, the command line. Arrays have one row per exit, so exit ``k`` is row
``k - 1``: ``pred.preds[k - 1]``.

Cost accounting (``exit_costs``): an anytime prediction that stops at exit ``k`` has run
blocks 1..k **and** classifiers 1..k (it needed each earlier classifier's confidence to
decide to go on), so ``anytime[k] = sum(blocks[:k]) + sum(classifiers[:k])``. Running exit
``k`` alone (a fixed-depth network) costs ``single[k] = sum(blocks[:k]) + classifiers[k-1]``,
which is ``model.exit_flops()``. Counts are multiply-adds of Conv2d and Linear layers for
one image (BN, ReLU and pooling are left out, as in the MSD-Net paper's FLOP counts).

Example::

    from eva_utils import data, models, multiexit, plots
    model = models.load_msdnet_gcn_checkpoint("anytime_cifar_10.pth.tar")
    test_set = data.load_sample(train=False)                      # ToTensor() images in [0, 1]
    pred = multiexit.predict_exits(model, data.make_loader(test_set, 256))
    print(multiexit.format_exit_accuracy(multiexit.exit_accuracy(pred)))
    curve = multiexit.budget_curve(pred, multiexit.exit_costs(model))
    fig = plots.plot_budget_curve(curve)

References: Huang et al., "Multi-Scale Dense Networks for Resource Efficient Image
Classification", ICLR 2018 (anytime and budgeted batch classification); Selvaraju et al.,
"Grad-CAM", ICCV 2017; https://github.com/siddsax/VisualizeMSDNet (the visualiser).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from eva_utils.core.errors import UserError, unknown_name
from eva_utils.data.cifar10 import CIFAR10_CLASSES
from eva_utils.evaluation.metrics import Predictions, check_exit, output_probs
from eva_utils.explain.cam import layer_cams
from eva_utils.models.msdnet import MSDNet

__all__ = [
    "AnytimeResult",
    "BLOG_EXITS",
    "BudgetCurve",
    "ExitCosts",
    "ExitPredictions",
    "anytime_predict",
    "budget_curve",
    "class_index",
    "correctness",
    "default_exits",
    "default_thresholds",
    "difficulty",
    "examples_by_difficulty",
    "exit_accuracy",
    "exit_cams",
    "exit_costs",
    "format_budget_curve",
    "format_class_exit_accuracy",
    "format_correctness",
    "format_difficulty_counts",
    "format_exit_accuracy",
    "per_class_exit_accuracy",
    "predict_exits",
    "select_class",
]

#: The exits the blog compares (after blocks 10, 5, 3 and 1), deepest first.
BLOG_EXITS: tuple[int, ...] = (10, 5, 3, 1)


# ----------------------------------------------------------------------------- predictions


class ExitPredictions(NamedTuple):
    """Every exit's outputs over a data set, in data set order.

    Attributes:
        probs: (E, N, C) float32 softmax probabilities, row ``k - 1`` = exit ``k``.
        preds: (E, N) predicted classes.
        labels: (N,) true classes.
        indices: (N,) position of each image in the data set (the test-set index).
    """

    probs: np.ndarray
    preds: np.ndarray
    labels: np.ndarray
    indices: np.ndarray

    @property
    def num_exits(self) -> int:
        """Number of exits E."""
        return int(self.probs.shape[0])

    @property
    def correct(self) -> np.ndarray:
        """(E, N) bool: exit k-1's prediction equals the label."""
        return self.preds == self.labels[None, :]

    @property
    def confidence(self) -> np.ndarray:
        """(E, N) probability each exit gives its own prediction (the max softmax)."""
        return np.take_along_axis(self.probs, self.preds[..., None], axis=2)[..., 0]

    def exit(self, k: int) -> Predictions:
        """Exit ``k`` (1-based) as :class:`~eva_utils.evaluation.Predictions`."""
        k = check_exit(k, self.num_exits)
        return Predictions(self.probs[k - 1], self.preds[k - 1], self.labels, self.indices)

    def subset(self, rows: Sequence[int] | np.ndarray) -> ExitPredictions:
        """The images at ``rows`` (positions in this object, not data set indices)."""
        rows = np.asarray(rows)
        return ExitPredictions(self.probs[:, rows], self.preds[:, rows], self.labels[rows], self.indices[rows])


def _dataset_indices(loader: DataLoader, n: int) -> np.ndarray:
    """Data set positions of a sequential loader's items; a ``Subset`` maps to its parent's indices."""
    dataset = loader.dataset
    if isinstance(dataset, Subset):
        return np.asarray(dataset.indices, dtype=np.int64)[:n]
    return np.arange(n, dtype=np.int64)


def predict_exits(
    model: nn.Module,
    loader: DataLoader,
    device: str | torch.device | None = None,
) -> ExitPredictions:
    """Run a multi-exit model over an unshuffled ``loader``: one forward per batch, all exits kept.

    Args:
        model: returns a list of logits, shallowest first (a single tensor counts as one exit);
            run in eval mode, its mode restored afterwards.
        loader: yields ``(images, labels)`` in data set order, with the inputs the model expects
            (``ToTensor()`` images in [0, 1] for MSDNet-GCN weights).
        device: default the model's own device.

    Returns:
        :class:`ExitPredictions`. ``indices`` are positions in ``loader.dataset``, or in the
        parent data set when ``loader.dataset`` is a ``torch.utils.data.Subset``.

    Raises:
        UserError: a shuffled loader or an empty data set.
    """
    p, y = output_probs(model, loader, device, caller="predict_exits")  # (E, N, C), (N,)
    return ExitPredictions(p, p.argmax(2), y, _dataset_indices(loader, len(y)))


# ----------------------------------------------------------------------------- tables


def exit_accuracy(pred: ExitPredictions) -> np.ndarray:
    """(E,) accuracy of each exit; ``.mean()`` is the "Mean" row of the published table."""
    if len(pred.labels) == 0:
        raise UserError("no images: the selection is empty")
    return pred.correct.mean(axis=1)


def per_class_exit_accuracy(pred: ExitPredictions, num_classes: int | None = None) -> np.ndarray:
    """(C, E) accuracy of every exit on every true class (NaN for a class without images).

    Args:
        pred: from :func:`predict_exits`.
        num_classes: default the width of ``pred.probs``.
    """
    num_classes = pred.probs.shape[2] if num_classes is None else int(num_classes)
    counts = np.bincount(pred.labels, minlength=num_classes)[:num_classes]  # (C,)
    hits = np.stack([np.bincount(pred.labels, weights=c, minlength=num_classes)[:num_classes] for c in pred.correct])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts[None, :] > 0, hits / counts[None, :], np.nan).T  # (C, E)


def correctness(pred: ExitPredictions) -> np.ndarray:
    """(N, E) bool, images x exits: whether exit ``k`` gets image ``i`` right."""
    return pred.correct.T


def difficulty(pred: ExitPredictions) -> np.ndarray:
    """(N,) number of exits that get each image right (the blog's difficulty: high = easy)."""
    return pred.correct.sum(axis=0)


def class_index(name: str | int, classes: Sequence[str]) -> int:
    """The index of class ``name`` (case-insensitive), or an index passed as is.

    Raises:
        UserError: an unknown name (the message lists the valid ones) or an index out of range.
    """
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
        if not 0 <= int(name) < len(classes):
            raise UserError(f"class index {name} is out of range 0..{len(classes) - 1}")
        return int(name)
    lowered = [c.lower() for c in classes]
    key = str(name).strip().lower()
    if key not in lowered:
        raise unknown_name("class", str(name), classes)
    return lowered.index(key)


def select_class(pred: ExitPredictions, name: str | int, classes: Sequence[str] = CIFAR10_CLASSES) -> ExitPredictions:
    """Only the images whose true class is ``name`` (e.g. ``"dog"``), data set indices kept."""
    return pred.subset(np.flatnonzero(pred.labels == class_index(name, classes)))


def examples_by_difficulty(pred: ExitPredictions, n: int = 6) -> np.ndarray:
    """Rows of ``n`` images spread from the hardest to the easiest, for an image x exit grid.

    Images are sorted by difficulty (ties by data set index) and ``n`` are taken at even
    steps, so the grid shows images right at few exits as well as at all of them.

    Returns:
        (min(n, N),) row positions in ``pred``.
    """
    if n < 1:
        raise UserError(f"n must be a positive number of images, got {n}")
    order = np.lexsort((pred.indices, difficulty(pred)))  # hardest first
    if len(order) <= n:
        return order
    return order[np.round(np.linspace(0, len(order) - 1, n)).astype(int)]


# ----------------------------------------------------------------------------- anytime prediction


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

    ``threshold=0`` makes every image stop at exit 1; any threshold above 1 sends every image
    to the last exit.

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


def budget_curve(
    pred: ExitPredictions,
    costs: ExitCosts | None = None,
    thresholds: Iterable[float] | None = None,
) -> BudgetCurve:
    """Sweep the early-exit threshold: accuracy against average exits and multiply-adds.

    The sweep runs on the images in ``pred``, so choosing a threshold from it for a budget is
    optimistic; choose it on held-out images and report accuracy on the test set.

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


# ----------------------------------------------------------------------------- text


def _percent(value: float) -> str:
    return "   -  " if np.isnan(value) else f"{100 * value:5.1f}%"


def format_exit_accuracy(accuracy: Sequence[float] | np.ndarray, flops: Sequence[float] | None = None) -> str:
    """The per-classifier accuracy table with its mean, as text.

    Args:
        accuracy: (E,) from :func:`exit_accuracy`.
        flops: (E,) optional multiply-adds of each exit alone (``ExitCosts.single``), shown in millions.
    """
    acc = np.asarray(accuracy, dtype=np.float64)
    header = "exit  accuracy" + ("   MMACs" if flops is not None else "")
    lines = [header]
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
    for i in rows:
        lines.append(
            f"{curve.thresholds[i]:>9.4f}  {100 * curve.accuracy[i]:7.2f}%  {curve.mean_exit[i]:9.2f}  "
            f"{curve.mean_flops[i] / 1e6:6.1f}"
        )
    lines.append("each exit alone:")
    for k, (a, f) in enumerate(zip(curve.exit_accuracy, curve.exit_flops, strict=True), start=1):
        lines.append(f"{'exit ' + str(k):>9}  {100 * a:7.2f}%  {k:9d}  {f / 1e6:6.1f}")
    return "\n".join(lines)


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


def _num_exits(model: nn.Module) -> int:
    if not hasattr(model, "exit_feature_modules"):
        raise UserError(
            f"{type(model).__name__} has no exit_feature_modules(): per-exit Grad-CAM needs a multi-exit "
            "model such as eva_utils.models.MSDNet"
        )
    return len(model.exit_feature_modules())


def exit_cams(
    model: nn.Module,
    images: torch.Tensor,
    exits: Sequence[int] | None = None,
    targets: Any = None,
    labels: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    method: str = "gradcam",
    batch_size: int = 64,
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

    num_exits = _num_exits(model)
    exits = default_exits(num_exits) if exits is None else tuple(check_exit(k, num_exits) for k in exits)
    if not exits:
        raise UserError("exits is empty: pass at least one exit number")
    taps = model.exit_feature_modules()
    maps = {}
    for k in exits:
        name = f"exit {k}"
        options = dict(targets=targets, method=method, batch_size=batch_size, labels=labels)
        if isinstance(model, MSDNet):  # stop after block k: the same logits for less work
            maps[k] = layer_cams(_FirstExits(model, k), images, {name: taps[k - 1]}, **options)[name]
        else:
            maps[k] = layer_cams(model, images, {name: taps[k - 1]}, output_index=k - 1, **options)[name]
    return maps
