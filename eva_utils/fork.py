"""Moved to :mod:`eva_utils.apps.fork`; this path keeps working."""

from eva_utils.apps.fork import *  # noqa: F403
from eva_utils.apps.fork import __all__  # noqa: F401
