"""The evaluation layer. Its names of eva_utils 0.1.0 are re-exported here (``eva_utils.evaluation.X`` keeps working)."""

from eva_utils.evaluation import localisation
from eva_utils.evaluation.localisation import *  # noqa: F403
from eva_utils.evaluation.metrics import *  # noqa: F403
from eva_utils.evaluation.metrics import __all__  # noqa: F401

__all__ = [*__all__, *localisation.__all__]
