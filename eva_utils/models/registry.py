"""The model registry: names to factories, ``get_model`` that builds by name, and the records of the shipped models.

A shipped model (``pretrained:<name>``) is an architecture of :data:`MODELS` with weights in
``eva_utils/models/weights`` and their sha256 (:data:`PRETRAINED`, :func:`pretrained_info`); it loads, like
every model file, through :mod:`eva_utils.models.loading` (:func:`eva_utils.models.pretrained`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import NamedTuple

from torch import nn

from eva_utils.core.errors import CheckpointError, unknown_name
from eva_utils.models.custom_resnet import custom_resnet
from eva_utils.models.msdnet_model import msdnet
from eva_utils.models.resnet import resnet18, resnet34

__all__ = ["MODELS", "PRETRAINED", "PretrainedWeights", "WidthKeys", "get_model", "model_key", "pretrained_info",
           "read_weights", "width_keys"]

MODELS: dict[str, Callable[..., nn.Module]] = {"resnet18": resnet18, "resnet34": resnet34, "msdnet": msdnet,
                                               "custom_resnet": custom_resnet}


class WidthKeys(NamedTuple):
    """Where a model with a ``width`` shows it in its state dict: rows of ``width`` and of the classifier ``head``."""

    width: str
    head: str


_WIDTH_KEYS: dict[str, WidthKeys] = {
    "resnet18": WidthKeys("conv1.weight", "linear.weight"),
    "resnet34": WidthKeys("conv1.weight", "linear.weight"),
    "custom_resnet": WidthKeys("prep.conv.weight", "fc.weight"),
}


def _folded(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def model_key(name: str) -> str:
    """The registry key of a model name: case, ``-`` and ``_`` ignored (``ResNet-18`` is ``resnet18``,
    ``CustomResNet`` is ``custom_resnet``); a name the registry lacks comes back folded."""
    folded = _folded(name)
    return next((key for key in MODELS if _folded(key) == folded), folded)


def width_keys(name: str) -> WidthKeys | None:
    """For a model that takes a ``width`` (the ResNets), the state-dict keys that show it; ``None`` for the others."""
    return _WIDTH_KEYS.get(model_key(name))


def get_model(name: str, num_classes: int = 10, width: int | None = None, **kwargs: object) -> nn.Module:
    """Build a model by name, e.g. ``get_model("resnet18", num_classes=10, width=16)``.

    Args:
        name: one of :data:`MODELS`.
        num_classes: outputs.
        width: channels of the first stage of the ResNets and the custom ResNet (``None``: 64); other models ignore it.
        **kwargs: passed to the factory (MSD-Net's :class:`MSDNetConfig` fields such as ``blocks``).

    Returns:
        A freshly initialised model.

    Raises:
        UserError: for an unknown name; the message lists the known ones.
    """
    key = model_key(name)
    if key not in MODELS:
        raise unknown_name("model", name, MODELS)
    if width is not None and width_keys(key) is not None:
        kwargs["width"] = width
    return MODELS[key](num_classes=num_classes, **kwargs)


# ----------------------------------------------------------------------------- the shipped models


@dataclass(frozen=True)
class PretrainedWeights:
    """One shipped model: its architecture, its weights file (in ``eva_utils/models/weights``) and checksum."""

    arch: str
    width: int
    num_classes: int
    file: str  # the float16 state dict
    sha256: str  # of ``file``
    test_accuracy: float  # on the 1,000 bundled CIFAR-10 test images, of the stored weights
    description: str
    history: str | None = None  # the training run's history.json, kept for its curves


_WEIGHTS: dict[str, PretrainedWeights] = {
    "resnet18_w16_cifar10": PretrainedWeights(
        arch="resnet18",
        width=16,
        num_classes=10,
        file="resnet18_w16_cifar10.pt",
        sha256="1a3ec349f8e7e9ad14445bd80f8ca35b4e6e2957918921cb8fafe36395a1f6c6",
        test_accuracy=0.847,
        description="ResNet18 (width 16, 0.7M parameters) trained 20 epochs on all 50,000 CIFAR-10 training images "
                    "on a 2-core CPU (the default recipe, scaled): 84.7% on the 1,000 bundled test images",
        history="resnet18_w16_cifar10.history.json",
    ),
}

#: name -> one line saying what the model is and how good it is.
PRETRAINED: dict[str, str] = {name: w.description for name, w in _WEIGHTS.items()}


def pretrained_info(name: str) -> PretrainedWeights:
    """What is recorded about a shipped model (architecture, file, checksum, measured accuracy)."""
    if name not in _WEIGHTS:
        raise unknown_name("pretrained model", name, _WEIGHTS)
    return _WEIGHTS[name]


def read_weights(name: str) -> bytes:
    """The bytes of a shipped model's weights file, as installed (unchecked: see ``loading.load_verified``)."""
    entry = pretrained_info(name)
    try:
        return resources.files("eva_utils.models").joinpath("weights", entry.file).read_bytes()
    except OSError as exc:
        raise CheckpointError(f"the weights of {name} ({entry.file}) are missing from the installed package: "
                              "reinstall eva-utils") from exc
