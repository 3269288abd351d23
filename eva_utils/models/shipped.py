"""Trained models that ship inside the package, loaded offline and checked by their sha256.

``pretrained("resnet18_w16_cifar10")`` returns the ResNet18 (width 16) this project trained on all 50,000 CIFAR-10
training images on a 2-core CPU, in eval mode, in float32 on the CPU (or ``device``). It takes 32x32 images
normalised with CIFAR-10's statistics (``transforms.test_transforms()``) and returns 10 logits in the order of
``data.CIFAR10_CLASSES``.

The weights are a float16 state dict (half the size; the recorded accuracy was measured on them). The file's sha256
is checked before it loads with ``torch.load(weights_only=True)`` through :mod:`eva_utils.models.loading`
(``load_model("pretrained:resnet18_w16_cifar10")`` adds class names and preprocessing); the records of the
shipped models live in :mod:`eva_utils.models.registry`.
"""

from __future__ import annotations

import io
import json
import os
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from eva_utils.core.errors import CheckpointError
from eva_utils.core.files import sha256_of  # re-exported: models.shipped.sha256_of is public
from eva_utils.models.loading import PRETRAINED_PREFIX, load_model, load_verified
from eva_utils.models.registry import PRETRAINED, PretrainedWeights, pretrained_info

__all__ = ["PRETRAINED", "PretrainedWeights", "export_weights", "load_verified", "pretrained", "pretrained_info",
           "sha256_of", "training_history"]


def training_history(name: str) -> dict:
    """The per-epoch history of the run that trained ``name`` (as ``History.to_dict()``), for its curves."""
    entry = pretrained_info(name)
    if entry.history is None:
        raise CheckpointError(f"{name} ships without its training history")
    return json.loads(resources.files("eva_utils.models").joinpath("weights", entry.history).read_text())


def pretrained(name: str = "resnet18_w16_cifar10", device: str | torch.device = "cpu") -> nn.Module:
    """A model that ships with the package, trained, in eval mode, float32, on ``device``.

    Args:
        name: one of :data:`PRETRAINED`.
        device: where the model goes.

    Returns:
        The model; inputs are CIFAR-10-normalised 32x32 RGB images (``transforms.test_transforms()``).

    Raises:
        UserError: an unknown name (the message lists the known ones).
        CheckpointError: the weights file is missing or fails its checksum.
    """
    return load_model(PRETRAINED_PREFIX + name, device=device).model


def export_weights(model: nn.Module, path: str | os.PathLike) -> str:
    """Write ``model``'s weights as a float16 state dict (integers kept) and return the file's sha256.

    This is how the shipped weights were made from an ``eva-utils train`` checkpoint::

        model = checkpoint.load_trained_model("runs/r18_w16_default/checkpoint.pt")
        export_weights(model, "eva_utils/models/weights/resnet18_w16_cifar10.pt")
    """
    state = {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()).clone()
             for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(buffer.getvalue())
    return sha256_of(buffer.getvalue())
