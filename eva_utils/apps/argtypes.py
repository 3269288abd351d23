"""The building blocks of every ``eva-utils`` sub-command: the parser, how a command's errors end
(one line naming the flag to change, exit 2), and argparse types that parse numbers (the functions that
use them check the rest)."""

from __future__ import annotations

import argparse
import errno
import math
import os
import re
import signal
import sys
import traceback
from collections.abc import Callable, Sequence

from eva_utils.core import checks
from eva_utils.core.errors import PROCESS_ERRORS, UserError, first_line
from eva_utils.core.interrupts import sticky_interrupts, stop_if_interrupted, stopping

__all__ = ["FLAGS", "Parser", "count_from_back", "error_line", "finite_float", "non_negative_int", "positive_float",
           "positive_int", "run_parsed"]

FLAGS = {
    "amp": "--no-amp", "arch": "--arch", "augment_on": "--augment-on", "augmentation": "--augmentation",
    "batch_size": "--batch-size", "data": "--data", "data_dir": "--data-dir", "device": "--device",
    "download": "--no-download", "epochs": "--epochs", "figures": "--figures", "folder": "--space", "lr": "--lr",
    "lr_find": "--lr find", "max_batches": "--max-batches", "model": "--model", "nproc": "--nproc",
    "optimizer": "--optimizer", "num_classes": "--num-classes", "num_workers": "--workers", "out": "--out",
    "overwrite": "--overwrite", "resume": "--resume", "save_dir": "--save_dir", "scheduler": "--scheduler",
    "seed": "--seed", "sync_batchnorm": "--sync-bn", "sync_bn": "--sync-bn", "track_cams": "--track-cams",
    "track_layers": "--track-layers", "unsafe_pickle": "--unsafe-pickle", "weights": "--weights", "width": "--width",
}
"""A library parameter's name (``UserError.param``) -> the command-line flag that sets it."""
_SWITCHED_ON = {"amp": "leave out --no-amp", "download": "leave out --no-download"}
"""Switches that are on unless a ``--no-...`` flag turns them off: ``download=True`` is the flag left out."""


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line: ``eva-utils train: error: ... (see --help)``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


_DISK_FAULTS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)  # a full disk, a quota, a read-only file system
# gloo's and NCCL's words when another process of the run has gone (killed, crashed) in the middle of a collective
_PEER_LOST = re.compile(r"Connection (closed|reset) by peer|remote worker crashing|NCCL communicator was aborted")
# torch's words when a DataLoader worker dies (the kernel's OOM killer, kill -9): the pid(s), then what happened
_WORKER_DIED = re.compile(r"DataLoader worker \((pid \d+|pid\(s\) [\d, ]+)\) (is killed by signal: [^.]*|exited unexpectedly)")


def run_parsed(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
               diverged: type[Exception] | tuple[type[Exception], ...] = ()) -> int:
    """Parse ``argv`` and run the chosen command's ``func``; returns the exit status.

    A :class:`UserError` prints one line and returns 2, as does a full disk; ``diverged`` (training's NaN loss)
    prints its message and returns 1, as does a loader worker that died; Ctrl-C returns 130. Anything else is a bug
    and keeps its traceback.
    """
    args = parser.parse_args(argv)
    try:
        with sticky_interrupts():  # a Ctrl-C that Python swallowed still ends the command with 130
            status = int(args.func(args) or 0)
            stop_if_interrupted()
        return status
    except UserError as exc:
        _say_error(args.command, error_line(args.command, exc))
        return 2
    except diverged as exc:
        print(f"eva-utils {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return interrupted_status(args.command)
    except (RuntimeError, ConnectionError, EOFError) as exc:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # torch's handler raises a worker's death again, anywhere, later
        death = _worker_death(exc)
        if death is None and "RANK" in os.environ and _PEER_LOST.search(str(exc)):
            return _peer_lost(args.command, exc)
        if death is None:
            raise
        print(f"eva-utils {args.command}: error: a data loader worker process died ({death}), most often because "
              "memory ran out: use fewer loader workers or a smaller batch, then run again (a training run: with "
              "--resume; its last checkpoint is intact)", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno not in _DISK_FAULTS:
            raise
        _say_error(args.command, f"eva-utils {args.command}: error: could not write {exc.filename or 'a file'} "
                   f"({exc.strerror}); files are written whole or not at all, so what was there before is intact: "
                   "free some space (df -h), then run again")
        return 2


def _say_error(command: str, line: str) -> None:
    """Print a command's error line; a process of ``train --nproc`` leaves it to its launcher instead, which says it
    once for all the processes (each of them usually meets the same error)."""
    folder = os.environ.get(PROCESS_ERRORS)
    if folder and "RANK" in os.environ and os.path.isdir(folder):
        with open(os.path.join(folder, f"rank{int(os.environ['RANK']):05d}"), "w", encoding="utf-8") as said:
            said.write(line.removeprefix(f"eva-utils {command}: error: "))  # read once every process has ended
    else:
        print(line, file=sys.stderr)


def _peer_lost(command: str, exc: BaseException) -> int:
    """A process of a torchrun run whose collective failed because another process ended: exit 1 in one line, or
    none under ``train --nproc``, whose launcher names the process that ended."""
    if not os.environ.get(PROCESS_ERRORS):
        print(f"eva-utils {command}: error: process {os.environ['RANK']} lost the other processes of its run "
              f"({first_line(exc)[:100]}): one of them stopped, and its own message says why", file=sys.stderr)
    return 1


def _worker_death(exc: BaseException) -> str | None:
    """How a DataLoader worker died, if ``exc`` (or an exception it came from) says one did: torch's RuntimeError, or
    a connection to the worker cut while a batch was passed over; None for anything else."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, RuntimeError) and (died := _WORKER_DIED.search(str(seen))):
            return f"{died[1]}: {died[2]}"
        seen = seen.__cause__ or seen.__context__
    files = (frame.f_code.co_filename for frame, _ in traceback.walk_tb(exc.__traceback__))
    if isinstance(exc, (ConnectionError, EOFError)) and any("torch/utils/data" in name for name in files):
        return f"the connection to it was cut: {first_line(exc)}"
    return None


def interrupted_status(command: str | None) -> int:
    """After Ctrl-C: say so in one line and return 130 (a further Ctrl-C is only recorded from now on)."""
    stopping()
    print(f"eva-utils{f' {command}' if command else ''}: interrupted", file=sys.stderr)
    return 130


def error_line(command: str, exc: UserError) -> str:
    """The one line a user error prints: ``eva-utils train: error: <message> (on the command line: --no-amp)``.

    The library names parameters (``pass amp=False``); the flags that set them are added from :data:`FLAGS`:
    of ``exc.param`` when the message names it, and of every other parameter it names as ``name=``,
    in the order the message names them, unless the message names the flag already.
    """
    line = f"eva-utils {command}: error: {exc}"
    message = str(exc)
    named = {m.start(): (m.group(1), m.group(2)) for m in re.finditer(r"(?<![\w-])([a-z_]+)=(\w*)", message)
             if m.group(1) in FLAGS}
    if exc.param in FLAGS and exc.param not in {name for name, _ in named.values()} \
            and (found := re.search(rf"(?<![\w-]){re.escape(exc.param)}(?![\w-])", message)):
        named.setdefault(found.start(), (exc.param, ""))
    flags = [_SWITCHED_ON[name] if value == "True" and name in _SWITCHED_ON else FLAGS[name]
             for _, (name, value) in sorted(named.items())]
    flags = [flag for i, flag in enumerate(flags) if flag not in line and flag not in flags[:i]]
    return f"{line} (on the command line: {', '.join(flags)})" if flags else line


def _number(text: str, kind: type, expected: str) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def _rule(value: float, holds: bool, rule: str) -> float:
    if not holds:
        raise argparse.ArgumentTypeError(f"must be {rule}, got {value}")
    return value


def _checked_int(text: str, expected: str, check: Callable[[int, str], int], rule: str) -> int:
    """``text`` as an integer that passes the library's ``check`` (core/checks), in argparse's terms."""
    value = _number(text, int, expected)
    try:
        return check(value, "the value")
    except UserError:
        raise argparse.ArgumentTypeError(f"must be {rule}, got {value}") from None


def positive_int(text: str) -> int:
    """An integer > 0 (the rule of :func:`eva_utils.core.checks.positive_int`)."""
    return _checked_int(text, "a positive integer", checks.positive_int, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0 (an image number, a row limit where 0 means all)."""
    return _checked_int(text, "a whole number", checks.non_negative_int, "0 or more")


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
    return _checked_int(text, "a count from the back (1 = the last conv layer)", checks.positive_int,
                        "1 or more: counts from the back start at 1 (1 = the last conv layer)")
