"""What model files hold: the ``eva_utils.checkpoint/1`` format and its checks, and a state dict found once.

A checkpoint of ``eva-utils train`` is a dict holding ``model``, ``optimizer``, ``scheduler``, ``scaler``
(state dicts), ``history``, ``epoch``, ``config`` (the run's settings, ``model``/``width``/``num_classes`` among
them) and ``format`` (:data:`FORMAT`); :mod:`eva_utils.training.checkpoint` writes and resumes it,
:mod:`eva_utils.models.loading` rebuilds its model. Everything here checks data: nothing loads a model.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eva_utils.core.errors import CheckpointError
from eva_utils.core.safe_load import state_dict_mismatch
from eva_utils.models.registry import MODELS, model_key, width_keys
from eva_utils.models.resnet import MAX_WIDTH

__all__ = [
    "FORMAT", "NotATrainingCheckpoint", "check_compatible", "describe_config", "head_size", "is_torchscript",
    "refuse_nonfinite", "same_outputs", "state_dict_of", "stored_architecture", "structure_problem",
]

FORMAT = "eva_utils.checkpoint/1"
_NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "network")


class NotATrainingCheckpoint(CheckpointError):
    """A readable torch file that ``eva-utils train`` did not write (no format tag)."""


def structure_problem(ckpt: dict[str, Any]) -> str | None:
    """What is missing or malformed in a tagged checkpoint, or None."""
    model = ckpt.get("model")
    if not isinstance(model, dict) or not model or not all(isinstance(v, torch.Tensor) for v in model.values()):
        return "no model weights"
    epoch = ckpt.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        return f"epoch {epoch!r} is not a count of epochs"
    if not isinstance(ckpt.get("config") or {}, dict):
        return "its settings are not a dict"
    history = ckpt.get("history")
    if history is not None and (not isinstance(history, dict) or not all(isinstance(v, list) for v in history.values())):
        return "its history is not a dict of lists"
    return None


def check_compatible(saved: dict[str, torch.Tensor], model: nn.Module, source: str = "checkpoint",
                     saved_desc: str | None = None) -> None:
    """Raise a readable :class:`CheckpointError` if the state dict ``saved`` does not fit ``model`` exactly.

    Args:
        source: how to name the file in the message.
        saved_desc: what the checkpoint was made for (e.g. ``"resnet34, width 64"``), if known.
    """
    problem = state_dict_mismatch(saved, model)
    if problem is not None:
        made_for = f" (made for {saved_desc})" if saved_desc else ""
        raise CheckpointError(f"{source}{made_for} does not fit this {type(model).__name__}: {problem}. "
                              "Use the same model name, width and number of classes as the run that wrote it")
    refuse_nonfinite(saved, source)


def refuse_nonfinite(state: Mapping[str, Any], source: str) -> None:
    """Raise :class:`CheckpointError` if a floating-point tensor of ``state`` holds NaN or infinity: such weights
    give NaN outputs, losses and maps, and resuming from them fails in the first batch whatever the lr."""
    bad = next((k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()),
               None)
    if bad is not None:
        raise CheckpointError(f"{source} holds NaN or infinite weights (first in {bad}): the run had diverged when it "
                              "was saved, or the file was altered; train again from the start, with a lower lr")


def describe_config(config: dict[str, Any]) -> str | None:
    """What a checkpoint's settings say it was made for (``"resnet34, width 64, num_classes 10"``), if they say."""
    if not config.get("model"):
        return None
    extras = [f"{k} {config[k]}" for k in ("width", "num_classes") if config.get(k) is not None]
    return ", ".join([str(config["model"]), *extras])


def stored_architecture(config: dict[str, Any], state: Any, path: str | os.PathLike) -> tuple[str, int, int | None]:
    """(model name, classes, width) from a checkpoint's settings, checked against its weights before anything is built.

    A crafted or damaged ``config`` (``width: 10**6``, ``"abc"``) must not allocate a huge model or fail deep
    inside a constructor: settings are checked for type and range, and the ResNets' against the weights' shapes.
    """
    name = config.get("model")
    if not isinstance(name, str) or model_key(name) not in MODELS:
        raise CheckpointError(f"checkpoint {path} names an unknown model {name!r} (known: {', '.join(MODELS)})")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} holds no model weights (its 'model' entry is not a state dict)")
    values: dict[str, int | None] = {}
    for key, default, high in (("num_classes", 10, 1_000_000), ("width", None, MAX_WIDTH)):
        value = config.get(key, default)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high):
            raise CheckpointError(f"checkpoint {path} has an impossible {key} {value!r} in its settings (damaged or crafted)")
        values[key] = value
    head = head_size(state)
    if values["num_classes"] is None:  # a config that left it to the data: the weights say it
        values["num_classes"] = head or 10
    if head is not None and head != values["num_classes"]:
        raise CheckpointError(f"checkpoint {path} says num_classes {values['num_classes']}, but its weights have "
                              f"{head} outputs: damaged or crafted")
    keys = width_keys(name)
    if keys is not None:
        for key, weight in (("width", keys.width), ("num_classes", keys.head)):
            tensor = state.get(weight)
            expected = values[key] if values[key] is not None else 64
            if tensor is None or tensor.ndim < 2 or tensor.shape[0] != expected:
                found = "missing" if tensor is None else tuple(tensor.shape)
                raise CheckpointError(f"checkpoint {path} says {key} {expected}, but its weights do not fit "
                                      f"({weight}: {found}): damaged or crafted")
    return model_key(name), int(values["num_classes"]), values["width"]


# ----------------------------------------------------------------------------- state dicts


def state_dict_of(obj: Any) -> dict[str, torch.Tensor] | None:
    """The tensors of a state dict, also when nested (``{"state_dict": ...}``) or saved from DataParallel."""
    if not isinstance(obj, Mapping):
        return None
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = dict(obj)
        for prefix in ("module.", "_orig_mod."):  # DataParallel, torch.compile
            if all(k.startswith(prefix) for k in state):
                state = {k.removeprefix(prefix): v for k, v in state.items()}
        return state
    for key in _NESTED_STATE_KEYS:
        if key in obj:
            nested = state_dict_of(obj[key])
            if nested is not None:
                return nested
    return None


def head_size(state: Mapping[str, torch.Tensor]) -> int | None:
    """Number of classes: rows of the last weight matrix (the classifier, registered last)."""
    weights = [v for k, v in state.items() if k.endswith("weight") and v.ndim >= 2]
    return int(weights[-1].shape[0]) if weights else None


# ----------------------------------------------------------------------------- TorchScript files


def is_torchscript(path: Path) -> bool:
    """TorchScript archives hold ``code/`` and ``constants.pkl``; torch.save archives do not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def same_outputs(scripted: Any, model: nn.Module, size: int) -> float | None:
    """Largest output difference of the two models on one random input; None when either cannot run it."""
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))  # (1, 3, S, S)
    try:
        with torch.no_grad():
            expected, got = scripted.eval()(x), model.eval()(x)
    except (RuntimeError, ValueError):
        return None
    if not (isinstance(expected, torch.Tensor) and isinstance(got, torch.Tensor)) or expected.shape != got.shape:
        return float("inf")
    return float((expected - got).abs().max() / (1.0 + expected.abs().max()))
