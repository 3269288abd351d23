"""The ``eva-utils`` command line: ``train``, ``demo``, ``report``, ``cam``, ``msd``, ``app`` and ``fork``.

A thin dispatcher: each command's parser is built by its own module (``COMMANDS``), imported only when that command
is chosen, so ``eva-utils --help`` imports no torch. User errors print one line naming the flag to change (exit 2).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from eva_utils import __version__
from eva_utils.apps.argtypes import Parser, interrupted_status, run_parsed
from eva_utils.core.interrupts import keep_interrupts_sticky

__all__ = ["COMMANDS", "Parser", "build_parser", "main", "not_a_command"]


class Command(NamedTuple):
    """Where a subcommand lives: ``module.register(subparsers)`` adds its parser; ``help`` is its line in --help."""

    module: str
    register: str
    help: str


COMMANDS = {
    "train": Command("eva_utils.apps.cli_train", "add_train_parser",
                     "train a ResNet on CIFAR-10 (default: the 20-epoch ResNet18 recipe)"),
    "demo": Command("eva_utils.apps.cli_train", "add_demo_parser",
                    "offline CPU demo on the bundled CIFAR-10 sample (about a minute)"),
    "report": Command("eva_utils.apps.report", "add_parser", "turn a training run into a coursework submission folder"),
    "cam": Command("eva_utils.apps.cli_cam", "add_parser",
                   "Grad-CAM for any CNN (torchvision name, state dict, TorchScript, checkpoint) on your images"),
    "msd": Command("eva_utils.apps.cli_msd", "add_parser",
                   "evaluate every exit of an MSD-Net checkpoint; per-exit Grad-CAM"),
    "app": Command("eva_utils.apps.cli_app", "add_parser",
                   "an interactive Grad-CAM explorer in the browser (needs eva-utils[app])"),
    "fork": Command("eva_utils.apps.fork", "add_parser", "point the notebooks' install cell and Colab badges at your fork"),
}


class _Commands:
    """The subparsers action as the command modules see it: each parser gets its one-line help from ``COMMANDS``."""

    def __init__(self, action: Any) -> None:
        self.action = action

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return self.action.add_parser(name, help=COMMANDS[name].help, **kwargs)


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The ``eva-utils`` parser.

    Args:
        commands: the subcommands whose parsers to build (modules imported); the others are only named. None: all.

    Returns:
        The parser; a built subcommand's parser sets ``func``, the function that runs it.
    """
    wanted = set(COMMANDS if commands is None else commands)
    parser = Parser(prog="eva-utils", description="Train CNNs on CIFAR-10 and look inside them with Grad-CAM.")
    parser.add_argument("--version", action="version", version=f"eva-utils {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, command in COMMANDS.items():
        if name in wanted:
            getattr(importlib.import_module(command.module), command.register)(_Commands(sub))
        else:
            sub.add_parser(name, help=command.help, add_help=False)  # named only: never parsed (see main)
    return parser


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names (its first word that is not an option), or None (``--help``, a typo)."""
    word = next((arg for arg in argv if not arg.startswith("-")), None)
    return word if word in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for user errors, 1 for a diverged training)."""
    if argv is None:  # the process's own command line: Ctrl-C is an interrupt until the process has exited
        keep_interrupts_sticky()
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = _chosen(argv)
    try:  # importing a command's module (torch) takes seconds: a Ctrl-C then is an interrupt too
        parser = build_parser([chosen] if chosen else [])
        diverged: tuple[type[Exception], ...] = ()
        if chosen in ("train", "demo"):
            from eva_utils.training.distributed import ProcessFailedError
            from eva_utils.training.engine import TrainingDivergedError

            diverged = (TrainingDivergedError, ProcessFailedError)
    except KeyboardInterrupt:
        return interrupted_status(chosen)
    parser.set_defaults(argv=argv)  # what train --nproc hands on to the processes it starts
    return run_parsed(parser, argv, diverged=diverged)


def not_a_command(module: str, command: str) -> int:
    """What ``python -m MODULE`` does for a module that holds a command: one line saying which command to run; 2."""
    print(f"{module} is not a command: run `eva-utils {command}` (or `python -m eva_utils {command}`); see "
          f"`eva-utils {command} --help`", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
