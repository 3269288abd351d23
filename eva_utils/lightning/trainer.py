"""``make_trainer``: a Lightning ``Trainer`` set up from a :class:`~eva_utils.training.recipe.TrainConfig` as ``fit`` runs it.

    trainer = make_trainer(config, callbacks=[CamTrackerCallback(out=config.out)])   # any Trainer argument overrides

``max_epochs`` is ``config.epochs`` (the schedule is laid out over it), the device ``config.device``, the precision
what ``training.precision.mixed_precision`` decides for ``fit``, ``config.max_batches`` limits every pass, there is no
sanity check (``fit`` has none), the progress bar follows ``config.progress``, files go into ``config.out``, and with
``config.tensorboard`` the logger is a TensorBoard logger writing into that very folder.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from eva_utils.core.devices import resolve_device
from eva_utils.training.precision import mixed_precision
from eva_utils.training.recipe import TrainConfig

__all__ = ["PRECISIONS", "make_trainer", "trainer_settings"]

PRECISIONS = {None: "32-true", torch.bfloat16: "bf16-mixed", torch.float16: "16-mixed"}
"""``Precision.dtype`` (``fit``'s decision) -> Lightning's ``precision`` argument."""


def trainer_settings(config: TrainConfig) -> dict[str, Any]:
    """The ``Trainer`` arguments of ``config`` (see the module's docstring), before any override.

    Raises:
        UserError: a device that does not exist here.
    """
    device = resolve_device(config.device)
    limit = config.max_batches if config.max_batches is not None else 1.0  # an int: batches; 1.0: all of them
    settings: dict[str, Any] = dict(
        max_epochs=config.epochs, accelerator=device.type,
        devices=[device.index] if device.type == "cuda" and device.index is not None else 1,
        precision=PRECISIONS[mixed_precision(device, config.amp).dtype],
        limit_train_batches=limit, limit_val_batches=limit, limit_test_batches=limit, num_sanity_val_steps=0,
        enable_progress_bar=config.progress, default_root_dir=config.out,
    )
    if config.tensorboard:
        from lightning.pytorch.loggers import TensorBoardLogger

        settings["logger"] = TensorBoardLogger(config.tensorboard, name="", version="")  # event files in that folder
    return settings


def make_trainer(config: TrainConfig, **overrides: Any) -> pl.Trainer:
    """A ``Trainer`` with :func:`trainer_settings` of ``config``; ``overrides`` (any Trainer argument) win.

    Raises:
        UserError: a device that does not exist here.
    """
    return pl.Trainer(**{**trainer_settings(config), **overrides})
