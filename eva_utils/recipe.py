"""Moved to :mod:`eva_utils.training.recipe` (a run with its figures: :mod:`eva_utils.apps.runs`, the notebooks'
Colab helpers: :mod:`eva_utils.apps.colab`, the notebooks' model: :mod:`eva_utils.training.model_to_explain`); this
path keeps working."""

from eva_utils.apps.colab import *  # noqa: F403
from eva_utils.apps.colab import __all__ as _colab
from eva_utils.apps.runs import run_training, write_cam_evolution  # noqa: F401
from eva_utils.training.model_to_explain import SHIPPED_FALLBACK, torchvision_classifier  # noqa: F401
from eva_utils.training.recipe import *  # noqa: F403
from eva_utils.training.recipe import __all__  # noqa: F401

__all__ = [*__all__, *_colab, "run_training", "write_cam_evolution", "SHIPPED_FALLBACK", "torchvision_classifier"]
