"""Checkpoints: written atomically, loaded safely, checked against the model they resume.

A checkpoint is a dict saved with ``torch.save`` holding ``model``, ``optimizer``,
``scheduler``, ``scaler`` (state dicts), ``history`` (a :class:`~eva_utils.training.History`
as lists), ``epoch`` (epochs done), ``config`` (the run's settings) and ``format``.
It is written to a temporary file in the same folder and renamed over the target, so an
interrupted save never leaves a half-written checkpoint. It loads with
``torch.load(weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eva_utils.core.errors import CheckpointError, DataNotFoundError, first_line
from eva_utils.core.files import atomic_write
from eva_utils.core.safe_load import (  # re-exported: checkpoint.safe_load is the documented name
    RefusedPickleError,
    safe_load,
    state_dict_mismatch,
)
from eva_utils.models import MODELS, get_model, model_key
from eva_utils.models.resnet import MAX_WIDTH

__all__ = [
    "FORMAT",
    "NotATrainingCheckpoint",
    "RefusedPickleError",
    "safe_load",
    "check_compatible",
    "load_checkpoint",
    "load_trained_model",
    "rebuild_model",
    "restore_training_state",
    "save_checkpoint",
]

FORMAT = "eva_utils.checkpoint/1"


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any | None,
    scaler: torch.amp.GradScaler | None,
    history: Any,
    epoch: int,
    config: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, then rename).

    Args:
        path: target file; its folder is created.
        model: its ``state_dict`` is saved.
        optimizer: saved when given.
        scheduler: saved when given, with its class name.
        scaler: the GradScaler's state, when given.
        history: a ``History`` (or anything with ``to_dict``).
        epoch: epochs completed.
        config: plain settings (str, numbers, bools, lists, dicts).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "epoch": int(epoch),
        "model_class": type(model).__name__,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scheduler_class": type(scheduler).__name__ if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "history": history.to_dict() if history is not None else None,
        "config": dict(config or {}),
    }
    try:
        atomic_write(path, lambda f: torch.save(state, f))
    except OSError as exc:  # a full disk, a quota, a folder gone read-only
        kept = "the previous checkpoint is intact" if path.exists() else "no checkpoint was written"
        raise CheckpointError(f"could not save the checkpoint {path} ({first_line(exc)}); {kept}. "
                              "Free some space or choose another --out, then resume") from exc
    return path


class NotATrainingCheckpoint(CheckpointError):
    """A readable torch file that ``eva-utils train`` did not write (no format tag)."""


def _structure_problem(ckpt: dict[str, Any]) -> str | None:
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


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, safely (``weights_only=True``, see :func:`safe_load`).

    Raises:
        DataNotFoundError: no such file.
        CheckpointError: truncated, corrupt, not an eva_utils checkpoint, or needing unsafe unpickling.
            The file itself is never modified.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"checkpoint {path} does not exist: check the path (eva-utils train writes <out>/checkpoint.pt)")
    ckpt = safe_load(
        path,
        refused_hint="Only load files you trust; eva-utils train never writes such objects",
        corrupt_hint="The file was left as it is. Resume from an earlier copy or start a new run in another output folder",
    )
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise NotATrainingCheckpoint(
            f"{path} is not an eva_utils training checkpoint (no '{FORMAT}' format tag); "
            "to load bare weights use model.load_state_dict(torch.load(path, weights_only=True))"
        )
    problem = _structure_problem(ckpt)
    if problem:
        raise CheckpointError(f"checkpoint {path} is damaged or incomplete ({problem}); the file was left as it is. "
                              "Resume from an earlier copy or start a new run in another output folder")
    if str(map_location) != "cpu":
        ckpt = _to_device(ckpt, map_location)
    return ckpt


def _to_device(obj: Any, device: str | torch.device) -> Any:
    """Tensors of a loaded checkpoint moved to ``device`` (nested dicts and lists followed)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


def check_compatible(saved: dict[str, torch.Tensor], model: nn.Module, source: str = "checkpoint",
                     saved_desc: str | None = None) -> None:
    """Raise a readable :class:`CheckpointError` if ``saved`` does not fit ``model`` exactly.

    Args:
        saved: a state dict.
        model: the model it should load into.
        source: how to name the file in the message.
        saved_desc: what the checkpoint was made for (e.g. ``"resnet34, width 64"``), if known.
    """
    problem = state_dict_mismatch(saved, model)
    if problem is None:
        return
    made_for = f" (made for {saved_desc})" if saved_desc else ""
    raise CheckpointError(
        f"{source}{made_for} does not fit this {type(model).__name__}: {problem}. "
        "Use the same model name, width and number of classes as the run that wrote it"
    )


def _describe(config: dict[str, Any]) -> str | None:
    if not config.get("model"):
        return None
    extras = [f"{k} {config[k]}" for k in ("width", "num_classes") if config.get(k) is not None]
    return ", ".join([str(config["model"]), *extras])


def restore_training_state(
    ckpt: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> Any:
    """Load model, optimizer, scheduler and scaler states from ``ckpt``; return its history as a plain dict.

    Returns:
        ``History.to_dict()`` of the epochs done (``{}`` if none were recorded); ``fit`` builds its History.

    Raises:
        CheckpointError: the checkpoint was made for another architecture, optimizer or scheduler.
    """
    config = ckpt.get("config") or {}
    check_compatible(ckpt["model"], model, "checkpoint", _describe(config))
    model.load_state_dict(ckpt["model"])
    if optimizer is not None and ckpt.get("optimizer") is not None:
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(
                f"the checkpoint's optimizer state does not fit {type(optimizer).__name__} ({exc}); "
                f"resume with the optimizer it was trained with ({config.get('optimizer', 'see its config')})"
            ) from exc
    if scheduler is not None:
        saved_class = ckpt.get("scheduler_class")
        if saved_class != type(scheduler).__name__:
            raise CheckpointError(
                f"the checkpoint was trained with scheduler {saved_class or 'none'}, not {type(scheduler).__name__}; "
                "resume with the same scheduler"
            )
        planned = getattr(scheduler, "total_steps", None)
        scheduler.load_state_dict(ckpt["scheduler"])
        if planned is not None and scheduler.total_steps != planned:
            raise CheckpointError(
                f"the checkpoint's one-cycle schedule spans {scheduler.total_steps} steps but this run plans {planned}; "
                f"a one-cycle run can only be resumed with the same epochs ({config.get('epochs', '?')}) and batch size"
            )
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    return dict(ckpt.get("history") or {})


def _stored_architecture(config: dict[str, Any], state: Any, path: str | os.PathLike) -> tuple[str, int, int | None]:
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
    heads = [v for k, v in state.items() if k.endswith("classifier.weight") or k == "linear.weight"]
    if values["num_classes"] is None:  # a config that left it to the data: the weights say it
        values["num_classes"] = int(heads[-1].shape[0]) if heads and heads[-1].ndim == 2 else 10
    if heads and heads[-1].ndim == 2 and heads[-1].shape[0] != values["num_classes"]:
        raise CheckpointError(f"checkpoint {path} says num_classes {values['num_classes']}, but its weights have "
                              f"{heads[-1].shape[0]} outputs: damaged or crafted")
    if name.lower().startswith("resnet"):
        stored = {"width": state.get("conv1.weight"), "num_classes": state.get("linear.weight")}
        for key, tensor in stored.items():
            expected = values[key] if values[key] is not None else 64
            if tensor is None or tensor.ndim < 2 or tensor.shape[0] != expected:
                found = "missing" if tensor is None else tuple(tensor.shape)
                raise CheckpointError(f"checkpoint {path} says {key} {expected}, but its weights do not fit "
                                      f"({'conv1' if key == 'width' else 'linear'}.weight: {found}): damaged or crafted")
    return name, int(values["num_classes"]), values["width"]


def load_trained_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model saved by ``eva-utils train`` (or ``fit`` with a config naming the model).

    Returns:
        The model with its trained weights, in eval mode, on ``map_location``.
    """

    ckpt = load_checkpoint(path, map_location="cpu")  # read on the CPU, then moved: works for any device
    return rebuild_model(ckpt, path).to(map_location)


def rebuild_model(ckpt: dict[str, Any], path: str | os.PathLike = "checkpoint") -> nn.Module:
    """The model of a checkpoint already read with :func:`load_checkpoint`, in eval mode (``path`` names it in errors)."""
    config = ckpt.get("config") or {}
    if not isinstance(config, dict) or "model" not in config:
        raise CheckpointError(f"checkpoint {path} does not say which model it holds (no 'model' in its config)")
    name, num_classes, width = _stored_architecture(config, ckpt.get("model"), path)
    model = get_model(name, num_classes, width)
    check_compatible(ckpt["model"], model, f"checkpoint {path}", _describe(config))
    model.load_state_dict(ckpt["model"])
    return model.eval()
