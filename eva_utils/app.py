"""Moved to :mod:`eva_utils.apps.app`; this path keeps working."""

from eva_utils.apps.app import *  # noqa: F403
from eva_utils.apps.app import __all__  # noqa: F401
