"""Moved to :mod:`eva_utils.data.presets`; this path keeps working."""

from eva_utils.data.presets import *  # noqa: F403
from eva_utils.data.presets import __all__  # noqa: F401
