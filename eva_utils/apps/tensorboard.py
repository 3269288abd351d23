"""TensorBoard logs of a run: loss, accuracy and learning rate, and a :class:`~eva_utils.explain.tracking.CamTracker`'s maps.

``TensorBoardLogger`` is a callback for :func:`~eva_utils.training.fit` (``callbacks=[tracker, logger]``) that
logs at the global step (batches seen). It needs ``tensorboard`` (``pip install "eva-utils[tensorboard]"``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eva_utils.core.checks import positive_int
from eva_utils.core.errors import UserError
from eva_utils.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD, denormalize
from eva_utils.explain.tracking import CamTracker
from eva_utils.plots.cams import overlay
from eva_utils.training.history import Callback, History

__all__ = ["TENSORBOARD_INSTALL", "TensorBoardLogger", "log_tracked_maps"]

TENSORBOARD_INSTALL = 'pip install "eva-utils[tensorboard]"'


class TensorBoardLogger(Callback):
    """Loss, accuracy and learning rate of a run, and a tracker's maps, as TensorBoard event files in ``log_dir``.

    Args:
        log_dir: the folder ``%tensorboard --logdir`` is pointed at.
        tracker: a :class:`CamTracker` that runs before this logger in ``callbacks``; its maps are logged per epoch.
        steps_per_epoch: batches per epoch, to place epoch values at the global step.
        mean: normalisation mean of the tracked images (for the overlays).
        std: normalisation std.

    Raises:
        UserError: tensorboard is not installed (the message says how to install it).
    """

    def __init__(self, log_dir: str | os.PathLike, tracker: CamTracker | None = None, steps_per_epoch: int = 1,
                 mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise UserError(f"TensorBoard logging needs the tensorboard package: {TENSORBOARD_INSTALL} "
                            "(Colab has it already)") from exc
        self.steps_per_epoch = positive_int(steps_per_epoch, "steps_per_epoch")
        self.tracker = tracker
        self.mean, self.std = mean, std
        self.log_dir = Path(log_dir)
        self._writer_class = SummaryWriter
        self.writer: Any = None  # opened at the run's first step (see _open)
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot write TensorBoard logs into {log_dir} ({exc}): choose another folder") from exc

    def _open(self, first_step: int) -> None:
        """Open the event writer at this run's first step; a resumed run purges what was logged from it on."""
        if self.writer is None:
            self.writer = self._writer_class(str(self.log_dir), purge_step=first_step if first_step > 1 else None)

    def on_batch_end(self, step: int, loss: float, lr: float) -> None:
        self._open(step)
        self.writer.add_scalar("lr", lr, step)
        self.writer.add_scalar("loss/train_batch", loss, step)

    def on_epoch_end(self, epoch: int, history: History) -> None:
        step = epoch * self.steps_per_epoch
        self._open(step)
        for name, value in (("loss/train", history.train_loss[-1]), ("loss/test", history.test_loss[-1]),
                            ("accuracy/train", history.train_acc[-1]), ("accuracy/test", history.test_acc[-1])):
            self.writer.add_scalar(name, value, step)
        self.writer.add_scalar("epoch", epoch, step)
        if self.tracker is not None and self.tracker.epochs and self.tracker.epochs[-1] == epoch:
            log_tracked_maps(self.writer, self.tracker, step, self.mean, self.std)
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def log_tracked_maps(writer: Any, tracker: CamTracker, step: int, mean: Sequence[float] = CIFAR10_MEAN,
                     std: Sequence[float] = CIFAR10_STD) -> None:
    """The tracker's latest maps (of each image's true class) as overlays on its images: one TensorBoard image grid
    per layer at ``step``, into ``writer`` (a ``SummaryWriter``; a Lightning ``TensorBoardLogger``'s ``experiment``).
    ``mean``/``std``: the normalisation of the tracker's images."""
    rgb = denormalize(tracker.images, mean, std)  # (N, H, W, 3)
    for layer, maps in tracker.maps.items():
        h, w = tracker.sizes[layer]
        shown = overlay(rgb, maps[-1].astype(np.float32))  # (N, H, W, 3)
        writer.add_images(f"gradcam/{layer} ({h}x{w} map)", shown, step, dataformats="NHWC")
