"""Moved to :mod:`eva_utils.apps.cli_cam`; this path keeps working (``python -m eva_utils.cam_cli`` too)."""

import sys

from eva_utils.apps.cli_cam import *  # noqa: F403
from eva_utils.apps.cli_cam import __all__, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
