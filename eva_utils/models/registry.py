"""The model registry: names to factories, and ``get_model`` that builds by name (re-exported by ``eva_utils.models``)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from eva_utils.core.errors import unknown_name
from eva_utils.models.msdnet import msdnet
from eva_utils.models.resnet import resnet18, resnet34

__all__ = ["MODELS", "get_model", "model_key"]

MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "msdnet": msdnet,
}


def model_key(name: str) -> str:
    """The registry key of a model name: case, ``-`` and ``_`` ignored (``ResNet-18`` is ``resnet18``)."""
    return name.lower().replace("-", "").replace("_", "")


def get_model(name: str, num_classes: int = 10, width: int | None = None, **kwargs: object) -> nn.Module:
    """Build a model by name, e.g. ``get_model("resnet18", num_classes=10, width=16)``.

    Args:
        name: one of :data:`MODELS`.
        num_classes: outputs.
        width: channels of the first stage of the ResNets (``None``: 64); other models have no width
            and ignore it, so one call serves every name.
        **kwargs: passed to the factory (MSD-Net's :class:`MSDNetConfig` fields such as ``blocks``).

    Returns:
        A freshly initialised model.

    Raises:
        UserError: for an unknown name; the message lists the known ones.
    """
    key = model_key(name)
    if key not in MODELS:
        raise unknown_name("model", name, MODELS)
    if width is not None and key.startswith("resnet"):
        kwargs["width"] = width
    return MODELS[key](num_classes=num_classes, **kwargs)
