"""Moved to :mod:`eva_utils.apps.app`; this path keeps working."""

from eva_utils.apps.app import *  # noqa: F403
from eva_utils.apps.app import __all__  # noqa: F401

if __name__ == "__main__":  # a module, not a command: say which one
    from eva_utils.apps.cli import not_a_command

    raise SystemExit(not_a_command(__spec__.name, "app"))
