"""Predictions over a data set, misclassified images, per-class accuracy, confusion matrix.

Example::

    pred = predict(model, test_loader)                 # probs, preds, labels, indices
    worst = misclassified(pred, k=20)                  # most confident mistakes first
    cm = confusion_matrix(pred.labels, pred.preds, num_classes=10)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, SequentialSampler

from eva_utils.core.devices import eval_mode, model_device_dtype  # model_device_dtype re-exported (its old home)
from eva_utils.core.errors import UserError

__all__ = [
    "Predictions", "accuracy", "as_image_batch", "exit_logits", "first_conv_channels", "select_output", "check_exit",
    "confusion_matrix", "misclassified", "forward_batches", "model_device_dtype", "output_probs", "per_class_accuracy",
    "predict",
]


class Predictions(NamedTuple):
    """Model outputs over a data set, in data set order.

    Attributes:
        probs: (N, C) float32 softmax probabilities.
        preds: (N,) predicted class.
        labels: (N,) true class.
        indices: (N,) position of each image in the data set.
    """

    probs: np.ndarray
    preds: np.ndarray
    labels: np.ndarray
    indices: np.ndarray

    @property
    def confidence(self) -> np.ndarray:
        """(N,) probability of the predicted class."""
        return self.probs[np.arange(len(self.preds)), self.preds]


def check_exit(k: Any, num_exits: int) -> int:
    """``k`` as an int when it names one of the exits 1..num_exits of a multi-exit model (the one rule for exit numbers)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= num_exits:
        raise UserError(f"exit {k!r} does not exist: the model has {num_exits} exits, numbered 1..{num_exits}")
    return int(k)


def first_conv_channels(model: nn.Module) -> int | None:
    """Input channels of the first ``nn.Conv2d`` of ``model`` (None without one)."""
    return next((m.in_channels for m in model.modules() if isinstance(m, nn.Conv2d)), None)


def as_image_batch(model: nn.Module, images: Any) -> torch.Tensor:
    """Check ``images`` is normalised float (N, C, H, W) for ``model`` (or one (C, H, W)); return a 4-D tensor.

    The one check of images handed to a model by the CAM and faithfulness functions; NaN or infinite
    pixels are refused (``UserError`` with ``param="images"``), as they would give NaN maps.
    """
    if isinstance(images, (list, tuple)) and images and all(isinstance(i, torch.Tensor) for i in images):
        images = torch.stack(list(images))
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise UserError(f"images must be a torch.Tensor (N, C, H, W), got {type(images).__name__}")
    if images.dtype == torch.uint8:
        raise UserError(f"images are uint8 pixels (shape {tuple(images.shape)}), but CAMs need the normalised float "
                        "(N, C, H, W) tensors the model was trained on: pass them through "
                        "eva_utils.transforms.test_transforms() (or ToTensor() + Normalize(mean, std))")
    if not images.is_floating_point():
        raise UserError(f"images must be a float tensor, got dtype {images.dtype}")
    if images.ndim not in (3, 4):
        raise UserError(f"images must be (N, C, H, W) or one (C, H, W) image, got shape {tuple(images.shape)}")
    what = "(C, H, W)" if images.ndim == 3 else "(N, C, H, W)"
    images = images.unsqueeze(0) if images.ndim == 3 else images  # one (C, H, W) image -> a batch of 1
    channels = first_conv_channels(model)
    expected = (channels,) if channels is not None else (1, 3)
    if images.shape[1] not in expected:
        if images.shape[-1] in expected:
            raise UserError(f"images look channels-last (N, H, W, C) with shape {tuple(images.shape)}; CAMs need "
                            f"{what} channels-first: use images.permute(0, 3, 1, 2) (after normalising), or the test "
                            "transform eva_utils.transforms.test_transforms() which returns CHW tensors")
        raise UserError(f"images have {images.shape[1]} channels (shape {tuple(images.shape)}) but the model's first "
                        f"convolution takes {expected[0]}; images must be {what}")
    if images.shape[0] == 0:
        raise UserError("images is an empty batch")
    if images.device.type != "meta" and not torch.isfinite(images).all():
        first = int(torch.nonzero(~torch.isfinite(images))[0, 0])
        raise UserError(f"images hold pixel values that are not finite (NaN or infinite), first in image {first}; "
                        f"maps of them would be NaN: check how the images were made or normalised", param="images")
    return images


def select_output(output: Any, output_index: int | str | None) -> torch.Tensor:
    """The model output to explain: the tensor itself, or ``output[output_index]`` for a list/tuple/dict."""
    if isinstance(output, (list, tuple, Mapping)):
        if output_index is None:
            kind = "dict" if isinstance(output, Mapping) else type(output).__name__
            raise UserError(f"the model returns a {kind} of {len(output)} outputs (a multi-exit network?); pass "
                            "output_index=k to choose which one to explain, e.g. output_index=-1 for the last")
        try:
            output = output[output_index]
        except (IndexError, KeyError, TypeError):
            valid = list(output.keys()) if isinstance(output, Mapping) else f"0..{len(output) - 1}"
            raise UserError(f"output_index={output_index!r} does not exist; the model's outputs are {valid}") from None
    elif output_index is not None:
        raise UserError(f"output_index={output_index!r} was given but the model returns a single tensor; drop it")
    if not isinstance(output, torch.Tensor):
        raise UserError(f"the selected model output is a {type(output).__name__}, not a tensor of class scores")
    return output


def exit_logits(outputs: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """A model's logits as a list: one entry, or one per exit (shallowest first)."""
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


@torch.inference_mode()
def forward_batches(model: nn.Module, batches: Iterable[torch.Tensor], device: str | torch.device | None = None) -> list[Any]:
    """What ``model`` returns for each batch, in eval mode (every module's flag put back after).

    The one prediction loop of the package: inputs go to the model's device and float type (a
    float16/bfloat16 model gets inputs of its own dtype), under ``inference_mode``.
    """
    model_device, dtype = model_device_dtype(model)
    device = model_device if device is None else device
    with eval_mode(model):
        return [model(images.to(device, dtype)) for images in batches]


@torch.inference_mode()
def output_probs(model: nn.Module, loader: DataLoader, device: str | torch.device | None = None,
                 caller: str = "predict") -> tuple[np.ndarray, np.ndarray]:
    """Softmax of every output of ``model`` over an unshuffled ``loader``, one forward per batch.

    Args:
        model: returns logits, or a list of logits (multi-exit); run in eval mode, its mode restored after.
        loader: yields ``(images, labels)`` in data set order (no shuffling).
        device: default the model's own device.
        caller: the function named in error messages.

    Returns:
        (E, N, C) float32 probabilities (E = 1 for a single output) and (N,) int64 labels.

    Raises:
        UserError: a shuffled loader (rows would not match data set indices) or an empty data set.
    """
    if not isinstance(loader.sampler, SequentialSampler):
        raise UserError(f"{caller} needs an unshuffled loader (shuffle=False) so that rows match data set indices")
    if len(loader.dataset) == 0:
        raise UserError("the data set is empty: nothing to predict")
    probs, labels = [], []

    def images_of(batches: Iterable[tuple[torch.Tensor, Any]]) -> Iterator[torch.Tensor]:
        for images, targets in batches:
            labels.append(torch.as_tensor(targets))
            yield images

    for outputs in forward_batches(model, images_of(loader), device):
        probs.append(torch.stack([torch.softmax(o.float(), dim=1) for o in exit_logits(outputs)]).cpu())  # (E, B, C)
    return torch.cat(probs, dim=1).numpy().astype(np.float32), torch.cat(labels).numpy().astype(np.int64)


def predict(model: nn.Module, loader: DataLoader, device: str | torch.device | None = None,
            output_index: int = -1) -> Predictions:
    """Run ``model`` over an unshuffled ``loader`` in inference mode.

    Args:
        model: evaluated in eval mode; its train/eval mode is restored afterwards.
        loader: yields ``(images, labels)`` in data set order (no shuffling).
        device: default the model's own device.
        output_index: for models returning a list of logits (multi-exit), which one; default the last.

    Returns:
        :class:`Predictions`, with ``indices`` giving each row's position in ``loader.dataset``.

    Raises:
        UserError: a shuffled loader (indices would be wrong) or an empty data set.
    """
    probs, labels = output_probs(model, loader, device)
    p = probs[output_index]  # (N, C)
    return Predictions(p, p.argmax(1), labels, np.arange(len(labels)))


def misclassified(pred: Predictions, k: int | None = None) -> np.ndarray:
    """Rows of the wrong predictions, most confident first.

    Args:
        pred: from :func:`predict`.
        k: keep at most this many (``None``: all).

    Returns:
        (M,) row numbers into ``pred`` (equal to data set indices for :func:`predict`'s output).
    """
    wrong = np.flatnonzero(pred.preds != pred.labels)
    order = wrong[np.argsort(-pred.confidence[wrong], kind="stable")]
    return order if k is None else order[:k]


def accuracy(pred: Predictions) -> float:
    """Fraction of correct predictions."""
    return float((pred.preds == pred.labels).mean())


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class."""
    labels, preds = np.asarray(labels, np.int64), np.asarray(preds, np.int64)
    if labels.shape != preds.shape:
        raise UserError(f"labels {labels.shape} and preds {preds.shape} must have the same shape")
    for name, arr in (("labels", labels), ("preds", preds)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise UserError(f"{name} hold classes outside 0..{num_classes - 1}")
    return np.bincount(labels * num_classes + preds, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_accuracy(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """(C,) accuracy of each true class (NaN for a class with no images)."""
    cm = confusion_matrix(labels, preds, num_classes)
    totals = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / totals, np.nan)
