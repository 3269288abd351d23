"""Moved to :mod:`eva_utils.data.images`; this path keeps working."""

from eva_utils.data.images import *  # noqa: F403
from eva_utils.data.images import __all__  # noqa: F401
