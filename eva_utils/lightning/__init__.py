"""The recipe under PyTorch Lightning (an optional extra: the rest of the package never imports it): the model, loss,
optimizer, schedule, loaders and Grad-CAM tracker as a ``LightningModule``, a ``LightningDataModule`` and a ``Callback``.

    pip install "eva-utils[lightning]"

    from eva_utils.lightning import CamTrackerCallback, CifarDataModule, LitClassifier, make_trainer
    config = TrainConfig.demo(epochs=3)                           # one config, as for eva-utils train
    datamodule = CifarDataModule(config)                          # training.recipe.build_loaders' loaders
    lit = LitClassifier(get_model(config.model, 10, config.width), config)
    trainer = make_trainer(config, callbacks=[CamTrackerCallback(n=4, out=config.out)])
    trainer.fit(lit, datamodule=datamodule)                       # cam_evolution.png and .gif in config.out

Nothing here trains differently from :func:`~eva_utils.training.fit`: with the same seed, loaders, optimizer and
schedule, a Lightning run ends with fit's weights (``tests/lightning/test_module.py``).
"""

from __future__ import annotations

from eva_utils.core.errors import UserError

__all__ = ["LIGHTNING_INSTALL", "MIN_LIGHTNING", "CamTrackerCallback", "CifarDataModule", "LightningMissingError",
           "LitClassifier", "make_trainer"]

LIGHTNING_INSTALL = 'pip install "eva-utils[lightning]"'
MIN_LIGHTNING = (2, 4)  # the extra's bound: lightning>=2.4


class LightningMissingError(UserError, ImportError):
    """Lightning is not installed (or too old): the message says how to install it.

    A :class:`UserError` (printed as one line) and an ``ImportError`` (caught as for any optional package).
    """


def _version(text: str) -> tuple[int, ...]:
    """``"2.6.1"`` -> ``(2, 6)``; the digits of each of the first two parts."""
    return tuple(int("".join(c for c in part if c.isdigit()) or "0") for part in text.split(".")[:2])


try:
    import lightning
except ImportError as exc:
    raise LightningMissingError(f"eva_utils.lightning needs PyTorch Lightning: {LIGHTNING_INSTALL}") from exc
if _version(getattr(lightning, "__version__", "0")) < MIN_LIGHTNING:
    raise LightningMissingError(f"eva_utils.lightning needs lightning 2.4 or newer, found {lightning.__version__}: "
                                f"{LIGHTNING_INSTALL}")

# after the check: these import lightning
from eva_utils.lightning.callbacks import CamTrackerCallback
from eva_utils.lightning.datamodule import CifarDataModule
from eva_utils.lightning.module import LitClassifier
from eva_utils.lightning.trainer import make_trainer
