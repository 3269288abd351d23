"""Moved to :mod:`eva_utils.explain.tracking`; this path keeps working."""

from eva_utils.explain.tracking import *  # noqa: F403
from eva_utils.explain.tracking import __all__  # noqa: F401
