"""Moved to :mod:`eva_utils.training.recipe`; this path keeps working."""

from eva_utils.training.recipe import *  # noqa: F403
from eva_utils.training.recipe import __all__  # noqa: F401
