"""What to explain: the package's one parser of ``targets=`` / ``labels=``, class checks, predicted classes.

``normalise_targets(targets, labels, n)`` turns what a caller asked for (``None``, ``"pred"``, ``"true"``, class
indices, pytorch-grad-cam target callables) into one entry per image; ``check_classes`` checks them against the
model's classes; ``fill_predicted`` puts the predicted classes in when nothing was asked; ``target_callables``
makes pytorch-grad-cam targets of them. ``class_scores``, ``class_probs`` and ``predict_targets`` run the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from eva_utils.core.errors import UserError
from eva_utils.evaluation.metrics import as_image_batch, forward_batches, select_output

__all__ = ["Target", "Targets", "check_classes", "class_probs", "class_scores", "explains_labels", "fill_predicted",
           "is_int", "normalise_targets", "predict_targets", "target_callables"]

Target = Callable[[torch.Tensor], torch.Tensor]  # pytorch-grad-cam's: one image's output (K,) -> its score
Targets = str | int | Sequence[Any] | np.ndarray | torch.Tensor | Target | None


def _as_int_array(values: Any, what: str) -> np.ndarray:
    """Class indices as a 1-D int64 array; a ``UserError`` for floats, matrices or junk."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    try:
        array = np.asarray(values)
    except Exception:  # ragged lists and the like
        raise UserError(f"{what} must be class indices, one per image") from None
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.bool_)):
        raise UserError(f"{what} must be a 1-D sequence of integer class indices, one per image; got "
                        f"dtype {array.dtype} shape {array.shape} (one-hot or scores? use .argmax(1))")
    return array.astype(np.int64)


def is_int(value: Any) -> bool:
    """Whether ``value`` is one integer class index (a Python or NumPy int, or a 0-d integer tensor; not a bool)."""
    if isinstance(value, torch.Tensor):
        return value.ndim == 0 and not value.is_floating_point() and not value.is_complex()
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def normalise_targets(targets: Targets, labels: Any, n: int) -> list[Any] | None:
    """What to explain, one entry per image: an int class index or a pytorch-grad-cam target callable.

    The package's one reading of ``targets=`` (``layer_cams``, ``cam_faithfulness``, ``exit_cams``, the tracker).

    Args:
        targets: ``None`` / ``"pred"`` (the predicted class), ``"true"`` (the ``labels``), one class index or target
            callable for every image, or one per image (class indices as a list, array or tensor; or callables).
        labels: the true classes (N,), for ``targets="true"``.
        n: the number of images.

    Returns:
        ``None`` for the predicted classes (see :func:`fill_predicted`), else a list of ``n`` entries.

    Raises:
        UserError: an unknown string, floats or one-hot rows, or not one target per image.
    """
    if targets is None or (isinstance(targets, str) and targets.lower() in ("pred", "predicted")):
        return None
    if isinstance(targets, str):
        if targets.lower() != "true":
            raise UserError(f"targets={targets!r} is not understood: use None (predicted class), 'true' (with labels=), "
                            f"class indices (one per image) or pytorch-grad-cam targets such as ClassifierOutputTarget(3)")
        if labels is None:
            raise UserError("targets='true' needs the labels: pass labels= too, e.g. "
                            "layer_cams(..., targets='true', labels=labels)", param="labels")
        array = _as_int_array(labels, "labels")
        if len(array) != n:
            raise UserError(f"got {len(array)} labels for {n} images; pass one label per image")
        return [int(c) for c in array]
    if is_int(targets):
        return [int(targets)] * n  # one class for every image
    if callable(targets) and not isinstance(targets, (torch.Tensor, np.ndarray)):
        return [targets] * n  # one target callable for every image
    if isinstance(targets, (torch.Tensor, np.ndarray)):
        entries: list[Any] = [int(c) for c in _as_int_array(targets, "targets")]
    elif isinstance(targets, Iterable):
        entries = [int(t) if is_int(t) else t for t in targets]
        bad = [t for t in entries if not is_int(t) and not callable(t)]
        if bad:
            raise UserError(f"each target must be a class index or a pytorch-grad-cam target callable, got {bad[0]!r}")
    else:
        raise UserError(f"targets must be None, 'true', class indices or target callables, got {type(targets).__name__}")
    if len(entries) != n:
        raise UserError(f"got {len(entries)} targets for {n} images; pass exactly one target per image "
                        f"(pytorch-grad-cam would silently use only the first {min(len(entries), n)})")
    return entries


def explains_labels(targets: Targets) -> bool:
    """Whether ``targets`` asks for the true classes (``"true"``): errors then speak of labels."""
    return isinstance(targets, str) and targets.lower() == "true"


def check_classes(targets: list[Any] | None, num_classes: int, from_labels: bool = False) -> None:
    """A ``UserError`` if a class index (or a target callable's ``category``) is not in 0..num_classes-1."""
    if targets is None:
        return
    classes = [t if isinstance(t, int) else getattr(t, "category", None) for t in targets]
    bad = [c for c in classes if is_int(c) and not 0 <= int(c) < num_classes]
    if bad:
        what = "label" if from_labels else "target class index"
        raise UserError(f"{what} {bad[0]} is out of range: class {bad[0]} does not exist, the model has {num_classes} "
                        f"classes (0..{num_classes - 1})")


def fill_predicted(targets: list[Any] | None, preds: Iterable[Any]) -> list[Any]:
    """``targets``, or the predicted classes (int each) when ``targets`` is ``None`` (nothing asked for)."""
    return [int(c) for c in preds] if targets is None else targets


def target_callables(targets: list[Any], softmax: bool = False) -> list[Target]:
    """pytorch-grad-cam target callables: a class index becomes ``ClassifierOutputTarget`` (its logit) or,
    with ``softmax``, ``ClassifierOutputSoftmaxTarget`` (its probability); callables are kept."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

    make = ClassifierOutputSoftmaxTarget if softmax else ClassifierOutputTarget
    return [make(t) if isinstance(t, int) else t for t in targets]


def predict_targets(model: nn.Module, images: torch.Tensor | np.ndarray, batch_size: int = 64,
                    output_index: int | str | None = None) -> np.ndarray:
    """The predicted class of each image (what ``layer_cams(targets=None)`` explains): int64 (N,).

    Arguments as for :func:`class_probs`.
    """
    return class_probs(model, images, batch_size, output_index).argmax(1).astype(np.int64)


def class_probs(model: nn.Module, images: torch.Tensor | np.ndarray, batch_size: int = 64,
                output_index: int | str | None = None) -> np.ndarray:
    """Softmax class probabilities of each image, in eval mode (the model is left as found).

    Args:
        model: a classifier returning logits (N, K).
        images: normalised float (N, C, H, W), or one (C, H, W) image.
        batch_size: images per forward pass.
        output_index: which output to use when the model returns a list/tuple of logits.

    Returns:
        float32 array (N, K); each row sums to 1.
    """
    scores = class_scores(model, as_image_batch(model, images), int(batch_size), output_index)
    return torch.cat([s.softmax(-1).cpu() for s in scores]).numpy()


def class_scores(model: nn.Module, images: torch.Tensor, batch_size: int, output_index: int | str | None) -> list[torch.Tensor]:
    """The model's chosen output for images (N, C, H, W): float32 (B, K) per batch, on the model's device, in eval mode."""
    batches = (images[start:start + batch_size] for start in range(0, len(images), batch_size))
    scores = [select_output(output, output_index).float() for output in forward_batches(model, batches)]
    if any(batch.ndim != 2 for batch in scores):  # the whole set's shape, as the caller gave the images
        shape = (len(images), *scores[0].shape[1:])
        raise UserError(f"the model returns shape {shape}, not class scores (N, K)")
    return scores
