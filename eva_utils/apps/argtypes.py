"""The building blocks of every ``eva-utils`` sub-command: the parser, how a command's errors end
(one line, exit 2), and argparse types that parse numbers (the functions that use them check the rest)."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

from eva_utils.core.errors import UserError

__all__ = ["Parser", "count_from_back", "finite_float", "non_negative_int", "positive_float", "positive_int", "run_parsed"]


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


def _number(text: str, kind: type, expected: str) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def _rule(value: float, holds: bool, rule: str) -> float:
    if not holds:
        raise argparse.ArgumentTypeError(f"must be {rule}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An integer > 0."""
    value = _number(text, int, "a positive integer")
    return _rule(value, value > 0, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0 (an image number, a row limit where 0 means all)."""
    value = _number(text, int, "a whole number")
    return _rule(value, value >= 0, "0 or more")


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _number(text, float, "a positive number")
    return _rule(value, math.isfinite(value) and value > 0, "a positive number")


def finite_float(text: str) -> float:
    """Any finite number (not nan or inf)."""
    value = _number(text, float, "a number")
    return _rule(value, math.isfinite(value), "a finite number")


def count_from_back(text: str) -> int:
    """A conv layer counted from the back: 1 = the last."""
    value = _number(text, int, "a count from the back (1 = the last conv layer)")
    return _rule(value, value > 0, "1 or more: counts from the back start at 1 (1 = the last conv layer)")
