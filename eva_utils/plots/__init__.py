"""The plots layer. Its names of eva_utils 0.1.0 are re-exported here (``eva_utils.plots.X`` keeps working)."""

from eva_utils.plots.figures import *  # noqa: F403
from eva_utils.plots.figures import __all__  # noqa: F401
