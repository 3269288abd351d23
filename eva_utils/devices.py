"""Moved to :mod:`eva_utils.core.devices`; this path keeps working."""

from eva_utils.core.devices import *  # noqa: F403
from eva_utils.core.devices import __all__  # noqa: F401
