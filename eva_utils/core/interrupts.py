"""Ctrl-C that is never lost: one home for how the package treats SIGINT.

Python raises ``KeyboardInterrupt`` wherever the main thread is, and two places lose it: a C++ writer such as
``torch.save``'s turns it into a ``RuntimeError`` (or drops it), and a ``__del__`` (a DataLoader iterator stopping its
workers) only prints "Exception ignored in ..." and carries on, so the run went on to the end and exited 0.

* :func:`interrupts_deferred` holds Ctrl-C back until a write is whole, then raises it;
* :func:`sticky_interrupts` records every Ctrl-C of a command and silences the ones Python would only print;
  :func:`stop_if_interrupted` (before every batch) raises a recorded one again, and :func:`interrupted` says if any came;
* after :func:`stopping`, a further Ctrl-C is only recorded, so it cannot land in the clean-up (loader workers,
  ``atexit``) and end the process with -2 instead of 130; :func:`keep_interrupts_sticky` keeps this until exit.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

__all__ = ["interrupted", "interrupts_deferred", "keep_interrupts_sticky", "stop_if_interrupted", "stopping",
           "sticky_interrupts"]

_received: list[int] = []  # the SIGINTs recorded under sticky_interrupts, acted on or not
_stopping: list[bool] = []  # not empty once the program is stopping for a Ctrl-C
_for_life: list[bool] = []  # not empty once the entry point has made Ctrl-C sticky until the process exits


def _sticky(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    if not _stopping:
        raise KeyboardInterrupt


def _quiet_hook(previous: Any) -> Any:
    """An unraisable-exception hook that stays silent about ``KeyboardInterrupt`` and hands on anything else."""

    def hook(unraisable: Any) -> None:
        if unraisable.exc_type is None or not issubclass(unraisable.exc_type, KeyboardInterrupt):
            previous(unraisable)  # anything else is printed as Python prints it

    return hook


def _ours() -> bool:
    """True in the main thread under Python's own SIGINT handler or :func:`sticky_interrupts`' (not a user's)."""
    return threading.current_thread() is threading.main_thread() \
        and signal.getsignal(signal.SIGINT) in (signal.default_int_handler, _sticky)


@contextlib.contextmanager
def sticky_interrupts() -> Iterator[None]:
    """Within the block, every Ctrl-C is recorded as well as raised, so that none is lost.

    A ``KeyboardInterrupt`` that Python could not raise (in a ``__del__`` or a weakref callback) is not printed;
    :func:`stop_if_interrupted` raises it at the next batch. Outside the main thread, or under a SIGINT handler of the
    user's, the block runs as it is.
    """
    if not _ours():
        yield
        return
    _received.clear()
    _stopping.clear()
    previous_handler, previous_hook = signal.signal(signal.SIGINT, _sticky), sys.unraisablehook
    sys.unraisablehook = _quiet_hook(previous_hook)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        sys.unraisablehook = previous_hook
        _received.clear()  # acted on inside the block: a later fit outside one must not stop for it
        _stopping.clear()


def keep_interrupts_sticky() -> None:
    """What :func:`sticky_interrupts` does, from now until the process exits: for a program's entry point, whose
    shutdown (loader workers, ``atexit``) a late Ctrl-C would otherwise interrupt with a traceback."""
    if _ours() and signal.getsignal(signal.SIGINT) is not _sticky:
        signal.signal(signal.SIGINT, _sticky)
        sys.unraisablehook = _quiet_hook(sys.unraisablehook)
        _for_life.append(True)


def stopping() -> None:
    """The program is stopping for a Ctrl-C it caught: a later one is recorded, not raised again; in an entry point
    (:func:`keep_interrupts_sticky`) it is ignored from now on, since Python's shutdown puts back the default action
    (a second Ctrl-C while the loader's workers stop killed the process: exit -2, not 130)."""
    _stopping.append(True)
    if _for_life and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def interrupted() -> bool:
    """Whether a Ctrl-C arrived during the current :func:`sticky_interrupts` block."""
    return bool(_received)


def stop_if_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl-C was recorded: one that Python swallowed stops the loop here."""
    if _received:
        raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C waits for the block to end: a SIGINT during it is raised as ``KeyboardInterrupt`` right after.

    Only in the main thread under Python's own SIGINT handler (or :func:`sticky_interrupts`', which also records it);
    elsewhere the block runs as it is.
    """
    if not _ours():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            if previous is _sticky:
                _received.extend(received)
            raise KeyboardInterrupt  # noqa: B012 (the user asked to stop; the write itself is whole or not there)
