"""How well a map points at the object, and how alike two sets of maps are: the localisation metrics of CAMs.

``pointing_game(cams, masks)`` is the hit rate of Zhang et al.'s pointing game (a map's maximum on the object),
``pointing_hits`` the hits per image; ``map_correlation(a, b)`` is the Pearson correlation of each pair of maps (the
model-randomisation sanity check of Adebayo et al., 2018). Plain arrays in, arrays out, below ``explain`` so that
any layer above may judge maps with them (the notebooks call ``evaluation.map_correlation``).

References: Zhang et al., "Top-down neural attention by excitation backprop" (the pointing game), ECCV 2016;
Adebayo et al., "Sanity checks for saliency maps", NeurIPS 2018.
"""

from __future__ import annotations

import numpy as np
import torch

from eva_utils.core.errors import UserError

__all__ = ["map_correlation", "pointing_game", "pointing_hits"]


def _numpy(maps: np.ndarray | torch.Tensor) -> np.ndarray:
    """``maps`` as a NumPy array (a tensor is detached and copied to the CPU)."""
    return maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)


def pointing_hits(cams: np.ndarray | torch.Tensor, masks: np.ndarray | torch.Tensor, tolerance: int = 0) -> np.ndarray:
    """For each map, whether its maximum lies on the object (the pointing game, per image).

    Args:
        cams: (N, H, W) maps; the first argmax pixel counts when several pixels tie.
        masks: (N, H, W) booleans, True on the object.
        tolerance: also count a hit when the maximum is within this many pixels (Euclidean) of the object;
            Zhang et al. use 15 pixels at ImageNet scale.

    Returns:
        bool array (N,).
    """
    heat, mask = _numpy(cams), _numpy(masks)
    if heat.ndim == 2:
        heat, mask = heat[None], mask[None]
    if heat.ndim != 3 or heat.shape != mask.shape:
        raise UserError(f"cams and masks must both be (N, H, W) of equal shape, got {heat.shape} and {mask.shape}")
    mask = mask.astype(bool)
    n, height, width = heat.shape
    ys, xs = np.divmod(heat.reshape(n, -1).argmax(axis=1), width)  # (N,), (N,)
    t = max(int(tolerance), 0)
    hits = np.zeros(n, dtype=bool)
    dy, dx = np.mgrid[-t:t + 1, -t:t + 1]
    disk = dy**2 + dx**2 <= t**2  # (2t+1, 2t+1)
    for i, (y, x) in enumerate(zip(ys, xs, strict=True)):
        window = np.zeros_like(disk)
        y0, y1, x0, x1 = max(y - t, 0), min(y + t + 1, height), max(x - t, 0), min(x + t + 1, width)
        window[y0 - y + t:y1 - y + t, x0 - x + t:x1 - x + t] = mask[i, y0:y1, x0:x1]
        hits[i] = bool((window & disk).any())
    return hits


def pointing_game(cams: np.ndarray | torch.Tensor, masks: np.ndarray | torch.Tensor, tolerance: int = 0) -> float:
    """Fraction of maps whose maximum lies on the object: a CAM localisation score in [0, 1].

    Args:
        cams: (N, H, W) maps, e.g. ``layer_cams(...)["layer4"]``.
        masks: (N, H, W) booleans, True on the object.
        tolerance: pixels of slack around the object, see :func:`pointing_hits`.

    Returns:
        The hit rate; see :func:`pointing_hits` for the per-image hits.
    """
    return float(pointing_hits(cams, masks, tolerance).mean())


def map_correlation(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> np.ndarray:
    """Pearson correlation of each pair of maps: (N,) in [-1, 1], NaN where a map is constant (all zero).

    For comparing two sets of maps of the same images: the trained and a randomly initialised
    network's (the model-randomisation sanity check of Adebayo et al., 2018), two layers, two methods.
    """
    x, y = _numpy(a).astype(np.float64), _numpy(b).astype(np.float64)
    if x.shape != y.shape or x.ndim != 3:
        raise UserError(f"map_correlation needs two (N, H, W) arrays of the same shape, got {x.shape} and {y.shape}")
    x, y = x.reshape(len(x), -1), y.reshape(len(y), -1)  # (N, H*W)
    x, y = x - x.mean(1, keepdims=True), y - y.mean(1, keepdims=True)
    norm = np.sqrt((x * x).sum(1) * (y * y).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, (x * y).sum(1) / norm, np.nan)
