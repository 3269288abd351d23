"""Trained models that ship inside the package, loaded offline and checked by their sha256.

``pretrained("resnet18_w16_cifar10")`` returns the ResNet18 (width 16) this project trained
on all 50,000 CIFAR-10 training images on a 2-core CPU, in eval mode, in float32 on the CPU
(or ``device``). It takes 32x32 images normalised with CIFAR-10's statistics
(``data.CIFAR10_MEAN``/``CIFAR10_STD``), as ``transforms.test_transforms()`` gives them, and
returns 10 logits in the order of ``data.CIFAR10_CLASSES``.

The weights are stored as a float16 state dict (half the size; the accuracy in the description
was measured on the stored float16 weights, loaded back into float32). Before loading, the
file's sha256 is compared with the one recorded here, so a damaged or replaced file is refused;
it then loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from eva_utils.core.errors import CheckpointError, unknown_name
from eva_utils.core.files import sha256_of  # re-exported: models.shipped.sha256_of is public
from eva_utils.models.registry import get_model

__all__ = ["PRETRAINED", "PretrainedWeights", "export_weights", "pretrained", "pretrained_info", "sha256_of", "training_history"]


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


def training_history(name: str) -> dict:
    """The per-epoch history of the run that trained ``name`` (as ``History.to_dict()``), for its curves."""
    entry = pretrained_info(name)
    if entry.history is None:
        raise CheckpointError(f"{name} ships without its training history")
    text = resources.files("eva_utils.models").joinpath("weights", entry.history).read_text()
    return json.loads(text)


def _read_weights(name: str) -> bytes:
    entry = _WEIGHTS[name]
    try:
        return resources.files("eva_utils.models").joinpath("weights", entry.file).read_bytes()
    except OSError as exc:
        raise CheckpointError(
            f"the weights of {name} ({entry.file}) are missing from the installed package: reinstall eva-utils"
        ) from exc


def load_verified(data: bytes, name: str) -> dict[str, torch.Tensor]:
    """The state dict in ``data`` if its sha256 is the one recorded for ``name``; else :class:`CheckpointError`."""
    entry = _WEIGHTS[name]
    digest = sha256_of(data)
    if digest != entry.sha256:
        raise CheckpointError(
            f"the weights file of {name} ({entry.file}) is damaged or was replaced: its sha256 is {digest[:16]}..., "
            f"expected {entry.sha256[:16]}...; reinstall eva-utils"
        )
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


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
    entry = pretrained_info(name)
    state = load_verified(_read_weights(name), name)
    model = get_model(entry.arch, entry.num_classes, entry.width)
    model.load_state_dict(state)  # float16 tensors are copied into the float32 parameters
    return model.to(device).eval()


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
    data = buffer.getvalue()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(data)
    return sha256_of(data)
