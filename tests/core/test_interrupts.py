"""Tests for eva_utils.core.interrupts: a Ctrl-C is never lost, not even one Python swallows in a ``__del__``."""

import gc
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from eva_utils.core.interrupts import interrupted, interrupts_deferred, sticky_interrupts, stop_if_interrupted


class _CtrlCWhileCollected:
    """An object that gets a real SIGINT while Python collects it, as a DataLoader iterator shutting down its
    workers at the end of a pass does when Ctrl-C lands then."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs at the next bytecode boundary, here, inside __del__
            pass


def _swallowed_ctrl_c():
    _CtrlCWhileCollected()  # no reference kept: __del__ runs at once
    gc.collect()


@pytest.fixture
def unraisable(monkeypatch):
    """What Python hands its unraisable-exception hook (and would print as "Exception ignored in ...")."""
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_type))
    return seen


def test_without_it_python_loses_a_ctrl_c_that_lands_in_a_del(unraisable):
    _swallowed_ctrl_c()  # no KeyboardInterrupt comes out: the case this module exists for
    assert unraisable == [KeyboardInterrupt]  # only handed to the hook, which prints a traceback


def test_a_ctrl_c_swallowed_in_a_del_is_recorded_and_raised_at_the_next_check(unraisable):
    hook = sys.unraisablehook
    with sticky_interrupts():
        _swallowed_ctrl_c()
        assert interrupted()
        with pytest.raises(KeyboardInterrupt):
            stop_if_interrupted()
    assert unraisable == []  # not printed as "Exception ignored" with a traceback
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler and sys.unraisablehook is hook
    stop_if_interrupted()  # after the block the Ctrl-C is spent: a later fit in the same process runs (it used to stop)
    assert not interrupted()


def test_a_normal_ctrl_c_is_still_raised_where_it_lands():
    with sticky_interrupts():
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
        assert interrupted()
    with sticky_interrupts():  # a new block starts clean
        assert not interrupted()
        stop_if_interrupted()


def test_a_ctrl_c_deferred_during_a_write_is_raised_after_it_and_recorded():
    with sticky_interrupts():
        with pytest.raises(KeyboardInterrupt):
            with interrupts_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):
                    pass
                done = True  # the block ran to its end
        assert done and interrupted()


def test_other_exceptions_in_a_del_are_printed_as_python_prints_them(unraisable):
    class Broken:
        def __del__(self):
            raise ValueError("broken on collection")

    with sticky_interrupts():
        Broken()
        gc.collect()
        assert not interrupted()
    assert unraisable == [ValueError]


def test_a_command_whose_ctrl_c_was_swallowed_exits_130_without_a_traceback(tmp_path):
    """Through run_parsed, in a subprocess with a real SIGINT: the command returns normally, as a run did that went
    on to the end after a Ctrl-C landed in a loader's __del__; it must still say interrupted and exit 130."""
    script = tmp_path / "cmd.py"
    script.write_text(textwrap.dedent("""
        import gc, os, signal
        from eva_utils.apps.argtypes import Parser, run_parsed

        class CtrlCWhileCollected:
            def __del__(self):
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):
                    pass

        def run(args):
            CtrlCWhileCollected()
            gc.collect()
            print("done")
            return 0

        parser = Parser(prog="eva-utils")
        sub = parser.add_subparsers(dest="command")
        sub.add_parser("train").set_defaults(func=run)
        raise SystemExit(run_parsed(parser, ["train"]))
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "eva-utils train: interrupted"


_ENTRY = """
import atexit, os, signal, sys
import eva_utils.apps.cli as cli
import eva_utils.apps.cli_train as cli_train

def ctrl_c():
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(1000):
        pass

def slow_start(*args, real=cli.build_parser):  # the seconds of importing torch, and a Ctrl-C in them
    ctrl_c()
    return real(*args)

def train(args):  # Ctrl-C stops the run, and another lands while Python shuts down (a loader's workers, atexit)
    atexit.register(ctrl_c)
    ctrl_c()

class Late:  # collected last, after Python's shutdown put back the default action of SIGINT
    def __del__(self):
        ctrl_c()

if sys.argv[1] == "late":
    sys.modules["builtins"].late_object = Late()
if sys.argv[1] == "start":
    cli.build_parser = slow_start
else:
    cli_train._cmd_train = train
sys.argv = ["eva-utils", "train", "--data", "sample"]
sys.exit(cli.main())
"""


@pytest.mark.parametrize("when", ["start", "shutdown", "late"])
def test_the_command_line_says_interrupted_and_exits_130_whenever_ctrl_c_lands(when):
    """The eva-utils entry point in a subprocess with real signals: while the command's module is imported (a
    traceback and exit -2 before), and a second Ctrl-C during the shutdown after the first stopped the run (an
    "Exception ignored in atexit callback" traceback, and exit -2 instead of 130, before), also at its very end, when
    Python has put back SIGINT's default action (the process was killed by it: exit -2)."""
    done = subprocess.run([sys.executable, "-c", _ENTRY, when], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "eva-utils train: interrupted"
