"""Tests for eva_utils.lightning.datamodule: the recipe's own loaders, and every epoch's batches as ``seed_epoch`` makes them.

The oracle is ``training.recipe.build_loaders`` itself, iterated after ``training.optim.seed_epoch``.

Run: python -m pytest tests/lightning/test_datamodule.py -q    (CPU, seconds)
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("lightning")

import lightning.pytorch as pl

from eva_utils.lightning import CifarDataModule, LitClassifier
from eva_utils.models import get_model
from eva_utils.training.optim import seed_epoch
from eva_utils.training.recipe import build_loaders

CPU = torch.device("cpu")


def test_the_loaders_are_the_recipes_own(tmp_path, tiny_config):
    config = tiny_config(tmp_path, batch_size=64)
    datamodule = CifarDataModule(config)
    train_loader, test_loader = build_loaders(config, CPU)
    mine = datamodule.train_dataloader()
    assert mine.batch_size == train_loader.batch_size == 64 and mine.drop_last and len(mine) == len(train_loader)
    assert datamodule.val_dataloader() is datamodule.test_dataloader()  # validation is the test split, as in fit
    assert datamodule.val_dataloader().batch_size == test_loader.batch_size == 256
    for a, b in zip(datamodule.val_dataloader(), test_loader, strict=True):  # in order, the same tensors
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert datamodule.classes == tuple(test_loader.dataset.classes) and datamodule.num_classes == 10


class _Batches(pl.Callback):
    """The images of every training batch a Trainer hands to the model, per epoch."""

    def __init__(self):
        self.seen: dict[int, list[torch.Tensor]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.setdefault(trainer.current_epoch, []).append(batch[0].clone())


def test_every_epoch_gets_the_batches_seed_epoch_gives_augmentations_included(tmp_path, tiny_config, quiet_trainer):
    config = tiny_config(tmp_path, augment=True, max_batches=2, scheduler="none")  # flips, crops, cutout: random
    batches = _Batches()
    trainer = quiet_trainer(config, callbacks=[batches])
    trainer.fit(LitClassifier(get_model("resnet18", 10, 4), config), datamodule=CifarDataModule(config))
    train_loader, _ = build_loaders(config, CPU)
    for epoch in (0, 1):
        seed_epoch(config.seed, epoch, train_loader)
        expected = iter(train_loader)
        for got in batches.seen[epoch]:
            assert torch.equal(got, next(expected)[0])
    assert len(batches.seen[0]) == 2 and not torch.equal(batches.seen[0][0], batches.seen[1][0])
