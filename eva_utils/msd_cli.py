"""Moved to :mod:`eva_utils.apps.cli_msd`; this path keeps working."""

from eva_utils.apps.cli_msd import *  # noqa: F403
from eva_utils.apps.cli_msd import __all__  # noqa: F401
