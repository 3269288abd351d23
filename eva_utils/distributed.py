"""Moved to :mod:`eva_utils.training.distributed`; this path keeps working."""

from eva_utils.training.distributed import *  # noqa: F403
from eva_utils.training.distributed import __all__  # noqa: F401
