"""Moved to :mod:`eva_utils.apps.cli`; this path keeps working."""

from eva_utils.apps.cli import *  # noqa: F403
from eva_utils.apps.cli import __all__  # noqa: F401
