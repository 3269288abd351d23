"""Moved to :mod:`eva_utils.data.labels`; this path keeps working."""

from eva_utils.data.labels import *  # noqa: F403
from eva_utils.data.labels import __all__  # noqa: F401
