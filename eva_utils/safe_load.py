"""Moved to :mod:`eva_utils.core.safe_load`; this path keeps working."""

from eva_utils.core.safe_load import *  # noqa: F403
from eva_utils.core.safe_load import __all__  # noqa: F401
