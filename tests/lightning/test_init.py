"""Tests for eva_utils/lightning/__init__.py: without Lightning (or with one too old), the import says how to install it.

Run: python -m pytest tests/lightning/test_init.py -q    (CPU, seconds; runs without Lightning too)
"""

from __future__ import annotations

import ast
import importlib
import sys
import types
from pathlib import Path

import pytest

from eva_utils.core.errors import UserError

INSTALL = 'pip install "eva-utils[lightning]"'


def _fresh_import(monkeypatch):
    """Import eva_utils.lightning anew (its modules dropped from sys.modules for this test only)."""
    for name in [m for m in sys.modules if m == "eva_utils.lightning" or m.startswith("eva_utils.lightning.")]:
        monkeypatch.delitem(sys.modules, name)
    return importlib.import_module("eva_utils.lightning")


def test_without_lightning_the_import_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning", None)  # as if not installed: `import lightning` raises ImportError
    with pytest.raises(ImportError) as raised:
        _fresh_import(monkeypatch)
    assert INSTALL in str(raised.value)
    assert isinstance(raised.value, UserError)  # the command line prints it as one line
    assert isinstance(raised.value.__cause__, ImportError)


def test_a_lightning_older_than_the_extra_is_refused_with_the_same_advice(monkeypatch):
    old = types.ModuleType("lightning")
    old.__version__ = "2.3.3"
    monkeypatch.setitem(sys.modules, "lightning", old)
    with pytest.raises(ImportError, match=r"2\.4 or newer, found 2\.3\.3") as raised:
        _fresh_import(monkeypatch)
    assert INSTALL in str(raised.value)


def test_the_extra_and_the_dev_extra_ask_for_the_version_the_package_checks():
    pytest.importorskip("lightning")
    from eva_utils.lightning import MIN_LIGHTNING

    setup = Path(__file__).parents[2] / "setup.py"
    call = next(n for n in ast.walk(ast.parse(setup.read_text())) if isinstance(n, ast.Call)
                and getattr(n.func, "id", "") == "setup")
    extras = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "extras_require"))
    wanted = f"lightning>={MIN_LIGHTNING[0]}.{MIN_LIGHTNING[1]}"
    assert extras["lightning"] == [wanted]
    assert wanted in extras["dev"]  # CI installs the dev extra: the Lightning tests run there
