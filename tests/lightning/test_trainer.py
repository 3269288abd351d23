"""Tests for eva_utils.lightning.trainer: make_trainer runs a TrainConfig as fit runs it.

Run: python -m pytest tests/lightning/test_trainer.py -q    (CPU, seconds)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("lightning.pytorch")

from eva_utils.core.errors import UserError
from eva_utils.lightning.trainer import PRECISIONS, make_trainer, trainer_settings
from eva_utils.training.recipe import TrainConfig


def test_the_trainer_takes_the_configs_epochs_batches_device_and_folders(tmp_path):
    pytest.importorskip("tensorboard")
    config = TrainConfig(epochs=3, max_batches=2, device="cpu", progress=False, out=str(tmp_path / "run"),
                         tensorboard=str(tmp_path / "tb"))
    trainer = make_trainer(config, enable_model_summary=False)
    assert trainer.max_epochs == 3 and trainer.limit_train_batches == 2 and trainer.limit_val_batches == 2
    assert trainer.num_sanity_val_steps == 0  # fit runs no validation before training
    assert trainer.precision == "32-true"  # amp=True means float32 on the CPU, as fit decides
    assert trainer.default_root_dir == str(tmp_path / "run")
    assert Path(trainer.logger.log_dir) == tmp_path / "tb"  # the config's TensorBoard folder itself, as fit writes it


def test_overrides_win_and_without_max_batches_every_batch_runs(tmp_path):
    config = TrainConfig(epochs=3, device="cpu", out=str(tmp_path / "run"))
    assert trainer_settings(config)["limit_train_batches"] == 1.0
    assert make_trainer(config, max_epochs=5, logger=False, enable_model_summary=False).max_epochs == 5


def test_every_precision_fit_can_choose_has_its_lightning_name():
    assert PRECISIONS == {None: "32-true", torch.bfloat16: "bf16-mixed", torch.float16: "16-mixed"}


def test_a_device_that_is_not_here_is_refused():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(UserError):
        trainer_settings(TrainConfig(device="cuda"))
