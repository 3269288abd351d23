"""Checkpoints: written atomically, loaded safely (``weights_only=True``), checked against the model they resume.

A checkpoint is a ``torch.save``d dict of ``model``, ``optimizer``, ``scheduler``, ``scaler`` (state dicts), ``history``
(:meth:`History.to_dict`), ``epoch`` (epochs done), ``config`` (the run's settings) and ``format``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eva_utils.core.errors import CheckpointError, UserError, first_line
from eva_utils.core.files import atomic_copy, atomic_write
from eva_utils.core.safe_load import RefusedPickleError, safe_load  # re-exported: checkpoint.safe_load is documented
from eva_utils.models.checkpoint_format import FORMAT, NotATrainingCheckpoint, check_compatible, describe_config
from eva_utils.models.loading import load_trained_model, read_trained_checkpoint, rebuild_model
from eva_utils.training.history import History

__all__ = [
    "FORMAT", "NotATrainingCheckpoint", "RefusedPickleError", "safe_load", "check_compatible", "check_history",
    "keep_resumed", "load_checkpoint", "load_trained_model", "rebuild_model", "restore_training_state", "resume_from",
    "save_checkpoint", "training_state_problem",
]


def save_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                    scheduler: Any | None, scaler: torch.amp.GradScaler | None, history: Any, epoch: int,
                    config: dict[str, Any] | None = None) -> Path:
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
        "format": FORMAT, "epoch": int(epoch), "model_class": type(model).__name__, "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scheduler_class": type(scheduler).__name__ if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "history": history.to_dict() if history is not None else None, "config": dict(config or {}),
    }
    try:
        atomic_write(path, lambda f: torch.save(state, f))
    except (OSError, RuntimeError) as exc:  # a full disk (torch.save's writer raises RuntimeError), a quota, read-only
        kept = "the previous checkpoint is intact" if path.exists() else "no checkpoint was written"
        raise CheckpointError(f"could not save the checkpoint {path} ({first_line(exc)}); {kept}. "
                              "Free some space or choose another checkpoint_path (another folder), then resume",
                              param="checkpoint_path") from exc
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, safely (``weights_only=True``, see :func:`safe_load`).

    Raises:
        DataNotFoundError: no such file.
        CheckpointError: truncated, corrupt, not an eva_utils checkpoint, or needing unsafe unpickling.
            The file itself is never modified.
    """
    ckpt = read_trained_checkpoint(path)  # the model layer's one reader: safe, checked whole
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


def _may_be_missing(key: str, fresh: Any) -> bool:
    """A key torch fills in when loading (its flags, private attributes) or older checkpoints lack (``steps_per_epoch``)."""
    return key.startswith("_") or key == "steps_per_epoch" or fresh is None or isinstance(fresh, bool)


def _kind_problem(saved: Any, fresh: Any, where: str) -> str | None:
    """Why ``saved`` cannot stand where a fresh object holds ``fresh`` (same keys, types, lengths, shapes), or None."""
    if isinstance(fresh, bool) or fresh is None:
        ok = fresh is None or isinstance(saved, bool)
    elif isinstance(fresh, (int, float)):
        ok = isinstance(saved, (int, float)) and not isinstance(saved, bool) and math.isfinite(saved)
    elif isinstance(fresh, torch.Tensor):
        ok = isinstance(saved, torch.Tensor) and saved.shape == fresh.shape
    elif isinstance(fresh, (list, tuple)):
        if not isinstance(saved, (list, tuple)) or len(saved) != len(fresh):
            return f"{where} should hold {len(fresh)} values"
        problems = (_kind_problem(a, b, f"{where}[{i}]") for i, (a, b) in enumerate(zip(saved, fresh, strict=True)))
        return next(filter(None, problems), None)
    elif isinstance(fresh, dict):
        if not isinstance(saved, dict):
            return f"{where} is not a dict"
        missing = [k for k, v in fresh.items() if k not in saved and not _may_be_missing(k, v)]
        if missing:
            return f"{where} lacks {missing[0]!r}"
        problems = (_kind_problem(saved[k], v, f"{where}[{k!r}]") for k, v in fresh.items() if k in saved)
        return next(filter(None, problems), None)
    else:
        ok = type(saved) is type(fresh)
    return None if ok else f"{where} is {type(saved).__name__} {first_line(repr(saved))[:30]}, not {type(fresh).__name__}"


def _optimizer_problem(saved: Any, optimizer: torch.optim.Optimizer) -> str | None:
    """What in a saved optimizer state does not fit ``optimizer`` (its groups' settings, its buffers' shapes)."""
    fresh = optimizer.state_dict()
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict) \
            or not isinstance(saved.get("param_groups"), list) or len(saved["param_groups"]) != len(fresh["param_groups"]):
        return "the optimizer state is not a dict of 'state' and one 'param_groups' entry per group"
    settings = [{k: v for k, v in group.items() if k != "params"} for group in fresh["param_groups"]]
    problem = _kind_problem(saved["param_groups"], settings, "optimizer param_groups")
    if problem:
        return problem
    params = [p for group in optimizer.param_groups for p in group["params"]]
    ids = [i for group in saved["param_groups"] for i in group.get("params", [])]
    if len(ids) != len(params):
        return f"the optimizer state is for {len(ids)} parameters, the model has {len(params)}"
    shapes = dict(zip(ids, (p.shape for p in params), strict=True))
    for index, buffers in saved["state"].items():
        if index not in shapes or not isinstance(buffers, dict):
            return f"the optimizer state of parameter {index!r} is not the model's"
        for name, value in buffers.items():
            if not (isinstance(value, torch.Tensor) and value.shape in (shapes[index], torch.Size([]))) \
                    and not (isinstance(value, (int, float)) and not isinstance(value, bool)):
                return f"the optimizer's {name} of parameter {index} is not a tensor of its shape {tuple(shapes[index])}"
    return None


def training_state_problem(ckpt: dict[str, Any], optimizer: torch.optim.Optimizer | None = None,
                           scheduler: Any | None = None, scaler: torch.amp.GradScaler | None = None) -> str | None:
    """What in ``ckpt``'s optimizer, scheduler or scaler state cannot resume into these, or None; nothing is loaded.

    Each saved state is held against the state the fresh object makes: the same keys, types, list lengths and
    tensor shapes, finite numbers, and the optimizer's buffers shaped as their parameters.
    """
    if optimizer is not None and ckpt.get("optimizer") is not None:
        problem = _optimizer_problem(ckpt["optimizer"], optimizer)
        if problem:
            return problem
    if scheduler is not None:
        problem = _kind_problem(ckpt.get("scheduler"), scheduler.state_dict(), "scheduler state")
        if problem:
            return problem
    if scaler is not None and scaler.is_enabled() and ckpt.get("scaler"):
        return _kind_problem(ckpt["scaler"], scaler.state_dict(), "scaler state")
    return None


def _schedule_problem(ckpt: dict[str, Any], scheduler: Any) -> str | None:
    """Why ``ckpt``'s one cycle cannot go on in this run's fresh ``scheduler`` (other total or per-epoch steps), or None.

    Otherwise the cycle would end before the run (OneCycleLR then raises mid-epoch) or short of its end.
    """
    planned, saved = getattr(scheduler, "total_steps", None), ckpt.get("scheduler")
    if planned is None or not isinstance(saved, dict):
        return None
    if saved.get("total_steps") != planned:
        return (f"the checkpoint's one-cycle schedule spans {saved.get('total_steps')} steps but this run plans "
                f"{planned}; a one-cycle run can only be resumed with the same epochs "
                f"({(ckpt.get('config') or {}).get('epochs', '?')}) and batch size")
    per_epoch, done, taken = getattr(scheduler, "steps_per_epoch", None), ckpt.get("epoch"), saved.get("last_epoch")
    if not isinstance(per_epoch, int) or not isinstance(done, int) or done < 1 or taken == done * per_epoch:
        return None
    took = f"{int(taken) // done} steps per epoch" if taken % done == 0 else f"{taken} steps in {done} epochs"
    return (f"the checkpoint's one-cycle schedule took {took}, this run takes {per_epoch} (max_batches, batch_size "
            "or the data changed): resume with the same settings, or start a new run in another output folder")


def restore_training_state(ckpt: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                           scheduler: Any | None = None, scaler: torch.amp.GradScaler | None = None) -> Any:
    """Load model, optimizer, scheduler and scaler states from ``ckpt``; return its history as a plain dict.

    Returns:
        ``History.to_dict()`` of the epochs done (``{}`` if none were recorded); ``fit`` builds its History.

    Raises:
        CheckpointError: the checkpoint was made for another architecture, optimizer or scheduler, or its one cycle
            for another number of steps in all or per epoch (refused before anything is loaded).
    """
    config = ckpt.get("config") or {}
    check_compatible(ckpt["model"], model, "checkpoint", describe_config(config))
    if scheduler is not None and ckpt.get("scheduler_class") != type(scheduler).__name__:
        raise CheckpointError(f"the checkpoint was trained with scheduler {ckpt.get('scheduler_class') or 'none'}, "
                              f"not {type(scheduler).__name__}; resume with the same scheduler")
    problem = training_state_problem(ckpt, optimizer, scheduler, scaler)
    if problem:
        raise CheckpointError(f"the checkpoint's training state is damaged: {problem}; the file was left as it is. "
                              "Resume from an earlier copy, or with the optimizer and scheduler it was trained with "
                              f"({config.get('optimizer', '?')}, {config.get('scheduler', '?')}), or start a new run "
                              "in another output folder")
    problem = _schedule_problem(ckpt, scheduler) if scheduler is not None else None
    if problem:  # before anything is loaded: the model, optimizer and scheduler stay as they were
        raise CheckpointError(problem, param="resume")
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
        scheduler.load_state_dict(ckpt["scheduler"])
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    return dict(ckpt.get("history") or {})


def resume_from(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                scheduler: Any | None, scaler: torch.amp.GradScaler | None,
                device: torch.device | str = "cpu") -> tuple[History, int]:
    """Restore the training state of the checkpoint ``path`` into the rest (see :func:`restore_training_state`).

    Returns:
        The run's history and the number of epochs done.

    Raises:
        CheckpointError: the checkpoint is damaged (its history too) or does not fit the model, optimizer or scheduler.
    """
    ckpt = load_checkpoint(path, map_location=device)
    try:
        history = History.from_dict(restore_training_state(ckpt, model, optimizer, scheduler, scaler))
    except UserError as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"checkpoint {path}: its history is damaged ({exc}); resume from an earlier copy "
                              "or start a new run in another output folder", param="resume") from exc
    if len(history) and len(history) != ckpt["epoch"]:
        raise CheckpointError(f"checkpoint {path} is damaged: it says {ckpt['epoch']} epochs were done, its history "
                              f"holds {len(history)}; resume from an earlier copy or start a new run in another "
                              "output folder", param="resume")
    return history, int(ckpt["epoch"])


def check_history(ckpt: dict[str, Any], history: History, name: str = "the history") -> None:
    """Refuse ``history`` (called ``name``) unless it holds the numbers ``ckpt`` was saved with; a checkpoint saved
    without a history is held to its count of epochs.

    Raises:
        CheckpointError: they differ (the message says where first), or the checkpoint's own history is damaged.
    """
    if ckpt.get("history"):
        try:
            saved = History.from_dict(ckpt["history"])
        except UserError as exc:
            raise CheckpointError(f"the checkpoint's history is damaged ({exc})") from exc
        differs = history.difference(saved, (name, "the checkpoint"))
    else:
        done = ckpt.get("epoch")
        differs = None if len(history) == done else f"{len(history)} epochs in {name}, {done} in the checkpoint"
    if differs:
        raise CheckpointError(f"{name} does not match the history saved in the checkpoint ({differs}): it was "
                              "changed after training or comes from another run; put back the one saved with it")


def keep_resumed(resume: str | os.PathLike, checkpoint_path: str | os.PathLike) -> None:
    """A run resumed into a new folder with nothing left to train: the checkpoint it resumed holds the run."""
    if not Path(checkpoint_path).exists():
        Path(checkpoint_path).parent.mkdir(parents=True, exist_ok=True)
        atomic_copy(resume, checkpoint_path)
