"""Moved to :mod:`eva_utils.explain.multiexit`; this path keeps working."""

from eva_utils._compat import multiexit_plot_budget_curve as plot_budget_curve
from eva_utils._compat import multiexit_show_exit_cams as show_exit_cams
from eva_utils.explain.multiexit import *  # noqa: F403
from eva_utils.explain.multiexit import __all__  # noqa: F401

__all__ = [*__all__, "plot_budget_curve", "show_exit_cams"]
