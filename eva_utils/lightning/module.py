"""``LitClassifier``: any of the package's classifiers as a ``LightningModule``, trained as :func:`~eva_utils.training.fit`
trains it.

    lit = LitClassifier(get_model("resnet18", 10, width=16), TrainConfig.demo(epochs=3))
    make_trainer(lit.config).fit(lit, datamodule=CifarDataModule(lit.config))

The same pieces as ``fit`` and ``training.recipe.train_run``, not copies of them:

* the loss: cross-entropy with ``config.label_smoothing`` through ``training.engine.multi_exit_loss`` (the mean over
  the exits of a multi-exit model such as MSD-Net); accuracy is the last exit's; validation uses the same loss;
* ``configure_optimizers``: ``training.optim.make_optimizer`` and ``make_scheduler`` with the config's settings,
  OneCycleLR stepped after every batch (``"interval": "step"``), any other schedule after every epoch, as
  ``training.optim.steps_per_batch`` decides for ``fit``;
* each epoch's randomness (shuffle order, augmentations, the global seeds) from ``training.optim.seed_epoch``, as
  ``fit`` seeds it. Lightning 2.x makes epoch 0's batch iterator when it loads the training data, before any epoch
  hook, and later epochs' iterators after ``on_train_epoch_start``: :class:`~eva_utils.lightning.CifarDataModule`
  seeds epoch 0 as it hands its loader over, and this module seeds epochs 1 on in ``on_train_epoch_start``.

Logged (``self.log``): ``train_loss``, ``train_acc`` per epoch, ``train_batch_loss`` and ``lr`` per step (the rate the
batch used), ``val_loss``, ``val_acc`` (and ``val_acc_exit{i}`` for multi-exit models) per validation, all weighted by
batch size, so they equal ``training.evaluate``'s sample-weighted means; ``test_*`` likewise for ``trainer.test``.
Mixed precision is the Trainer's ``precision`` (:func:`~eva_utils.lightning.make_trainer` maps ``config.amp`` as ``fit``
decides it); ``config.channels_last`` is not applied here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from eva_utils.core.errors import UserError
from eva_utils.training.engine import multi_exit_loss
from eva_utils.training.optim import make_optimizer, make_scheduler, seed_epoch, steps_per_batch
from eva_utils.training.recipe import TrainConfig

__all__ = ["LitClassifier"]

Batch = tuple[torch.Tensor, torch.Tensor]


def _exits(outputs: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """A model's logits as a list: one entry, or one per exit (shallowest first)."""
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


class LitClassifier(pl.LightningModule):
    """A classifier trained with the package's loss, optimizer and schedule, and ``fit``'s seeding.

    Args:
        model: e.g. ``get_model(config.model, num_classes, config.width)``; kept as ``self.model`` (its layer
            names, ``layer0``..``layer4`` for the ResNets, are what Grad-CAM and the tracker use).
        config: the run's settings (optimizer, lr, schedule, epochs, label smoothing, seed); default ``TrainConfig()``.
        steps_per_epoch: optimizer steps per epoch for OneCycleLR; default the Trainer's training batches per epoch
            (after ``limit_train_batches``).

    Raises:
        UserError: an unknown optimizer or schedule (when the Trainer asks for them), or a Trainer whose
            ``max_epochs`` differs from ``config.epochs`` while a schedule depends on the number of epochs.
    """

    def __init__(self, model: nn.Module, config: TrainConfig | None = None, steps_per_epoch: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.config = config if config is not None else TrainConfig()
        self.steps_per_epoch = steps_per_epoch
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.config.label_smoothing)

    def forward(self, images: torch.Tensor) -> torch.Tensor | Sequence[torch.Tensor]:
        """The model's logits for normalised (N, C, H, W) images."""
        return self.model(images)

    def on_train_epoch_start(self) -> None:
        """Seed epochs 1 on as ``fit`` does; epoch 0's loader was seeded when handed over (see the module's docstring)."""
        loader = self.trainer.train_dataloader
        if self.current_epoch > 0 and isinstance(loader, DataLoader):
            seed_epoch(self.config.seed, self.current_epoch, loader, self.trainer.global_rank)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """One batch's loss (``multi_exit_loss`` of cross-entropy with label smoothing); logs loss, accuracy and lr."""
        images, labels = batch  # (N, C, H, W), (N,)
        outputs = self.model(images)
        loss = multi_exit_loss(self.criterion, outputs, labels)
        n = labels.size(0)
        acc = (_exits(outputs)[-1].argmax(1) == labels).float().mean()
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]  # the rate this batch uses
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        self.log("train_acc", acc, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        self.log("train_batch_loss", loss, on_step=True, on_epoch=False, batch_size=n)
        self.log("lr", lr, on_step=True, on_epoch=False, batch_size=n)
        return loss

    def _evaluate(self, batch: Batch, stage: str) -> torch.Tensor:
        """Loss and accuracy of one evaluation batch, logged as ``{stage}_loss``, ``{stage}_acc`` (and per exit)."""
        images, labels = batch  # (N, C, H, W), (N,)
        outs = [o.float() for o in _exits(self.model(images))]
        loss = multi_exit_loss(self.criterion, outs, labels)
        n = labels.size(0)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        accs = [(o.argmax(1) == labels).float().mean() for o in outs]
        self.log(f"{stage}_acc", accs[-1], on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        if len(accs) > 1:
            for i, acc in enumerate(accs):
                self.log(f"{stage}_acc_exit{i}", acc, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """Loss and accuracy of one validation batch (logged as ``val_loss``, ``val_acc``)."""
        return self._evaluate(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """Loss and accuracy of one test batch (logged as ``test_loss``, ``test_acc``)."""
        return self._evaluate(batch, "test")

    def _steps(self) -> int:
        """Optimizer steps per epoch: ``steps_per_epoch``, or the Trainer's training batches per epoch."""
        if self.steps_per_epoch is not None:
            return self.steps_per_epoch
        trainer = self.trainer
        if trainer.estimated_stepping_batches == float("inf"):  # loads the training data when not loaded yet
            raise UserError("the training loader has no length: pass steps_per_epoch", param="steps_per_epoch")
        return -(-int(trainer.num_training_batches) // trainer.accumulate_grad_batches)

    def configure_optimizers(self) -> Any:
        """``make_optimizer`` and ``make_scheduler`` with the config's settings; OneCycleLR per step, others per epoch."""
        config = self.config
        optimizer = make_optimizer(self.model, config.optimizer, lr=config.lr, momentum=config.momentum,
                                   nesterov=config.nesterov, weight_decay=config.weight_decay)
        scheduler = make_scheduler(optimizer, config.scheduler, epochs=config.epochs, steps_per_epoch=self._steps(),
                                   max_lr=config.lr, pct_start=config.pct_start, step_size=config.step_size,
                                   gamma=config.gamma)
        if scheduler is None:
            return optimizer
        per_batch = steps_per_batch(scheduler)
        max_epochs = self.trainer.max_epochs
        if not isinstance(scheduler, torch.optim.lr_scheduler.StepLR) and max_epochs != config.epochs:
            raise UserError(f"the {config.scheduler} schedule is laid out over epochs={config.epochs}, but the Trainer "
                            f"runs max_epochs={max_epochs}: build it with make_trainer(config), or give both the same "
                            "number", param="epochs")
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step" if per_batch else "epoch", "frequency": 1}}
