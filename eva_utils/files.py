"""Moved to :mod:`eva_utils.core.files`; this path keeps working."""

from eva_utils.core.files import *  # noqa: F403
from eva_utils.core.files import __all__  # noqa: F401
