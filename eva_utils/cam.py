"""Moved to :mod:`eva_utils.explain.cam`; this path keeps working."""

from eva_utils._compat import cam_overlay as overlay
from eva_utils._compat import cam_pointing_game as pointing_game
from eva_utils._compat import cam_pointing_hits as pointing_hits
from eva_utils._compat import cam_show_cams as show_cams
from eva_utils.explain.cam import *  # noqa: F403
from eva_utils.explain.cam import __all__  # noqa: F401

__all__ = [*__all__, "overlay", "show_cams", "pointing_hits", "pointing_game"]
