"""How much each CAM explains the decision: perturb the image where the map points, watch the confidence.

``cam_faithfulness(model, images, cams)`` scores every map ``layer_cams`` returned (any layer, any method) with the
same metrics, beside two maps that know nothing about the model, so a reader sees what "better than chance" means::

    cams = layer_cams(model, images, resnet_layers(model))           # {"layer0": (N, H, W), ...}
    table = cam_faithfulness(model, images, cams)                    # {"layer0": {"deletion_auc": 0.31, ...},
                                                                     #  ..., "random": {...}, "centre": {...}}
    plots.plot_faithfulness(table)

Every score is about the *confidence* of the explained class: its softmax probability (pytorch-grad-cam's
``ClassifierOutputSoftmaxTarget``), or whatever pytorch-grad-cam target callables you pass.

===========================  ======  ==================================================================
metric                       better  what is done to the image
===========================  ======  ==================================================================
``drop_in_confidence``       lower   image x map (pytorch-grad-cam ``DropInConfidence``): max(0, before - after)
``increase_in_confidence``   higher  the same image: 1 where the confidence rose (``IncreaseInConfidence``)
``road_morf``                lower   ROAD, most relevant first: the top 10..90% of pixels imputed from their
                                     neighbours (pytorch-grad-cam ``ROADMostRelevantFirstAverage``), after - before
``road_lerf``                higher  ROAD, least relevant first (``ROADLeastRelevantFirstAverage``)
``road_combined``            higher  (lerf - morf) / 2 (``ROADCombined``)
``deletion_auc``             lower   Petsiuk et al. 2018: pixels replaced by the baseline in the map's order,
                                     most important first; area under confidence vs fraction removed
``insertion_auc``            higher  the reverse: from the baseline image, the image's pixels revealed in order
===========================  ======  ==================================================================

The first five use pytorch-grad-cam's own perturbations (``multiply_tensor_with_cam``, ``RemoveMostRelevantFirst`` /
``RemoveLeastRelevantFirst`` with its ``NoisyLinearImputer``) and equal its metric classes within 1e-5 on the same
inputs and seed; here the model runs batched, and the confidence before perturbation once per image. Deletion and
insertion follow RISE's evaluation code: deletion replaces pixels by 0 in normalised space (the data set's mean
colour), insertion starts from a Gaussian blur of the image (kernel 11, sigma 5) and reveals the image; ``steps + 1``
points from 0% to 100%, trapezoid area. Ties in a map are broken by pixel order (row-major).

Baselines: ``random`` (uniform noise on an 8 x 8 grid, upsampled, a new map per image from ``seed``; see
:func:`baseline_maps`) and ``centre`` (a cone peaking at the image centre, the same for every image: CIFAR objects
sit mostly in the middle, so a map can look right by pointing there). A CAM no better than these explains nothing.
ROAD's imputation noise (pytorch-grad-cam's 0.01 x randn) is drawn from ``seed`` under a forked torch RNG, so the
scores repeat and the caller's random state is not touched.

References: Petsiuk, Das, Saenko, "RISE", BMVC 2018; Rong et al., "A Consistent and Efficient Evaluation Strategy for
Attribution Methods" (ROAD), ICML 2022; Chattopadhyay et al., "Grad-CAM++", WACV 2018 (drop / increase in confidence).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from eva_utils.core.checks import positive_int
from eva_utils.core.devices import eval_mode, model_device_dtype
from eva_utils.core.errors import UserError, unknown_name
from eva_utils.evaluation.metrics import as_image_batch
from eva_utils.explain.targets import Target, check_classes, class_scores, fill_predicted, normalise_targets, target_callables

__all__ = ["BASELINES", "HIGHER_IS_BETTER", "METRICS", "baseline_maps", "cam_faithfulness"]

METRICS: tuple[str, ...] = (
    "drop_in_confidence", "increase_in_confidence", "road_morf", "road_lerf", "road_combined", "deletion_auc",
    "insertion_auc",
)
HIGHER_IS_BETTER: dict[str, bool] = {
    "drop_in_confidence": False, "increase_in_confidence": True, "road_morf": False, "road_lerf": True,
    "road_combined": True, "deletion_auc": False, "insertion_auc": True,
}
BASELINES: tuple[str, ...] = ("random", "centre")
ROAD_PERCENTILES: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)  # pytorch-grad-cam's defaults
_SUBSTRATES = ("mean", "blur")
RANDOM_CELLS = 8  # the random baseline's grid (see baseline_maps)

# ----------------------------------------------------------------------------- inputs


def _check_metrics(metrics: Sequence[str] | str) -> list[str]:
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise UserError(f"metrics is empty: pass some of {', '.join(METRICS)}")
    for name in names:
        if name not in METRICS:
            raise unknown_name("faithfulness metric", name, METRICS)
    return list(dict.fromkeys(names))


def _check_maps(cams: Mapping[str, Any] | np.ndarray | torch.Tensor, shape: tuple[int, int, int],
                baselines: Sequence[str]) -> dict[str, np.ndarray]:
    """``cams`` as name -> float32 (N, H, W) in [0, 1], checked against the images' (N, H, W)."""
    named = dict(cams) if isinstance(cams, Mapping) else {"map": cams}
    if not named:
        raise UserError("cams is empty: pass layer_cams(...)'s dict, or one (N, H, W) array")
    clash = sorted(set(named) & set(baselines))
    if clash:
        raise UserError(f"a map is named {clash[0]!r}, like a baseline: rename it, or pass baselines=()")
    checked = {}
    for name, m in named.items():
        arr = (m.detach().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m)).astype(np.float32)
        if arr.shape != shape:
            raise UserError(f"map {name!r} has shape {arr.shape}, but the images need one (H, W) map each: {shape} "
                            "(layer_cams returns maps at the input's resolution)")
        if not np.isfinite(arr).all() or arr.min() < -1e-4 or arr.max() > 1 + 1e-4:
            raise UserError(f"map {name!r} must hold values in [0, 1] (as layer_cams returns); "
                            f"it spans [{np.nanmin(arr):.3g}, {np.nanmax(arr):.3g}]")
        checked[str(name)] = np.clip(arr, 0.0, 1.0)
    return checked


def baseline_maps(n: int, height: int, width: int, seed: int = 0, cells: int = RANDOM_CELLS) -> dict[str, np.ndarray]:
    """The maps that know nothing of the model: ``random`` (one per image) and ``centre`` (the same cone for all).

    ``random`` is uniform noise on a ``cells`` x ``cells`` grid, upsampled bilinearly and min-max scaled: blobs
    as coarse as a CAM's. Noise per pixel would not be a fair chance level: deleting scattered pixels ruins an
    image faster than deleting any region (on the shipped model, 200 test images: deletion AUC 0.17 for
    per-pixel noise, 0.52 for 8 x 8 noise, 0.40 for layer4's Grad-CAM), so it would "beat" every CAM.

    Returns:
        ``{"random": (N, H, W), "centre": (N, H, W)}``, float32 in [0, 1].
    """
    grid = torch.from_numpy(np.random.default_rng(seed).random((n, 1, cells, cells), dtype=np.float32))
    noise = torch.nn.functional.interpolate(grid, size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    low, high = noise.amin((1, 2), keepdim=True), noise.amax((1, 2), keepdim=True)
    random = ((noise - low) / (high - low).clamp_min(1e-12)).numpy()
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    dist = np.hypot(ys - (height - 1) / 2, xs - (width - 1) / 2)
    centre = (1.0 - dist / dist.max()).astype(np.float32) if dist.max() > 0 else np.ones((height, width), np.float32)
    return {"random": random.astype(np.float32), "centre": np.broadcast_to(centre, (n, height, width)).copy()}


# ----------------------------------------------------------------------------- the model's confidence


def _target_scores(out: torch.Tensor, targets: Sequence[Target]) -> np.ndarray:
    """float32 (M,): ``targets[m](out[m])``, as pytorch-grad-cam's metrics compute it (softmax targets in one gather)."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    if all(type(t) is ClassifierOutputSoftmaxTarget for t in targets):  # the common case
        classes = torch.as_tensor([t.category for t in targets], device=out.device)
        return out.softmax(-1).gather(1, classes[:, None])[:, 0].cpu().numpy().astype(np.float32)
    return np.float32([t(o).cpu().numpy() for t, o in zip(targets, out, strict=True)])


class _Scorer:
    """The explained score of perturbed images, batched on the model's device (eval mode, no gradients)."""

    def __init__(self, model: nn.Module, targets: list[Target], batch_size: int, output_index: int | str | None):
        self.model, self.targets, self.batch_size, self.output_index = model, targets, batch_size, output_index
        self.device, _ = model_device_dtype(model)

    def scores(self, images: torch.Tensor, rows: Sequence[int]) -> np.ndarray:
        """float32 (M,): the score of ``targets[rows[m]]`` for images[m]."""
        out = torch.cat(class_scores(self.model, images, self.batch_size, self.output_index))  # (M, K)
        return _target_scores(out, [self.targets[r] for r in rows])


# ----------------------------------------------------------------------------- the metrics


def _road(images: torch.Tensor, maps: np.ndarray, most_relevant_first: bool,
          percentiles: Sequence[int]) -> Iterator[torch.Tensor]:
    """For each percentile, every image with that share of pixels imputed (pytorch-grad-cam's own perturbations).

    Percentile-major, as pytorch-grad-cam's AveragerAcrossThresholds, so the imputer draws its noise in the same order.
    """
    from pytorch_grad_cam.metrics.perturbation_confidence import RemoveLeastRelevantFirst, RemoveMostRelevantFirst
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    remove = RemoveMostRelevantFirst if most_relevant_first else RemoveLeastRelevantFirst
    for percentile in percentiles:
        perturb = remove(percentile, NoisyLinearImputer())
        with warnings.catch_warnings():  # its np.float32(tensor < threshold): NumPy 2's __array_wrap__ notice
            warnings.filterwarnings("ignore", message="__array_wrap__", category=DeprecationWarning)
            yield torch.stack([perturb(img, torch.from_numpy(m)) for img, m in zip(images, maps, strict=True)])


def _substrate(images: torch.Tensor, kind: str) -> torch.Tensor:
    """What removed pixels become: ``mean`` (0 in normalised space) or ``blur`` (RISE's Gaussian, kernel 11, sigma 5)."""
    if kind == "mean":
        return torch.zeros_like(images)
    from torchvision.transforms.functional import gaussian_blur

    side = min(images.shape[-2:])
    kernel = min(11, side if side % 2 else side - 1)
    return gaussian_blur(images, [kernel, kernel], [5.0, 5.0])


def _pixel_curves(scorer: _Scorer, images: torch.Tensor, maps: np.ndarray, rows: np.ndarray, substrate: torch.Tensor,
                  insertion: bool, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Deletion (or insertion) curves of images (B, C, H, W): confidence after 0, 1/steps, ..., all pixels.

    Returns:
        fractions (S+1,) of pixels removed (revealed) and curves (B, S+1).
    """
    b, _, h, w = images.shape
    order = np.argsort(-maps.reshape(b, -1), axis=1, kind="stable")  # most important first
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(h * w)[None].repeat(b, 0), axis=1)  # rank of each pixel (B, HW)
    counts = np.round(np.linspace(0, h * w, steps + 1)).astype(np.int64)  # pixels changed at each point
    rank_t = torch.from_numpy(rank).to(images.device).view(b, 1, 1, h, w)
    counts_t = torch.from_numpy(counts).to(images.device).view(1, -1, 1, 1, 1)
    changed = rank_t < counts_t  # (B, S+1, 1, H, W)
    start, end = (substrate, images) if insertion else (images, substrate)
    perturbed = torch.where(changed, end[:, None], start[:, None])  # (B, S+1, C, H, W)
    scores = scorer.scores(perturbed.flatten(0, 1), np.repeat(rows, steps + 1))
    return counts / (h * w), scores.reshape(b, steps + 1)


class _Options(NamedTuple):
    """How the perturbation metrics run (cam_faithfulness's keyword arguments, checked)."""

    steps: int
    road_percentiles: tuple[int, ...]
    deletion_baseline: str
    insertion_baseline: str


def _check_options(baselines: Sequence[str], steps: int, road_percentiles: Sequence[int], deletion_baseline: str,
                   insertion_baseline: str) -> _Options:
    for what, kind in (("deletion_baseline", deletion_baseline), ("insertion_baseline", insertion_baseline)):
        if kind not in _SUBSTRATES:
            raise unknown_name(what, kind, _SUBSTRATES)
    for base in baselines:
        if base not in BASELINES:
            raise unknown_name("baseline", base, BASELINES)
    return _Options(positive_int(steps, "steps"), _percentiles(road_percentiles), deletion_baseline, insertion_baseline)


def _percentiles(values: Sequence[int]) -> tuple[int, ...]:
    """ROAD's thresholds: a non-empty sequence of numbers from 0 to 100."""
    items = tuple(values) if isinstance(values, (Sequence, np.ndarray)) and not isinstance(values, str) else None
    bad = [v for v in items or () if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating))
           or not 0 <= v <= 100]
    if not items or bad:
        what = f"{bad[0]!r} is not a percentage from 0 to 100" if bad else f"got {values!r}"
        raise UserError(f"road_percentiles must be a non-empty list of percentages from 0 to 100, such as "
                        f"(10, 20, ..., 90); {what}", param="road_percentiles")
    return items


def _confidence_change(scorer: _Scorer, x: torch.Tensor, m: np.ndarray, before: np.ndarray) -> dict[str, np.ndarray]:
    """Drop and increase in confidence (pytorch-grad-cam's CamMultImage family) of images (N, C, H, W) x map."""
    from pytorch_grad_cam.metrics.cam_mult_image import multiply_tensor_with_cam

    perturbed = torch.stack([multiply_tensor_with_cam(img, torch.from_numpy(c)) for img, c in zip(x, m, strict=True)])
    change = scorer.scores(perturbed, np.arange(len(x))) - before  # (N,)
    return {"drop_in_confidence": np.maximum(-change, 0), "increase_in_confidence": np.float32(change > 0)}


def _road_scores(scorer: _Scorer, x: torch.Tensor, m: np.ndarray, before: np.ndarray, names: set[str],
                 percentiles: Sequence[int]) -> dict[str, np.ndarray]:
    """ROAD's least- and most-relevant-first averages over ``percentiles`` and their combination, as asked."""
    rows = np.arange(len(x))

    def average(most_relevant_first: bool) -> np.ndarray:  # (N,)
        return np.mean([scorer.scores(p, rows) - before for p in _road(x, m, most_relevant_first, percentiles)],
                       axis=0, dtype=np.float32)

    scores = {}
    if {"road_lerf", "road_combined"} & names:  # LeRF first, as ROADCombined draws its noise
        scores["road_lerf"] = average(False)
    if {"road_morf", "road_combined"} & names:
        scores["road_morf"] = average(True)
    if "road_combined" in names:
        scores["road_combined"] = (scores["road_lerf"] - scores["road_morf"]) / 2
    return scores


def _pixel_auc(scorer: _Scorer, x: torch.Tensor, m: np.ndarray, insertion: bool, kind: str, steps: int) -> np.ndarray:
    """Deletion (or insertion) AUC of each image (N,), a few images' curves per batch of the model."""
    n = len(x)
    rows = np.arange(n)
    aucs = np.empty(n, np.float32)
    chunk = max(1, scorer.batch_size // (steps + 1))  # images whose curves fit in about one batch
    for i in range(0, n, chunk):
        xi = x[i:i + chunk].to(scorer.device)
        fractions, curves = _pixel_curves(scorer, xi, m[i:i + chunk], rows[i:i + chunk], _substrate(xi, kind),
                                          insertion, steps)
        aucs[i:i + chunk] = ((curves[:, 1:] + curves[:, :-1]) / 2 * np.diff(fractions)).sum(1)  # trapezoid area
    return aucs


def _map_scores(scorer: _Scorer, x: torch.Tensor, m: np.ndarray, before: np.ndarray, names: list[str],
                options: _Options) -> dict[str, np.ndarray]:
    """Every asked metric of one map (N, H, W), per image, in the order of ``names``."""
    wanted = set(names)
    scores: dict[str, np.ndarray] = {}
    if {"drop_in_confidence", "increase_in_confidence"} & wanted:
        scores.update(_confidence_change(scorer, x, m, before))
    scores.update(_road_scores(scorer, x, m, before, wanted, options.road_percentiles))
    if "deletion_auc" in wanted:
        scores["deletion_auc"] = _pixel_auc(scorer, x, m, False, options.deletion_baseline, options.steps)
    if "insertion_auc" in wanted:
        scores["insertion_auc"] = _pixel_auc(scorer, x, m, True, options.insertion_baseline, options.steps)
    return {metric: scores[metric] for metric in names}


def cam_faithfulness(
    model: nn.Module, images: torch.Tensor | np.ndarray, cams: Mapping[str, Any] | np.ndarray | torch.Tensor,
    targets: Any = None, metrics: Sequence[str] | str = METRICS, batch_size: int = 64, *,
    baselines: Sequence[str] = BASELINES, steps: int = 32, road_percentiles: Sequence[int] = ROAD_PERCENTILES,
    deletion_baseline: str = "mean", insertion_baseline: str = "blur", seed: int = 0,
    output_index: int | str | None = None, per_image: bool = False,
) -> dict[str, dict[str, float]] | dict[str, dict[str, np.ndarray]]:
    """How faithful each map is to the model's decision: ``{map name: {metric: mean over images}}``.

    Args:
        model: a classifier; run in eval mode without gradients on its own device, left as found.
        images: normalised float (N, C, H, W), the images the maps explain.
        cams: ``layer_cams``'s dict name -> (N, H, W) in [0, 1] (any layers, any method), or one array.
        targets: what the maps explain: ``None`` the predicted class (as ``layer_cams``); one class per image
            (or one for all); pytorch-grad-cam target callables. A class index scores its softmax probability.
        metrics: some of :data:`METRICS` (see the module's table; :data:`HIGHER_IS_BETTER` gives the direction).
        batch_size: images per forward pass.
        baselines: model-free maps scored alongside: ``random`` and/or ``centre`` (``()`` for none).
        steps: points of the deletion and insertion curves, after the first (32: 1/32 of the pixels per step).
        road_percentiles: ROAD's thresholds (pytorch-grad-cam's 10..90).
        deletion_baseline: what deleted pixels become: ``mean`` (0 after normalisation, RISE) or ``blur``.
        insertion_baseline: what insertion starts from: ``blur`` (RISE) or ``mean``.
        seed: ROAD's noise and the random baseline.
        output_index: which output of a multi-output model is explained (as in ``layer_cams``).
        per_image: return every image's value (float32 (N,) arrays) instead of the means.

    Returns:
        The maps in the order given, then the baselines.

    Raises:
        UserError: unknown metric or baseline, maps that do not fit the images or leave [0, 1], bad targets.
    """
    names = _check_metrics(metrics)
    options = _check_options(baselines, steps, road_percentiles, deletion_baseline, insertion_baseline)
    batch_size = positive_int(batch_size, "batch_size")
    x = as_image_batch(model, images).detach().float().cpu()  # (N, C, H, W); perturbed on the CPU as pytorch-grad-cam does
    n, _, h, w = x.shape
    wanted = normalise_targets(targets, None, n)
    maps = _check_maps(cams, (n, h, w), baselines)
    maps.update({k: v for k, v in baseline_maps(n, h, w, seed).items() if k in baselines})

    with eval_mode(model), torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # ROAD's imputation noise; the caller's RNG is restored after
        out = torch.cat(class_scores(model, x, batch_size, output_index))  # (N, K) the clean images' outputs, once
        check_classes(wanted, out.shape[1])
        fns = target_callables(fill_predicted(wanted, out.argmax(1).cpu()), softmax=True)  # class -> its probability
        scorer = _Scorer(model, fns, batch_size, output_index)
        before = _target_scores(out, fns)  # (N,)
        table = {name: _map_scores(scorer, x, m, before, names, options) for name, m in maps.items()}
    if per_image:
        return table
    return {name: {metric: float(values.mean()) for metric, values in scores.items()} for name, scores in table.items()}
