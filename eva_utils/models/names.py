"""Model names: torchvision's classifiers and eva_utils's, what an architecture name means, fresh models by name,
torchvision's pretrained weights (downloaded by torchvision into torch.hub's cache).

``resnet18`` is both torchvision's and eva_utils's: :func:`candidates` gives both, in that order, and the
loader keeps the one a file's weights fit. Nothing here reads a file (that is :mod:`eva_utils.models.loading`).
"""

from __future__ import annotations

import difflib
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eva_utils.core.errors import UserError, first_line, unknown_name
from eva_utils.data.presets import Preset, imagenet_preset
from eva_utils.models.registry import MODELS, get_model, model_key

__all__ = [
    "WeightsDownloadError", "candidates", "new_model", "preset_of", "torchvision_model", "torchvision_names",
    "torchvision_weights",
]


def torchvision_names() -> list[str]:
    """Names of torchvision's image classification models (``resnet50``, ``vgg16``, ``vit_b_16``, ...)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _unknown_model(name: str, what: str, param: str | None) -> UserError:
    torchvision, eva = torchvision_names(), [f"eva_utils.{n}" for n in sorted(MODELS)]
    close = difflib.get_close_matches(name.lower(), torchvision + eva + sorted(MODELS), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return UserError(f"unknown model {name!r}{hint} ({what} is a torchvision classification model name, e.g. resnet50, "
                     f"vgg16, efficientnet_b0 - all {len(torchvision)} in torchvision.models.list_models("
                     f"module=torchvision.models) - or {', '.join(eva)})", param=param)


def candidates(arch: str, what: str = "a model", param: str | None = None) -> list[tuple[str, str]]:
    """The (family, name) pairs ``arch`` can mean: ``resnet18`` is both torchvision's and eva_utils's.

    ``what`` names ``arch`` in the error for an unknown name, ``param`` is the parameter it came from.
    """
    text = str(arch).strip()
    low = text.lower()
    eva_key = model_key(low.removeprefix("eva_utils."))  # a "torchvision." name keeps its dot: never an eva_utils key
    if low.startswith("eva_utils."):
        if eva_key not in MODELS:
            raise unknown_name("eva_utils model", text.split(".", 1)[1], MODELS)
        return [("eva_utils", eva_key)]
    low = low.removeprefix("torchvision.")
    found = [("torchvision", low)] if low in torchvision_names() else []
    if eva_key in MODELS:
        found.append(("eva_utils", eva_key))
    if not found:
        raise _unknown_model(text, what, param)
    return found


def new_model(family: str, name: str, num_classes: int | None, width: int | None = None, weights: Any = None) -> nn.Module:
    """A fresh ``family`` (``"eva_utils"`` or ``"torchvision"``) model ``name``; torchvision ``weights`` download."""
    kwargs: dict[str, Any] = {} if num_classes is None else {"num_classes": int(num_classes)}
    if family == "eva_utils":
        return get_model(name, width=None if width is None else int(width), **kwargs)
    import torchvision

    with warnings.catch_warnings():  # inception_v3 / googlenet warn about their future default init
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        return torchvision.models.get_model(name, weights=weights, **kwargs)


def torchvision_weights(name: str, weights: str | None) -> Any:
    """The torchvision weights enum member ``weights`` names for model ``name`` (None for random)."""
    import torchvision

    if weights is None or str(weights).lower() in ("none", "random"):
        return None
    enum = torchvision.models.get_model_weights(name)
    if str(weights).lower() == "default":
        return enum.DEFAULT
    key = str(weights).removeprefix(f"{enum.__name__}.")
    if key not in enum.__members__:
        raise unknown_name(f"weights for {name}", str(weights), ["default", "none", *enum.__members__])
    return enum[key]


def preset_of(weights: Any) -> Preset:
    """The evaluation preprocessing that goes with torchvision ``weights`` (sizes, mean, std)."""
    transform = weights.transforms()
    size = int(transform.crop_size[0])
    return Preset("imagenet", size, max(int(transform.resize_size[0]), size), tuple(transform.mean), tuple(transform.std))


class WeightsDownloadError(UserError):
    """Pretrained weights could not be downloaded (no internet, a proxy, a full disk)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message, param="weights")
        self.reason = reason


def torchvision_model(name: str, weights: str | None,
                      num_classes: int | None) -> tuple[nn.Module, tuple[str, ...] | None, Preset, str]:
    """(model, class names, preset, description) of torchvision's ``name`` with ``weights`` (:func:`torchvision_weights`)."""
    chosen = torchvision_weights(name, weights)
    if chosen is None:
        model = new_model("torchvision", name, num_classes)
        return model, None, imagenet_preset(), f"torchvision {name} with random weights"
    categories = tuple(chosen.meta["categories"])
    if num_classes is not None and num_classes != len(categories):
        raise UserError(f"the pretrained {name} weights have {len(categories)} classes, not {num_classes}; "
                        f"use random weights (weights=\"none\") for a {name} with {num_classes} classes", param="weights")
    try:
        model = new_model("torchvision", name, None, weights=chosen)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a bad hash or blocked socket a RuntimeError
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise WeightsDownloadError(f"could not download the pretrained weights of {name} ({chosen}, {chosen.url}): "
                                   f"{first_line(exc)}. Without internet use random weights (weights=\"none\"), or copy "
                                   f"the file into {cache}", first_line(exc)) from exc
    return model, categories, preset_of(chosen), f"torchvision {name} with ImageNet weights {chosen}"
