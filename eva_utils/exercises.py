"""Moved to :mod:`eva_utils.apps.exercises`; this path keeps working."""

from eva_utils.apps.exercises import *  # noqa: F403
from eva_utils.apps.exercises import __all__  # noqa: F401
