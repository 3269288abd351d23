"""Tests for eva_utils.explain.targets: the one parser of "what to explain" (``targets=`` / ``labels=``).

Run: python -m pytest tests/explain/test_targets.py -q    (CPU, seconds)
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

import eva_utils
from eva_utils.core.errors import UserError
from eva_utils.explain.targets import (
    check_classes,
    explains_labels,
    fill_predicted,
    normalise_targets,
    target_callables,
)

PACKAGE = Path(eva_utils.__file__).parent
HOME = PACKAGE / "explain" / "targets.py"
PARAMETERS = ("targets", "labels")  # what a caller says it wants explained


def _reads(node: ast.AST, names: tuple[str, ...]) -> bool:
    """Whether ``node`` is one of ``names`` or a method call / attribute on one (``targets.lower()``)."""
    while isinstance(node, (ast.Call, ast.Attribute)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return isinstance(node, ast.Name) and node.id in names


def _parses(function: ast.FunctionDef) -> bool:
    """A function parses what to explain when it tests the type or the string value of its ``targets``/``labels``."""
    names = tuple(a.arg for a in (*function.args.posonlyargs, *function.args.args, *function.args.kwonlyargs)
                  if a.arg in PARAMETERS)
    if not names:
        return False
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance" \
                and node.args and _reads(node.args[0], names):
            return True  # isinstance(targets, str), isinstance(targets, (np.ndarray, torch.Tensor)) ...
        if isinstance(node, ast.Compare) and any(_reads(side, names) for side in (node.left, *node.comparators)) \
                and any(isinstance(c, ast.Constant) and isinstance(c.value, str)
                        for side in (node.left, *node.comparators) for c in ast.walk(side)):
            return True  # targets == "pred", targets.lower() in ("pred", "predicted") ...
    return False


def test_only_explain_targets_parses_what_to_explain():
    # one home per job: layer_cams, cam_faithfulness, exit_cams, the tracker, the CLI and the app all hand their
    # targets= / labels= to eva_utils.explain.targets instead of reading them their own way
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == HOME:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _parses(node):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}")
    assert not found, "these functions parse targets/labels themselves; use eva_utils.explain.targets:\n" + \
        "\n".join(found)


def test_the_walk_sees_a_parser():
    # the AST rule above would catch the two parsers there were (cam._normalise_targets, faithfulness._target_fns)
    old = ast.parse(
        "def _target_fns(targets, preds):\n"
        "    if targets is None or (isinstance(targets, str) and targets == 'pred'):\n"
        "        return preds\n"
    )
    assert _parses(old.body[0])
    assert any(_parses(n) for n in ast.walk(ast.parse(HOME.read_text())) if isinstance(n, ast.FunctionDef))


@pytest.mark.parametrize("targets, labels, expected", [
    (None, None, None),
    ("pred", None, None),
    ("predicted", None, None),
    ("true", [3, 1], [3, 1]),
    ("TRUE", torch.tensor([3, 1]), [3, 1]),
    (7, None, [7, 7]),
    (np.int64(2), None, [2, 2]),
    (np.array([4, 5]), None, [4, 5]),
    (torch.tensor([4, 5]), None, [4, 5]),
    ([4, np.int32(5)], None, [4, 5]),
])
def test_normalise_targets_gives_one_entry_per_image(targets, labels, expected):
    got = normalise_targets(targets, labels, 2)
    assert got == expected
    assert got is None or all(type(t) is int for t in got)


def test_callables_are_kept_and_ints_become_pytorch_grad_cam_targets():
    target = ClassifierOutputTarget(3)
    assert normalise_targets(target, None, 2) == [target, target]
    mixed = normalise_targets([1, target], None, 2)
    logits, probs = target_callables(mixed), target_callables(mixed, softmax=True)
    assert type(logits[0]) is ClassifierOutputTarget and logits[0].category == 1 and logits[1] is target
    assert type(probs[0]) is ClassifierOutputSoftmaxTarget and probs[0].category == 1 and probs[1] is target
    assert fill_predicted(None, torch.tensor([2, 0])) == [2, 0] and fill_predicted(mixed, [9, 9]) is mixed
    assert explains_labels("True") and not explains_labels(None) and not explains_labels([1])


@pytest.mark.parametrize("targets, labels, match", [
    ("best", None, "not understood"),
    ("true", None, "needs the labels"),
    ("true", [1], "1 labels for 2 images"),
    ([1], None, "1 targets for 2 images"),
    (np.eye(3)[:2], None, "one-hot"),
    ([1.5, 2.0], None, "class index or a pytorch-grad-cam target"),
    (object(), None, "must be None, 'true'"),
])
def test_bad_targets_are_explained(targets, labels, match):
    with pytest.raises(UserError, match=match):
        normalise_targets(targets, labels, 2)


def test_check_classes_reads_indices_and_the_category_of_callables():
    check_classes([0, 9, ClassifierOutputTarget(9)], 10)
    check_classes(None, 10)
    with pytest.raises(UserError, match="target class index 10 is out of range: class 10 does not exist.*10 classes"):
        check_classes([0, 10], 10)
    with pytest.raises(UserError, match="class 12 does not exist"):
        check_classes([ClassifierOutputSoftmaxTarget(12)], 10)
    with pytest.raises(UserError, match="label -1 is out of range"):
        check_classes([-1], 10, from_labels=True)


def test_a_model_that_does_not_return_class_scores_is_named_with_the_whole_sets_shape():
    from eva_utils.explain.targets import class_probs

    maps = torch.nn.Conv2d(3, 3, 1)  # returns (N, 3, H, W): not (N, K)
    with pytest.raises(UserError, match=r"the model returns shape \(100, 3, 2, 2\), not class scores \(N, K\)"):
        class_probs(maps, torch.randn(100, 3, 2, 2), batch_size=64)
