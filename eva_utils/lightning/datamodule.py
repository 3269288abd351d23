"""``CifarDataModule``: the recipe's loaders (:func:`~eva_utils.training.recipe.build_loaders`) as a ``LightningDataModule``.

    datamodule = CifarDataModule(TrainConfig.demo())      # data="sample": the bundled images, offline
    trainer.fit(lit, datamodule=datamodule)

The loaders are the ones ``eva-utils train`` trains on; the test split is the validation and the test set. The
training loader is handed over seeded for the epoch it is asked for (``training.optim.seed_epoch``): Lightning makes
epoch 0's batch iterator right after asking, and ``LitClassifier`` seeds the later epochs.
"""

from __future__ import annotations

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from eva_utils.core.devices import resolve_device
from eva_utils.training.optim import seed_epoch
from eva_utils.training.recipe import TrainConfig, build_loaders

__all__ = ["CifarDataModule"]


class CifarDataModule(pl.LightningDataModule):
    """Train and test loaders of ``config``, built once by ``build_loaders`` (on first use).

    Args:
        config: the run's settings; validated here.

    Raises:
        UserError: bad settings, or data that cannot be read (when first used).
    """

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.train_loader: DataLoader | None = None
        self.test_loader: DataLoader | None = None

    def setup(self, stage: str | None = None) -> None:
        """Build both loaders (the first time only: every stage uses the same ones)."""
        if self.train_loader is None:
            self.train_loader, self.test_loader = build_loaders(self.config, resolve_device(self.config.device))

    def train_dataloader(self) -> DataLoader:
        """The shuffled training loader, seeded for the Trainer's current epoch as ``fit`` seeds it."""
        self.setup()
        trainer = self.trainer
        epoch = trainer.current_epoch if trainer is not None else 0
        rank = trainer.global_rank if trainer is not None else 0
        seed_epoch(self.config.seed, epoch, self.train_loader, rank)
        return self.train_loader

    def val_dataloader(self) -> DataLoader:
        """The test split, in order (validation is the test set, as in ``fit``)."""
        self.setup()
        return self.test_loader

    test_dataloader = val_dataloader  # the same test split, in order

    @property
    def classes(self) -> tuple[str, ...]:
        """The data's class names (index = label)."""
        self.setup()
        return tuple(self.test_loader.dataset.classes)

    @property
    def num_classes(self) -> int:
        """How many classes the data has (what the model's last layer needs)."""
        return len(self.classes)
