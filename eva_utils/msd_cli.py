"""Moved to :mod:`eva_utils.apps.cli_msd`; this path keeps working."""

from eva_utils.apps.cli_msd import *  # noqa: F403
from eva_utils.apps.cli_msd import __all__  # noqa: F401

if __name__ == "__main__":  # a module, not a command: say which one
    import sys

    print("eva_utils.msd_cli is not a command: run `eva-utils msd` (or `python -m eva_utils msd`); "
          "see `eva-utils msd --help`", file=sys.stderr)
    sys.exit(2)
