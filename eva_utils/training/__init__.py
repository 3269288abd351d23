"""The training layer. Its names of eva_utils 0.1.0 are re-exported here (``eva_utils.training.X`` keeps working)."""

from eva_utils.training.engine import *  # noqa: F403
from eva_utils.training.engine import __all__  # noqa: F401
