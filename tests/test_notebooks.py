"""Every notebook is committed clean, stays thin, and runs top to bottom in smoke mode (bundled data, CPU)."""

from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import json
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from eva_utils import recipe
from eva_utils.core.errors import UserError

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
MAX_FUNCTION_LINES = 5
MAX_CODE_LINES = 100  # read in one sitting: the teaching is in the markdown, the code in eva_utils


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _python(source: str) -> str:
    """A cell as the kernel runs it: IPython's ``%magic`` lines turned into ``get_ipython()`` calls."""
    return TransformerManager().transform_cell(source)


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_thin_with_a_parameters_cell_and_a_colab_only_install(path):
    nb = nbformat.read(path, as_version=4)
    code = _code_cells(nb)
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "SMOKE = False" in tagged[0].source
    assert "google.colab" in code[0].source and "pip" in code[0].source
    lines = sum(len(c.source.splitlines()) for c in code[1:])  # the install cell is the same everywhere, tested below
    assert lines <= MAX_CODE_LINES, f"{path.name}: {lines} lines of code; move some into eva_utils"
    for cell in code:
        for node in ast.walk(ast.parse(_python(cell.source))):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                lines = node.end_lineno - node.lineno + 1
                assert lines <= MAX_FUNCTION_LINES, f"{path.name}: {node.name} has {lines} lines; move it into eva_utils"


def _execute_in_smoke_mode(nb, cwd: Path):
    """Run ``nb`` in place as CI does: ``SMOKE = True`` injected after the parameters cell, in ``cwd``."""
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell("SMOKE = True", metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(index + 1, injected)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    client.execute()  # raises CellExecutionError, naming the cell, when a cell fails


def _shows_a_figure(cell) -> bool:
    last = cell.source.strip().splitlines()[-1].strip() if cell.source.strip() else ""
    return last == "fig" or last.endswith(".figure") or (last.startswith("plots.plot_") and last.endswith(")"))


def _notebook_01_checkpoint(cwd: Path) -> None:
    """What notebook 01 leaves in smoke mode, for notebook 02's section on it (a smaller, faster run)."""
    config = recipe.TrainConfig.demo()
    config = dataclasses.replace(config, width=4, epochs=1, max_batches=4, out=str(cwd / "runs" / "smoke"))
    recipe.run_training(config)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_runs_in_smoke_mode(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    if path.name.startswith("02_"):
        _notebook_01_checkpoint(tmp_path)
    _execute_in_smoke_mode(nb, tmp_path)
    code = _code_cells(nb)
    assert not code[0].outputs, "the install cell must do nothing outside Colab"
    for cell in filter(_shows_a_figure, code):
        kinds = [kind for out in cell.outputs for kind in out.get("data", {})]
        assert "image/png" in kinds, f"{path.name}: a cell ending in a figure showed {kinds or 'nothing'}:\n{cell.source}"
    if path.name.startswith("01_"):  # the assignment's figures, saved for the hand-in beside the run
        saved = {p.stem for p in (tmp_path / "runs" / "smoke" / "figures").glob("*.png")}
        assert not (tmp_path / "images").exists(), "notebook 01 must not write into images/ (the README's figures)"
        expected = {"samples", "curves", "misclassified_10", "misclassified_20", "gradcam_layers", "confusion_matrix"}
        assert expected <= saved, f"not saved: {sorted(expected - saved)}"


def test_a_failing_cell_fails_the_run(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("SMOKE = False", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("assert not SMOKE, 'smoke mode reached this cell'"),
    ])
    with pytest.raises(CellExecutionError, match="smoke mode reached this cell"):
        _execute_in_smoke_mode(nb, tmp_path)


def test_one_install_cell_shown_in_the_readme():
    cells = {nbformat.read(p, as_version=4).cells[1].source for p in NOTEBOOKS}
    assert len(cells) == 1, "the notebooks' install cells differ"
    assert cells.pop() in (Path(__file__).parents[1] / "README.md").read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_install_cell_is_six_lines_without_a_function(path):
    source = _install_cell(path)
    assert len(source.splitlines()) <= 6, source
    tree = ast.parse(_python(source))
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.Lambda, ast.ClassDef))]
    assert "subprocess" not in source


# ----------------------------------------------------------------------------- the Colab install cell


def _install_cell(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return next(c.source for c in nb.cells if c.cell_type == "code" and "REPO_URL = " in c.source)


class _FakeColab:
    """What the install cell meets in Colab: ``%pip``, git ls-remote's answer, pip's record of the installed package.

    ``%pip install`` installs eva_utils when it is missing and, like pip 24, keeps it when it is there (whatever
    commit or repository it came from); the cell's second line must then notice and install the right one.
    """

    def __init__(self, monkeypatch, installed: dict | None, remote_commit: str = "c0ffee" * 7, listed: bool = True):
        self.commands: list[tuple[str, ...]] = []
        self.magics: list[str] = []
        self.installed, self.remote_commit = installed, remote_commit
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))

        def run(command, capture_output, text):
            self.commands.append(tuple(command))
            answer = f"{self.remote_commit}\trefs/heads/main\n" if listed else ""
            return subprocess.CompletedProcess(command, 0, answer if command[:2] == ["git", "ls-remote"] else "", "")

        monkeypatch.setattr(subprocess, "run", run)

        class Distribution:
            def read_text(_, name):
                return json.dumps(self.installed)

        def distribution(name):
            if self.installed is None:
                raise importlib.metadata.PackageNotFoundError(name)
            return Distribution()

        monkeypatch.setattr(importlib.metadata, "distribution", distribution)

    def run_cell(self, source: str, name: str) -> None:
        namespace: dict = {"get_ipython": lambda: self}
        exec(compile(_python(source), name, "exec"), namespace)

    def run_line_magic(self, magic: str, line: str) -> None:  # IPython expands {names} from the cell's namespace
        frame = sys._getframe(1)
        line = line.format(**frame.f_globals)
        self.magics.append(f"%{magic} {line}")
        url = line.split('"git+')[1].rsplit("@", 1)[0]
        if self.installed is None:  # pip installs what is missing, with its dependencies
            self.installed = {"url": url, "vcs_info": {"vcs": "git", "commit_id": self.remote_commit}}

    @property
    def pip(self) -> list[tuple[str, ...]]:
        return [c[3:] for c in self.commands if c[1:3] == ("-m", "pip")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_install_cell_installs_once_then_only_when_the_commit_or_repository_changes(monkeypatch, capsys, path):
    source, name = _install_cell(path), path.name
    commit = "c0ffee" * 7
    url = "https://github.com/eva-utils/eva_utils"
    fresh = _FakeColab(monkeypatch, installed=None)
    fresh.run_cell(source, name)
    assert fresh.magics == [f'%pip install -q "git+{url}@main"'] and fresh.pip == []  # pip alone, with dependencies
    assert f"eva_utils from {url} at commit {commit[:12]}\n" == capsys.readouterr().out
    same = _FakeColab(monkeypatch, installed={"url": url, "vcs_info": {"vcs": "git", "commit_id": commit}})
    same.run_cell(source, name)
    assert same.pip == [] and "Restart" not in capsys.readouterr().out  # nothing to do
    for origin in ({"url": url, "vcs_info": {"commit_id": "0ld" * 13}},                    # REF moved on
                   {"url": "https://github.com/someone/fork", "vcs_info": {"commit_id": commit}}):  # another repository
        moved = _FakeColab(monkeypatch, installed=origin)
        moved.run_cell(source, name)
        assert moved.pip == [("install", "-q", "--force-reinstall", "--no-deps", f"git+{url}@{commit}")]
        assert "Runtime > Restart session" in capsys.readouterr().out


def test_install_cell_names_a_branch_that_is_not_there(monkeypatch):
    source = _install_cell(NOTEBOOKS[0]).replace('REF = "main"', 'REF = "mian"')
    fake = _FakeColab(monkeypatch, installed=None, listed=False)
    with pytest.raises(UserError, match="has no branch or tag 'mian': check REF"):
        fake.run_cell(source, "install cell")
    assert fake.pip == []


# ----------------------------------------------------------------------------- the exercise edition

EXERCISES = Path(__file__).parents[1] / "notebooks" / "exercises" / "01_resnet18_cifar10_gradcam_exercises.ipynb"


def _tagged(nb, tag: str) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if tag in c.metadata.get("tags", [])]


def _solved(nb):
    """The exercise notebook with each TODO cell replaced by the code of its hidden answer."""
    for todo, answer in zip(_tagged(nb, "exercise"), _tagged(nb, "answer"), strict=True):
        text = nb.cells[answer].source
        nb.cells[todo].source = text[text.index("```python\n") + len("```python\n"):text.rindex("```")].strip()
    return nb


def test_the_exercise_edition_is_notebook_01_with_three_exercises():
    exercises = nbformat.read(EXERCISES, as_version=4)
    assert not any(c.get("outputs") or c.get("execution_count") for c in _code_cells(exercises))
    assert len(_tagged(exercises, "exercise")) == len(_tagged(exercises, "check")) == len(_tagged(exercises, "answer")) == 3
    lesson = [c.source for c in _code_cells(nbformat.read(NOTEBOOKS[0], as_version=4))]
    edition = [c.source for c in _code_cells(exercises)]
    replaced = [s for s in lesson if "plots.plot_history(history)" in s or "show_misclassified(test_set, pred, n=10" in s]
    kept = [s for s in lesson if s not in replaced]
    assert [s for s in edition if s in kept] == kept  # every other cell of the lesson, in order: the two stay in step


def test_the_solved_exercises_run_in_smoke_mode(tmp_path):
    _execute_in_smoke_mode(_solved(nbformat.read(EXERCISES, as_version=4)), tmp_path)


def test_the_unsolved_exercises_fail_only_at_their_checks(tmp_path):
    nb = nbformat.read(EXERCISES, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell("SMOKE = True", metadata={"tags": ["injected-parameters"]}))
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    failed = {i: o for i, c in enumerate(nb.cells) if c.cell_type == "code" for o in c.outputs if o.output_type == "error"}
    assert sorted(failed) == _tagged(nb, "check")  # the three checks, and nothing else
    assert all(o.ename == "AssertionError" for o in failed.values())
    assert "make a matplotlib Figure" in failed[_tagged(nb, "check")[0]].evalue  # says what to do
