"""``LitClassifier``: any of the package's classifiers as a ``LightningModule``, trained as ``training.fit`` trains it.

    lit = LitClassifier(get_model("resnet18", 10, width=16), TrainConfig.demo(epochs=3))
    make_trainer(lit.config).fit(lit, datamodule=CifarDataModule(lit.config))

The same pieces as ``fit`` and ``training.recipe.train_run``, not copies of them: the loss (``multi_exit_loss`` of
cross-entropy with ``config.label_smoothing``; accuracy is the last exit's), the optimizer and schedule of the config
(OneCycleLR stepped every batch, the others every epoch), and each epoch's randomness from ``seed_epoch``. Lightning
2.x makes epoch 0's batch iterator before any epoch hook: :class:`~eva_utils.lightning.CifarDataModule` seeds epoch 0
as it hands its loader over, and this module seeds epochs 1 on in ``on_train_epoch_start``.

Logged: ``train_loss``, ``train_acc`` per epoch, ``train_batch_loss`` and ``lr`` per step, ``val_loss``, ``val_acc``
(and ``val_acc_exit{i}`` for multi-exit models) per validation, weighted by batch size as ``training.evaluate``'s
means; ``test_*`` likewise. Mixed precision is the Trainer's (see ``make_trainer``); ``config.channels_last`` is not
applied here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from eva_utils.core.errors import UserError
from eva_utils.evaluation.metrics import exit_logits
from eva_utils.training.engine import multi_exit_loss
from eva_utils.training.optim import seed_epoch, steps_per_batch
from eva_utils.training.recipe import TrainConfig, config_optimizer, config_scheduler

__all__ = ["LitClassifier"]

Batch = tuple[torch.Tensor, torch.Tensor]


class LitClassifier(pl.LightningModule):
    """A classifier trained with the package's loss, optimizer and schedule, and ``fit``'s seeding.

    Args:
        model: e.g. ``get_model(config.model, num_classes, config.width)``; kept as ``self.model`` (for Grad-CAM).
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
        acc = (exit_logits(outputs)[-1].argmax(1) == labels).float().mean()
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]  # the rate this batch uses
        self.log_dict({"train_loss": loss, "train_acc": acc}, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        self.log_dict({"train_batch_loss": loss, "lr": lr}, on_step=True, on_epoch=False, batch_size=n)
        return loss

    def _evaluate(self, batch: Batch, stage: str) -> torch.Tensor:
        """Loss and accuracy of one evaluation batch, logged as ``{stage}_loss``, ``{stage}_acc`` (and per exit)."""
        images, labels = batch  # (N, C, H, W), (N,)
        outs = [o.float() for o in exit_logits(self.model(images))]
        loss = multi_exit_loss(self.criterion, outs, labels)
        accs = [(o.argmax(1) == labels).float().mean() for o in outs]
        logged = {f"{stage}_loss": loss, f"{stage}_acc": accs[-1]}
        if len(accs) > 1:
            logged.update({f"{stage}_acc_exit{i}": acc for i, acc in enumerate(accs)})
        self.log_dict(logged, on_step=False, on_epoch=True, batch_size=labels.size(0), sync_dist=True)
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
        optimizer = config_optimizer(config, self.model)
        scheduler = config_scheduler(config, optimizer, self._steps())
        if scheduler is None:
            return optimizer
        max_epochs = self.trainer.max_epochs
        if not isinstance(scheduler, torch.optim.lr_scheduler.StepLR) and max_epochs != config.epochs:
            raise UserError(f"the {config.scheduler} schedule is laid out over epochs={config.epochs}, but the Trainer "
                            f"runs max_epochs={max_epochs}: build it with make_trainer(config), or give both the same "
                            "number", param="epochs")
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step" if steps_per_batch(scheduler) else "epoch",
                                 "frequency": 1}}
