"""The building blocks of every ``eva-utils`` sub-command: the parser, how a command's errors end
(one line, exit 2), and argparse types that parse numbers (the functions that use them check the rest)."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

from .errors import UserError

__all__ = ["Parser", "finite_float", "non_negative_int", "positive_float", "positive_int", "run_parsed"]


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line: ``eva-utils train: error: ... (see --help)``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def run_parsed(parser: argparse.ArgumentParser, argv: Sequence[str] | None, diverged: type[Exception] = ()) -> int:
    """Parse ``argv`` and run the chosen command's ``func``; returns the exit status.

    A :class:`UserError` prints one line and returns 2; ``diverged`` (training's NaN loss) prints its
    message and returns 1; Ctrl-C returns 130. Anything else is a bug and keeps its traceback.
    """
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"eva-utils {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except diverged as exc:
        print(f"eva-utils {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"eva-utils {args.command}: interrupted", file=sys.stderr)
        return 130


def positive_int(text: str) -> int:
    """An integer > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (an image number, a row limit where 0 means all)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value}")
    return value


def finite_float(text: str) -> float:
    """Any finite number (not nan or inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {value}")
    return value
