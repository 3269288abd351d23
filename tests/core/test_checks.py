"""core/checks.py: the one home of "a positive whole number", and a walk of the package that keeps it the only one."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

import eva_utils
from eva_utils.core.checks import non_negative_int, positive_int
from eva_utils.core.errors import UserError

PACKAGE = Path(eva_utils.__file__).parent


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.uint8(255)])
def test_positive_whole_numbers_pass_as_ints(value):
    assert positive_int(value, "steps") == int(value) and type(positive_int(value, "steps")) is int


@pytest.mark.parametrize("value", [0, -4, 2.5, 1.0, True, "8", None, np.float32(2)])
def test_anything_else_is_refused_naming_the_parameter(value):
    with pytest.raises(UserError, match="steps must be a positive integer") as exc:
        positive_int(value, "steps")
    assert exc.value.param == "steps"


def test_non_negative_allows_zero_only_beside_the_positives():
    assert non_negative_int(0, "track_cams") == 0
    with pytest.raises(UserError, match="track_cams must be 0 or a positive integer") as exc:
        non_negative_int(-1, "track_cams")
    assert exc.value.param == "track_cams"


# ----------------------------------------------------------------------------- one home


def _is_number_like(node: ast.expr) -> bool:
    """A name, an attribute (``self.width``) or ``int(name)``: what a parameter check compares."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "int" and len(node.args) == 1:
        node = node.args[0]
    return isinstance(node, (ast.Name, ast.Attribute))


def _positive_int_compare(test: ast.expr) -> bool:
    """``x < 1``, ``x <= 0`` or ``int(x) < 1`` somewhere in an if's condition (not inside a call such as any())."""
    stack = [test]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and _is_number_like(node.left):
            right = node.comparators[0]
            if isinstance(right, ast.Constant) and type(right.value) is int and (
                    (isinstance(node.ops[0], ast.Lt) and right.value == 1)
                    or (isinstance(node.ops[0], ast.LtE) and right.value == 0)):
                return True
        if isinstance(node, (ast.BoolOp, ast.UnaryOp, ast.Compare)):
            stack.extend(ast.iter_child_nodes(node))
    return False


RULE = re.compile(r"positive|integer|>= ?1\b|at least 1\b|starting at 1\b")  # what such a message says


def _raises_user_error(body: list[ast.stmt]) -> bool:
    """A ``raise UserError(...)`` (or ValueError) whose message states the positive-int rule."""
    for node in (n for stmt in body for n in ast.walk(stmt)):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name) \
                and node.exc.func.id in ("UserError", "ValueError"):
            texts = [c.value for c in ast.walk(node.exc) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
            if any(RULE.search(text) for text in texts):
                return True
    return False


def inline_positive_int_checks(root: Path = PACKAGE) -> list[str]:
    """``if x < 1: raise UserError(...)`` (or ``<= 0``, or ``int(x) < 1``) outside core/checks.py."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if path == root / "core" / "checks.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.If) and _positive_int_compare(node.test) and _raises_user_error(node.body):
                found.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return found


def test_the_walk_finds_an_inline_copy(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("def f(steps, n):\n"
                                  "    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:\n"
                                  "        raise UserError('steps must be a positive integer')\n"
                                  "    if int(n) <= 0:\n        raise UserError(f'n must be at least 1, got {n}')\n")
    (package / "b.py").write_text("def g(xs, n, low):\n"
                                  "    if any(x < 1 for x in xs) or low < 0:\n        raise UserError('each must be positive')\n"
                                  "    if n < 1:\n        return None\n"
                                  "    if channels < 1:\n        raise UserError('reduction leaves no channels')\n")
    # none of b's is a positive-int check that raises: a list, a range, a return, a computed value
    assert inline_positive_int_checks(package) == ["pkg/a.py:2", "pkg/a.py:4"]


def test_only_core_checks_tests_positive_ints():
    found = inline_positive_int_checks()
    assert not found, "use eva_utils.core.checks.positive_int:\n" + "\n".join(found)
