"""Moved to :mod:`eva_utils.apps.cli`; this path keeps working (``python -m eva_utils.cli`` too)."""

from eva_utils.apps.cli import *  # noqa: F403
from eva_utils.apps.cli import __all__, main  # noqa: F401

if __name__ == "__main__":  # python -m eva_utils.cli is the eva-utils command, as in 0.1.0
    raise SystemExit(main())
