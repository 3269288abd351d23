"""Moved to :mod:`eva_utils.apps.report`; this path keeps working."""

from eva_utils.apps.report import *  # noqa: F403
from eva_utils.apps.report import __all__  # noqa: F401
