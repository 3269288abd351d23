"""Shared by the Lightning tests: a tiny run of the recipe on the bundled sample, and a quiet CPU Trainer."""

from __future__ import annotations

import logging

import pytest

from eva_utils.training.recipe import TrainConfig


def _config(tmp_path, **overrides) -> TrainConfig:
    settings = dict(width=4, data="sample", download=False, epochs=2, batch_size=32, augment=False, num_workers=0,
                    device="cpu", seed=3, max_batches=2, lr=0.05, amp=False, progress=False, out=str(tmp_path / "run"))
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(tmp_path, **overrides)``: ResNet18 width 4 on the sample, 2 epochs of 2 batches, seed 3, CPU."""
    return _config


@pytest.fixture(scope="session")
def quiet_trainer():
    """``quiet_trainer(config, **overrides)``: ``make_trainer(config)`` without logger, checkpoints, summary or bar."""
    from eva_utils.lightning import make_trainer

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # "GPU available: False" and the like

    def build(config, **overrides):
        settings = dict(logger=False, enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False)
        return make_trainer(config, **{**settings, **overrides})

    return build
