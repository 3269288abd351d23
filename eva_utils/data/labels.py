"""Class names: from a labels file (read as data, never run) or ImageNet's, as torchvision ships them."""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torchvision

from eva_utils.core.errors import DataNotFoundError, UserError, first_line

__all__ = ["imagenet_classes", "read_labels"]


def imagenet_classes() -> tuple[str, ...]:
    """The 1,000 ImageNet class names that ship with torchvision (no download)."""
    return tuple(torchvision.models.ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def _code_error(path: Path, node: ast.AST | None) -> UserError:
    what = f" (it calls {ast.unparse(node.func)[:40]})" if isinstance(node, ast.Call) else ""
    return UserError(f"labels file {path} contains Python code{what}, not labels; it was not run (labels are read as "
                     "data, never executed). Write a dict such as {0: 'cat', 1: 'dog'}, a JSON list, or one label "
                     "per line")


def _parse_literal(text: str, path: Path) -> Any:
    """The dict/list literal ``text`` holds; None when it is plain lines of names."""
    if text[0] in "{[":
        try:
            return json.loads(text)
        except ValueError:
            pass
        except RecursionError:  # json recurses once per bracket: 100,000 '[' overflow the stack
            raise UserError(f"labels file {path} is nested too deeply to be labels; expected a flat dict or list such "
                            f"as {{0: 'cat', 1: 'dog'}}") from None
    try:
        tree = ast.parse(text, mode="exec")
    except SyntaxError:
        if text[0] in "{[":
            raise UserError(f"labels file {path} starts like a dict or list but is not valid Python or JSON literal "
                            "syntax; expected e.g. {0: 'cat', 1: 'dog'}") from None
        return None  # plain lines, e.g. "great white shark"
    if len(tree.body) == 1 and isinstance(tree.body[0], (ast.Expr, ast.Assign)):
        node = tree.body[0].value  # `{...}` or `labels = {...}`
        if isinstance(node, (ast.Dict, ast.List, ast.Tuple)):
            try:
                return ast.literal_eval(node)
            except ValueError:
                raise _code_error(path, next((n for n in ast.walk(node) if isinstance(n, ast.Call)), None)) from None
    risky = (ast.Call, ast.Attribute, ast.Subscript, ast.Lambda, ast.Import, ast.ImportFrom, ast.Assign, ast.FunctionDef)
    code = next((n for n in ast.walk(tree) if isinstance(n, risky)), None)
    if code is not None:
        raise _code_error(path, code)
    return None  # lines of single words such as "cat"


def _labels_from(value: Any, path: Path) -> list[str]:
    if isinstance(value, Mapping):
        try:
            numbered = {int(k): v for k, v in value.items()}
        except (TypeError, ValueError):
            raise UserError(f"labels file {path}: the dict's keys must be class indices 0, 1, 2, ...") from None
        missing = sorted(set(range(len(numbered))) - numbered.keys())
        if missing:
            raise UserError(f"labels file {path}: the keys must be 0..{len(numbered) - 1} (one per class), but "
                            f"{missing[0]} is missing")
        labels = [numbered[i] for i in range(len(numbered))]
    elif isinstance(value, (list, tuple)):
        labels = list(value)
    else:
        raise UserError(f"labels file {path} holds a {type(value).__name__}; expected a dict, a list or one label per line")
    bad = next((i for i, label in enumerate(labels) if not isinstance(label, str) or not label.strip()), None)
    if bad is not None:
        raise UserError(f"labels file {path}: label {bad} is {labels[bad]!r}, not a name")
    return [label.strip() for label in labels]


def read_labels(path: str | os.PathLike) -> tuple[str, ...]:
    """Class names from a labels file: a dict or list literal, JSON, or one name per line.

    The file is parsed as data (``json.loads`` / ``ast.literal_eval``), never run: a file holding code is refused.

    Args:
        path: e.g. ``imagenet1000_labels.txt`` holding ``{0: 'tench, Tinca tinca', 1: ...}``.

    Returns:
        The names, index = class.

    Raises:
        DataNotFoundError: no such file.
        UserError: not text, empty, code, keys that are not 0..K-1, or labels that are not strings.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"labels file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig").strip()
    except (UnicodeDecodeError, OSError) as exc:
        raise UserError(f"labels file {path} is not a readable text file ({first_line(exc)})") from exc
    if not text:
        raise UserError(f"labels file {path} is empty")
    value = _parse_literal(text, path)
    if value is None:
        return tuple(line.strip() for line in text.splitlines() if line.strip())
    labels = _labels_from(value, path)
    if not labels:
        raise UserError(f"labels file {path} holds no labels")
    return tuple(labels)
