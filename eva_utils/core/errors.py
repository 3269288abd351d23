"""Exceptions for mistakes a user can fix (an unknown model name, a missing data folder, a corrupt checkpoint).

The command line turns them into one readable line and exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

__all__ = ["PROCESS_ERRORS", "UserError", "DataNotFoundError", "CheckpointError", "first_line", "refused_global",
           "unknown_name"]

PROCESS_ERRORS = "EVA_UTILS_PROCESS_ERRORS"
"""Environment variable: a folder where each process of ``train --nproc`` leaves its one-line error for the launcher,
which says it once (not once per process)."""


class UserError(ValueError):
    """Bad input: the message says what was wrong and what to do.

    Library code names the parameter (``amp=False``), never a command-line flag; ``param`` says which parameter was
    wrong, so that the command line can name its flag instead (``eva_utils.apps.cli``).
    """

    def __init__(self, *args: object, param: str | None = None) -> None:
        super().__init__(*args)
        self.param = param


class DataNotFoundError(UserError, FileNotFoundError):
    """A data set or file that should exist does not."""


class CheckpointError(UserError):
    """A checkpoint that cannot be used: corrupt, truncated or of another model."""


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> UserError:
    """Build the error for a name that is not one of ``valid``, with close matches first.

    Args:
        kind: what was being looked up, e.g. ``"model"``.
        name: what the user asked for.
        valid: the names that exist.

    Returns:
        A ``UserError`` to raise, e.g. ``unknown model 'resnet19'; did you mean resnet18? valid: ...``.
    """
    valid = sorted(valid)
    close = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ";"
    return UserError(f"unknown {kind} {name!r}{hint} valid {kind} names: {', '.join(valid)}")


def refused_global(exc: BaseException) -> str | None:
    """The pickled global that ``torch.load(weights_only=True)`` refused; None for a file that is simply not a readable
    torch file (corrupt, truncated, a web page...)."""
    # torch says "GLOBAL x was not an allowed global", or for os/posix/subprocess "... whose module m is blocked"
    found = re.search(r"GLOBAL (\S+) (?:was not an allowed global|whose module \S+ is blocked)", str(exc))
    return found.group(1) if found else None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
