"""Moved to :mod:`eva_utils.explain.faithfulness`; this path keeps working."""

from eva_utils.explain.faithfulness import *  # noqa: F403
from eva_utils.explain.faithfulness import __all__  # noqa: F401
