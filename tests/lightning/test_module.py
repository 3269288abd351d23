"""Tests for eva_utils.lightning.module: LitClassifier trains as ``training.fit`` trains, and logs what ``evaluate`` says.

Oracles: ``fit`` itself (via ``training.recipe.setup_run`` / ``train_run``, as ``eva-utils train`` calls it) on the same
initial weights, loaders, optimizer and schedule; ``training.evaluate`` on the same model.

A Lightning run ends with fit's weights: both make one training iterator per epoch of the same seeded loader.
(Until fit passed its progress bar an iterator, tqdm.auto's asyncio bar called ``iter(train_loader)`` itself and then
iterated the loader again: fit's batch order was that of a generator advanced by one discarded ``iter``.)

Run: python -m pytest tests/lightning/test_module.py -q    (CPU, under a minute)
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

pl = pytest.importorskip("lightning.pytorch")

from eva_utils import models, training
from eva_utils.core.errors import UserError
from eva_utils.lightning import CifarDataModule, LitClassifier
from eva_utils.models import get_model
from eva_utils.training.history import Callback
from eva_utils.training.recipe import setup_run, train_run


class _FitRates(Callback):
    def __init__(self):
        self.lrs: list[float] = []

    def on_batch_end(self, step, loss, lr):
        self.lrs.append(lr)


class _LoggedRates(pl.Callback):
    """The ``lr`` LitClassifier logged at every step."""

    def __init__(self):
        self.lrs: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.lrs.append(trainer.callback_metrics["lr"].item())


def _weights_gap(a: nn.Module, b: nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max((sa[k].double() - sb[k].double()).abs().max().item() for k in sa)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_config, quiet_trainer):
    """One fit run (OneCycle, label smoothing, seed 3, 2 epochs of 2 batches) and a Lightning run from its weights."""
    config = tiny_config(tmp_path_factory.mktemp("fit"), label_smoothing=0.1)
    setup = setup_run(config)
    initial = copy.deepcopy(setup.model)
    fit_rates = _FitRates()
    train_run(setup, callbacks=[fit_rates])
    result = {"config": setup.config, "initial": initial, "fit": setup.model, "fit_lrs": fit_rates.lrs}
    rates = _LoggedRates()
    lit = LitClassifier(copy.deepcopy(initial), setup.config)
    quiet_trainer(setup.config, callbacks=[rates]).fit(lit, datamodule=CifarDataModule(setup.config))
    result["lightning"], result["lightning_lrs"] = lit.model, rates.lrs
    return result


def test_a_lightning_run_ends_with_fits_weights(runs):
    assert _weights_gap(runs["initial"], runs["fit"]) > 1e-3  # it trained
    assert _weights_gap(runs["lightning"], runs["fit"]) <= 1e-5


def test_onecycle_steps_every_batch_as_in_fit(runs):
    assert len(runs["fit_lrs"]) == 4 and len(set(runs["fit_lrs"])) == 4  # warm-up and decay: a new rate every batch
    np.testing.assert_allclose(runs["lightning_lrs"], runs["fit_lrs"], rtol=1e-6)  # logged as float32


def test_a_per_epoch_schedule_steps_once_an_epoch(tmp_path, tiny_config, quiet_trainer):
    config = tiny_config(tmp_path, scheduler="step", step_size=1, gamma=0.5, max_batches=2)
    rates = _LoggedRates()
    lit = LitClassifier(get_model("resnet18", 10, 4), config)
    quiet_trainer(config, callbacks=[rates]).fit(lit, datamodule=CifarDataModule(config))
    np.testing.assert_allclose(rates.lrs, [0.05, 0.05, 0.025, 0.025], rtol=1e-6)
    assert lit.lr_schedulers().last_epoch == 2


def test_the_logged_validation_numbers_are_evaluates(tmp_path, tiny_config, quiet_trainer):
    model = models.pretrained("resnet18_w16_cifar10")  # 84.7% on the 1,000 sample test images: not a trivial number
    config = tiny_config(tmp_path, max_batches=None, label_smoothing=0.1, batch_size=64)  # test batches 256 x 3 + 232
    datamodule = CifarDataModule(config)
    logged = quiet_trainer(config).validate(LitClassifier(model, config), datamodule=datamodule)[0]
    expected = training.evaluate(model, datamodule.test_loader, nn.CrossEntropyLoss(label_smoothing=0.1), device="cpu")
    assert logged["val_acc"] == pytest.approx(expected.acc, abs=1e-6) and 0.8 < expected.acc < 0.9
    assert logged["val_loss"] == pytest.approx(expected.loss, abs=1e-6)


class _TwoExits(nn.Module):
    """A tiny multi-exit classifier: logits of a shallow and a deep head, shallowest first."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.shallow, self.deep = nn.Linear(16, 10), nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 10))

    def forward(self, images):
        features = self.stem(images)
        return [self.shallow(features), self.deep(features)]


def test_a_multi_exit_model_is_scored_per_exit_as_evaluate_scores_it(tmp_path, tiny_config, quiet_trainer):
    torch.manual_seed(0)
    model = _TwoExits()
    config = tiny_config(tmp_path, max_batches=2, label_smoothing=0.0)
    datamodule = CifarDataModule(config)
    logged = quiet_trainer(config).validate(LitClassifier(model, config), datamodule=datamodule)[0]
    expected = training.evaluate(model, datamodule.test_loader, device="cpu", max_batches=2)
    assert logged["val_loss"] == pytest.approx(expected.loss, abs=1e-6)  # the mean of the two exits' losses
    for i, acc in enumerate(expected.exit_acc):
        assert logged[f"val_acc_exit{i}"] == pytest.approx(acc, abs=1e-6)
    assert logged["val_acc"] == pytest.approx(expected.exit_acc[-1], abs=1e-6)


def test_a_trainer_of_other_epochs_than_the_schedule_is_refused(tmp_path, tiny_config, quiet_trainer):
    config = tiny_config(tmp_path)  # onecycle over 2 epochs
    with pytest.raises(UserError, match=r"epochs=2.*max_epochs=3"):
        quiet_trainer(config, max_epochs=3).fit(LitClassifier(get_model("resnet18", 10, 4), config),
                                                datamodule=CifarDataModule(config))
