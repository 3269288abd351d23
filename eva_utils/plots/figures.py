"""Split by figure family into the modules of :mod:`eva_utils.plots`; this path keeps working."""

from eva_utils.plots import *  # noqa: F403
from eva_utils.plots import __all__  # noqa: F401
