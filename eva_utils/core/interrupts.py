"""Ctrl-C that is never lost: one home for how the package treats SIGINT.

Python turns a SIGINT into ``KeyboardInterrupt`` wherever the main thread happens to be. Two places lose it:
inside a C++ writer such as ``torch.save``'s it comes out as a ``RuntimeError`` (or not at all), and inside a
``__del__`` (a DataLoader's iterator shutting down its workers at the end of a pass) Python prints
"Exception ignored in ..." with a traceback and carries on, so the run went on to the end and exited 0.

* :func:`interrupts_deferred` holds Ctrl-C back until a write is whole, then raises it;
* :func:`sticky_interrupts` records every Ctrl-C of a command, silences the ones Python would only print, and
  :func:`stop_if_interrupted` (called by the training and evaluation loops before every batch) raises a recorded
  one again; :func:`interrupted` tells the command line at the end.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

__all__ = ["interrupted", "interrupts_deferred", "stop_if_interrupted", "sticky_interrupts"]

_received: list[int] = []  # the SIGINTs recorded under sticky_interrupts, acted on or not


def _sticky(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def _ours() -> bool:
    """True in the main thread under Python's own SIGINT handler or :func:`sticky_interrupts`' (not a user's)."""
    return threading.current_thread() is threading.main_thread() \
        and signal.getsignal(signal.SIGINT) in (signal.default_int_handler, _sticky)


@contextlib.contextmanager
def sticky_interrupts() -> Iterator[None]:
    """Within the block, every Ctrl-C is recorded as well as raised, so that none is lost.

    A ``KeyboardInterrupt`` that Python could not raise (it arrived in a ``__del__`` or a weakref callback) is
    not printed as a traceback; :func:`stop_if_interrupted` raises it at the next batch and :func:`interrupted`
    reports it. Outside the main thread, or under a SIGINT handler of the user's, the block runs as it is.
    """
    if not _ours():
        yield
        return
    _received.clear()
    previous_handler, previous_hook = signal.signal(signal.SIGINT, _sticky), sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if unraisable.exc_type is None or not issubclass(unraisable.exc_type, KeyboardInterrupt):
            previous_hook(unraisable)  # anything else is printed as Python prints it

    sys.unraisablehook = hook
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        sys.unraisablehook = previous_hook


def interrupted() -> bool:
    """Whether a Ctrl-C arrived during the current (or last) :func:`sticky_interrupts` block."""
    return bool(_received)


def stop_if_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl-C was recorded: one that Python swallowed stops the loop here."""
    if _received:
        raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C waits for the block to end: a SIGINT during it is raised as ``KeyboardInterrupt`` right after.

    A SIGINT inside ``torch.save`` would otherwise surface from its C++ writer as a ``RuntimeError`` (or
    vanish), not as the interrupt it was. Only in the main thread and under Python's own SIGINT handler (or
    :func:`sticky_interrupts`', which also records it); elsewhere the block runs as it is.
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
