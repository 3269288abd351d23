"""Moved to :mod:`eva_utils.core.errors`; this path keeps working."""

from eva_utils.core.errors import *  # noqa: F403
from eva_utils.core.errors import __all__  # noqa: F401
