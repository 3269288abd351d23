"""Moved to :mod:`eva_utils.training.checkpoint`; this path keeps working."""

from eva_utils.training.checkpoint import *  # noqa: F403
from eva_utils.training.checkpoint import __all__  # noqa: F401
