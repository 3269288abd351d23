"""Moved to :mod:`eva_utils.apps.argtypes`; this path keeps working."""

from eva_utils.apps.argtypes import *  # noqa: F403
from eva_utils.apps.argtypes import __all__  # noqa: F401
