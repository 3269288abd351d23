"""Moved to :mod:`eva_utils.apps.report`; this path keeps working."""

from eva_utils.apps.report import *  # noqa: F403
from eva_utils.apps.report import __all__  # noqa: F401

if __name__ == "__main__":  # a module, not a command: say which one
    from eva_utils.apps.cli import not_a_command

    raise SystemExit(not_a_command(__spec__.name, "report"))
