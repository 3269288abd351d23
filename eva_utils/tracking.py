"""Moved to :mod:`eva_utils.explain.tracking` (and ``TensorBoardLogger`` to :mod:`eva_utils.apps.tensorboard`);
this path keeps working."""

from eva_utils.apps.tensorboard import TensorBoardLogger
from eva_utils.explain.tracking import *  # noqa: F403
from eva_utils.explain.tracking import __all__  # noqa: F401

__all__ = [*__all__, "TensorBoardLogger"]
