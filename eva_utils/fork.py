"""Moved to :mod:`eva_utils.apps.fork`; this path keeps working."""

from eva_utils.apps.fork import *  # noqa: F403
from eva_utils.apps.fork import __all__  # noqa: F401

if __name__ == "__main__":  # a module, not a command: say which one
    import sys

    print("eva_utils.fork is not a command: run `eva-utils fork` (or `python -m eva_utils fork`); "
          "see `eva-utils fork --help`", file=sys.stderr)
    sys.exit(2)
