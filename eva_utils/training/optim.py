"""Optimizers and learning-rate schedules by name, and the seeds of a run.

    optimizer = make_optimizer(model, "sgd", lr=0.4, weight_decay=5e-4)
    scheduler = make_scheduler(optimizer, "onecycle", epochs=20, steps_per_epoch=len(train_loader))
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from eva_utils.core.errors import UserError, unknown_name

__all__ = ["OPTIMIZERS", "SCHEDULERS", "check_positive", "lr_schedule", "make_optimizer", "make_scheduler",
           "seed_epoch", "set_seed", "steps_per_batch"]

OPTIMIZERS = ("sgd", "adam")
SCHEDULERS = ("onecycle", "step", "cosine", "none")


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_epoch(seed: int, epoch: int, train_loader: DataLoader, rank: int = 0) -> None:
    """Make epoch ``epoch``'s randomness a function of (seed, epoch) alone, so a resumed run repeats it.

    Under torchrun each process's augmentations get their own stream (``rank``); the model's randomness is shared.
    """
    set_seed(seed * 1000 + epoch)
    if getattr(train_loader, "generator", None) is not None:
        train_loader.generator.manual_seed(seed * 1000 + epoch + 1_000_003 * rank)
    if hasattr(train_loader.sampler, "set_epoch"):  # a DistributedSampler: this epoch's permutation
        train_loader.sampler.set_epoch(epoch)


def check_positive(name: str, value: float) -> None:
    """Raise :class:`UserError` (``param=name``) unless ``value`` is a finite number above 0."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise UserError(f"{name} must be a positive number, got {value!r}", param=name)


def make_optimizer(model: nn.Module, name: str = "sgd", lr: float = 0.4, momentum: float = 0.9, nesterov: bool = True,
                   weight_decay: float = 5e-4) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or Adam over the trainable parameters.

    Raises:
        UserError: unknown name (lists the valid ones) or ``lr <= 0``.
    """
    check_positive("lr", lr)
    params = [p for p in model.parameters() if p.requires_grad]
    key = name.lower()
    if key == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                               weight_decay=weight_decay)
    if key == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise unknown_name("optimizer", name, OPTIMIZERS)


def make_scheduler(optimizer: torch.optim.Optimizer, name: str = "onecycle", epochs: int = 20, steps_per_epoch: int = 1,
                   max_lr: float | None = None, pct_start: float = 0.25, step_size: int = 6,
                   gamma: float = 0.1) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A learning-rate schedule by name.

    ``onecycle`` (stepped per batch): linear warm-up over ``pct_start`` of training to ``max_lr`` (default: the
    optimizer's lr), then linear decay to ~0; it carries ``steps_per_epoch`` (in its state too) for resume's checks.
    ``step`` (per epoch): multiply by ``gamma`` every ``step_size`` epochs. ``cosine`` (per epoch): cosine decay to 0.
    ``none``: constant.

    Raises:
        UserError: unknown name (lists the valid ones), or epochs / steps not positive.
    """
    check_positive("epochs", epochs)
    check_positive("steps_per_epoch", steps_per_epoch)
    key = name.lower().replace("-", "").replace("_", "")
    sched = torch.optim.lr_scheduler
    if key == "onecycle":
        return _one_cycle(optimizer, epochs, steps_per_epoch, max_lr, pct_start)
    if key in ("step", "steplr"):
        return sched.StepLR(optimizer, step_size=step_size, gamma=gamma)
    if key in ("cosine", "cos"):
        return sched.CosineAnnealingLR(optimizer, T_max=int(epochs))
    if key == "none":
        return None
    raise unknown_name("scheduler", name, SCHEDULERS)


def _one_cycle(optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int, max_lr: float | None,
               pct_start: float) -> torch.optim.lr_scheduler.OneCycleLR:
    """Linear warm-up to ``max_lr`` (default: the optimizer's lr) over ``pct_start`` of the steps, then linear decay."""
    peak = max_lr if max_lr is not None else optimizer.param_groups[0]["lr"]
    check_positive("max_lr", peak)
    total = int(epochs) * int(steps_per_epoch)
    if total < 4:
        raise UserError(f"onecycle needs at least 4 steps in all, got {total}: train longer or use another scheduler",
                        param="epochs")
    # each phase needs 2 or more steps (OneCycleLR divides by the phase length minus one)
    pct_start = min(max(pct_start, 2 / total), 1 - 2 / total)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=peak, epochs=int(epochs), steps_per_epoch=int(steps_per_epoch), pct_start=pct_start,
        anneal_strategy="linear", div_factor=25.0, final_div_factor=1e4, three_phase=False,
    )
    scheduler.steps_per_epoch = int(steps_per_epoch)  # OneCycleLR keeps only the total; checkpoint's resume checks it
    return scheduler


def steps_per_batch(scheduler: object) -> bool:
    """Whether ``fit`` steps ``scheduler`` after every batch (OneCycleLR) rather than after every epoch."""
    return isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR)


def lr_schedule(name: str, lr: float, epochs: int, steps_per_epoch: int, **settings: float) -> list[float]:
    """The learning rate of every training step (``epochs * steps_per_epoch`` of them) under schedule ``name``,
    as ``fit`` steps it (one cycle per batch, the others per epoch), from a throwaway optimizer.

    Args:
        name, lr, epochs, steps_per_epoch: as for :func:`make_scheduler` (``lr`` is one cycle's peak).
        **settings: ``pct_start``, ``step_size``, ``gamma``.
    """
    optimizer = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=lr)
    scheduler = make_scheduler(optimizer, name, epochs, steps_per_epoch, max_lr=lr, **settings)
    per_batch, lrs = steps_per_batch(scheduler), []
    for _ in range(int(epochs)):
        for _ in range(int(steps_per_epoch)):
            lrs.append(optimizer.param_groups[0]["lr"])
            if per_batch:
                optimizer.step()
                scheduler.step()
        if scheduler is not None and not per_batch:
            optimizer.step()
            scheduler.step()
    return lrs
