"""The package's layers: every import runs down (or stays in its layer), with no circle.

    core < data < models < evaluation < training < explain < plots < apps < lightning < the old paths

Each subpackage of ``eva_utils`` is a layer. A module may import its own layer and the layers below it,
never one above: at the top of the file, inside a function, or under ``if TYPE_CHECKING:`` alike. ``lightning``
(the optional Lightning extra) stands on the apps (it writes a run's figures with ``apps.runs``), and it alone may
import Lightning: nothing below it does, so the package runs without the extra. The
top level (``eva_utils/*.py``: the root's lazy re-exports, ``_compat`` and the facades of the old module
paths) stands above every layer, and no layer imports it (but for the root's ``__version__``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import eva_utils

PACKAGE = Path(eva_utils.__file__).parent
LAYERS = ("core", "data", "models", "evaluation", "training", "explain", "plots", "apps", "lightning")
TOP = len(LAYERS)


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    if len(parts) > 1 and parts[1] == "sample_data":
        return 0  # data files only
    return TOP


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
    parts = package.split(".")
    parts = parts[: len(parts) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


def _edges(module: str) -> list[tuple[str, str, int]]:
    """(imported module, imported name or '', line) for every import of the package, at any depth."""
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == "eva_utils"]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            if base.split(".")[0] != "eva_utils":
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.append((sub, "", node.lineno) if sub in MODULES else (base, a.name, node.lineno))
    return found


def test_every_module_is_in_a_layer_or_at_the_top():
    strays = [m for m in MODULES if m.count(".") > 1 and m.split(".")[1] not in (*LAYERS, "sample_data")]
    assert not strays


def test_no_import_runs_up_a_layer():
    upward = []
    for module in MODULES:
        for target, name, line in _edges(module):
            if target == "eva_utils" and name == "__version__":
                continue  # the root's version string: the root is imported before any of its modules
            if _layer(target) > _layer(module):
                upward.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} imports {target} "
                              f"({LAYERS[_layer(module)] if _layer(module) < TOP else 'top'} -> "
                              f"{LAYERS[_layer(target)] if _layer(target) < TOP else 'top'})")
    assert not upward, "\n".join(upward)


def test_no_import_circle():
    graph = {m: {t for t, _, _ in _edges(m) if t in MODULES and t != m} for m in MODULES}
    # a package's __init__ is imported before its modules: an edge into one's own parent package is no cycle
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    circles: list[str] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                circles.append(" -> ".join(path[path.index(n):] + [n]))
            elif n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not circles, "\n".join(circles)


def test_no_module_but_the_root_resolves_names_lazily():
    # the root re-exports on first use so that the command line starts light; nothing else may hide an import
    lazy = [m for m, p in MODULES.items() if m != "eva_utils"
            and any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in ast.parse(p.read_text()).body)]
    assert not lazy


def _imported(code: str) -> set[str]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}


def test_the_command_line_starts_light():
    loaded = _imported("import sys; sys.argv = ['eva-utils', '--help']\n"
                       "import runpy\ntry: runpy.run_module('eva_utils', run_name='__main__')\nexcept SystemExit: pass")
    ours = sorted(m for m in loaded if m.split(".")[0] == "eva_utils")
    assert len(ours) <= 8, ours
    assert not {m for m in loaded if m.split(".")[0] in ("matplotlib", "torchvision")}


# ----------------------------------------------------------------------------- the optional Lightning extra

LIGHTNING_PACKAGES = ("lightning", "pytorch_lightning", "lightning_fabric", "lightning_utilities")


def test_only_the_lightning_layer_imports_lightning():
    found = []
    for module, path in MODULES.items():
        if module == "eva_utils.lightning" or module.startswith("eva_utils.lightning."):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            found += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {n}" for n in names
                      if n.split(".")[0] in LIGHTNING_PACKAGES]
    assert not found, "\n".join(found)


def test_the_package_and_its_engine_load_no_lightning():
    for code in ("import eva_utils", "import eva_utils.training", "import eva_utils.apps.runs"):
        loaded = _imported(code)
        assert not {m for m in loaded if m.split(".")[0] in LIGHTNING_PACKAGES}, code
        assert "eva_utils.lightning" not in loaded, code


def test_the_engine_draws_nothing():
    loaded = _imported("import eva_utils.training")
    assert not {m for m in loaded if m.split(".")[0] == "matplotlib"}


# ----------------------------------------------------------------------------- sizes

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60  # lines of code, its docstring not counted
MAX_PARAMETERS = 8
# public functions of 0.1.0 with more parameters than that keep their signatures (and delegate to helpers)
WIDE_RELEASED = {"cam_faithfulness", "find_lr", "fit", "layer_cams", "show_cams", "show_layer_cams",
                 "torchvision_classifier", "train_transforms", "write_report", "_show_exit_cams_0_1",
                 "train_one_epoch", "evaluate"}


def _functions() -> list[tuple[str, ast.FunctionDef]]:
    found = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}", node))
    return found


def _code_lines(node: ast.FunctionDef) -> int:
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        docstring = body[0].end_lineno - body[0].lineno + 1
    else:
        docstring = 0
    return node.end_lineno - node.lineno + 1 - docstring


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in MODULES.values()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long


def test_no_function_is_over_60_lines_of_code():
    long = {where: n for where, node in _functions() if (n := _code_lines(node)) > MAX_FUNCTION_LINES}
    assert not long


def test_no_new_function_takes_more_than_8_parameters():
    def count(a: ast.arguments) -> int:
        names = [*a.posonlyargs, *a.args, *a.kwonlyargs]
        n = len(names) + (a.vararg is not None) + (a.kwarg is not None)
        return n - (1 if names and names[0].arg in ("self", "cls") else 0)

    wide = [where for where, node in _functions() if count(node.args) > MAX_PARAMETERS and node.name not in WIDE_RELEASED]
    assert not wide


# ----------------------------------------------------------------------------- library errors name parameters


def test_no_library_error_names_a_command_line_flag():
    # below apps/ an error names the parameter (amp=False), the command line its flag (--no-amp)
    import re

    flag = re.compile(r"(?<![\w-])--[a-z][\w-]*")
    found = []
    for module, path in MODULES.items():
        if _layer(module) in (LAYERS.index("apps"), TOP):  # the lightning layer is a library: it names parameters
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                texts = [c.value for c in ast.walk(node.exc) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
                found += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {t!r}" for t in texts if flag.search(t)]
    assert not found, "\n".join(found)
