"""Moved to :mod:`eva_utils.apps.cli_cam`; this path keeps working."""

from eva_utils.apps.cli_cam import *  # noqa: F403
from eva_utils.apps.cli_cam import __all__  # noqa: F401
