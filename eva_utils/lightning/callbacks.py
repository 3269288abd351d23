"""``CamTrackerCallback``: :class:`~eva_utils.explain.tracking.CamTracker` as a Lightning ``Callback``: the Grad-CAM of
fixed test images at chosen layers, before training and after every validation, as ``eva-utils train --track-cams``.

    callback = CamTrackerCallback(n=4, layers=("layer3", "layer4"), out="runs/lit")   # 4 test images of the datamodule
    trainer = make_trainer(config, callbacks=[callback])
    trainer.fit(lit, datamodule=CifarDataModule(config))
    callback.tracker.evolution()              # layer -> (epochs, N, H, W); callback.files: the figure, GIF and maps

The maps are the tracker's; a Lightning ``TensorBoardLogger`` of the trainer gets them as overlays under
``apps.tensorboard``'s tags at the global step; at the end of training ``apps.runs.write_cam_evolution`` writes
``cam_evolution.png``, ``.gif`` and ``.npz`` into ``out``. Rank 0 alone records, logs and writes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from eva_utils.apps.runs import write_cam_evolution
from eva_utils.apps.tensorboard import log_tracked_maps  # re-exported: the one home of the TensorBoard images
from eva_utils.core.errors import UserError
from eva_utils.data.cifar10 import CIFAR10_CLASSES
from eva_utils.explain.tracking import CamTracker, tracked_rows

__all__ = ["CamTrackerCallback", "log_tracked_maps", "tracked_images"]


def tracked_images(dataset: Any, n: int) -> tuple[torch.Tensor, np.ndarray]:
    """``n`` images of ``dataset`` (an ``ArrayDataset``) of different classes, as ``--track-cams`` picks them.

    Returns:
        Normalised images (n, C, H, W) as the dataset's transform gives them, and their labels (n,).
    """
    rows = tracked_rows(dataset.labels, n)
    images = torch.stack([dataset[int(i)][0] for i in rows])  # (n, C, H, W)
    return images, np.asarray(dataset.labels)[rows]


class CamTrackerCallback(pl.Callback):
    """Record the Grad-CAM of fixed images before training and at the end of every validation epoch.

    Args:
        images: normalised (N, C, H, W) images to follow; default ``n`` test images of the trainer's datamodule.
        labels: (N,) their true classes (the class every map explains); needed with ``images``.
        n: how many test images to take when ``images`` is not given (different classes first).
        layers: layer names, as ``layer_cams`` takes them.
        method: a ``layer_cams`` method.
        out: a folder for ``cam_evolution.png``, ``.gif`` and ``.npz`` (the npz after every record); None: none.
        classes: class names for the figures; default the datamodule's, else CIFAR-10's.

    Raises:
        UserError: ``images`` without ``labels``, or no images and no datamodule to take them from.
    """

    def __init__(self, images: torch.Tensor | None = None, labels: Sequence[int] | np.ndarray | None = None, *,
                 n: int = 4, layers: Sequence[str] = ("layer3", "layer4"), method: str = "gradcam",
                 out: str | os.PathLike | None = None, classes: Sequence[str] | None = None) -> None:
        if (images is None) != (labels is None):
            raise UserError("give both images and labels to track, or neither (n test images of the datamodule)",
                            param="labels")
        self.images, self.labels, self.n = images, labels, n
        self.layers, self.method = tuple(layers), method
        self.out = None if out is None else Path(out)
        self.classes = None if classes is None else tuple(classes)
        self.tracker: CamTracker | None = None  # made at the start of fit, on rank 0
        self.files: dict[str, Path] = {}  # what on_train_end wrote

    def _source(self, trainer: pl.Trainer) -> tuple[torch.Tensor, Sequence[int] | np.ndarray, tuple[str, ...]]:
        """The images, labels and class names to track."""
        datamodule = trainer.datamodule
        dataset = datamodule.val_dataloader().dataset if datamodule is not None else None
        classes = self.classes or tuple(getattr(dataset, "classes", CIFAR10_CLASSES))
        if self.images is not None:
            return self.images, self.labels, classes
        if dataset is None or not hasattr(dataset, "labels"):
            raise UserError("CamTrackerCallback takes its images from the trainer's datamodule: train with "
                            "datamodule=CifarDataModule(config), or pass images and labels", param="images")
        return (*tracked_images(dataset, self.n), classes)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Make the tracker (rank 0) and record epoch 0: the untrained network's maps, where the film starts."""
        if not trainer.is_global_zero:
            return
        images, labels, self.classes = self._source(trainer)
        model: nn.Module = getattr(pl_module, "model", pl_module)  # a LitClassifier's network, or the module itself
        path = None if self.out is None else self.out / "cam_evolution.npz"  # atomic_write makes the folder
        self.tracker = CamTracker(model, images, labels, self.layers, self.method, path=path)
        self._record(0)

    def _record(self, epoch: int) -> None:
        """Record the maps at ``epoch`` and keep them in ``out``'s npz (as ``--track-cams`` does after every epoch)."""
        self.tracker.record(epoch)
        if self.tracker.path is not None:
            self.tracker.save(self.tracker.path)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record the maps after epoch ``current_epoch + 1`` and log them to every TensorBoard logger of the trainer."""
        if trainer.sanity_checking or self.tracker is None:
            return
        self._record(trainer.current_epoch + 1)  # a mid-epoch validation's maps are replaced by the epoch's last
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                log_tracked_maps(logger.experiment, self.tracker, trainer.global_step)
                logger.experiment.flush()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write the evolution figure, its GIF and the maps into ``out`` (``apps.runs.write_cam_evolution``)."""
        if self.tracker is not None and self.out is not None and self.tracker.epochs:
            self.files = write_cam_evolution(self.tracker, self.out, self.classes or CIFAR10_CLASSES)
