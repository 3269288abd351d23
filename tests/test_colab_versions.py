"""Installing eva_utils in Colab changes none of Colab's packages: every requirement admits Colab's installed version.

Colab's freeze is a dated copy in ``tests/data/colab_gpu_freeze_2026-08.txt`` (Google's published ``pip-freeze.gpu.txt``,
August 2026, Python 3.13.15); no network. Checked: requirements.txt (what ``pip install git+...`` in the notebooks
installs), every extra of setup.py except ``dev`` (``app``, ``tensorboard``: the README and the command line point at
them), and what a notebook's cells ``%pip install`` themselves. A requirement that would make pip upgrade or downgrade a
package Colab has preinstalled fails, naming the package, Colab's version and the requirement. What the packages Colab
lacks (grad-cam, torchinfo, ...) pull in is not seen here; ``../shared/colab/rehearse.sh`` shows that ("changed: none").
When Colab's runtime moves on, add its new freeze beside the old one and point ``FREEZE`` at it.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
FREEZE = ROOT / "tests" / "data" / "colab_gpu_freeze_2026-08.txt"
# Colab's GPU runtime, for requirements with environment markers
COLAB_ENVIRONMENT = {"python_version": "3.13", "python_full_version": "3.13.15", "sys_platform": "linux",
                     "platform_system": "Linux", "os_name": "posix", "platform_machine": "x86_64",
                     "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def read_freeze(text: str) -> dict[str, Version]:
    """``name==version`` lines of a pip freeze, by PEP 503 name; comments and ``name @ url`` lines (no version) are skipped."""
    versions = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            versions[canonicalize_name(name)] = Version(version.strip())
    return versions


def colab_changes(requirements: Iterable[tuple[str, Requirement]], installed: Mapping[str, Version]) -> list[str]:
    """One line per requirement that would make pip change a package Colab has installed (``(where, requirement)`` pairs).

    Local versions count as Colab's version (``2.11.0+cu128`` is in ``>=2.10``), as does an installed pre-release in range.
    """
    changes = []
    for where, requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate(COLAB_ENVIRONMENT):
            continue  # not installed on Colab's Python
        version = installed.get(canonicalize_name(requirement.name))
        if version is not None and not requirement.specifier.contains(version, prereleases=True):
            changes.append(f"{requirement.name}: Colab has {version}, {where} asks for {requirement} "
                           f"(pip would replace Colab's {version})")
    return changes


def _requirement_lines(text: str) -> list[str]:
    """The lines of a requirements file without comments, as setup.py reads them."""
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def _extras() -> dict[str, list[str]]:
    """setup.py's ``extras_require`` literal, read without running setup()."""
    for node in ast.walk(ast.parse((ROOT / "setup.py").read_text())):
        if isinstance(node, ast.keyword) and node.arg == "extras_require":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no extras_require")


_PIP_IN_CELL = re.compile(r"""^\s*[%!]pip install (.+)$|run_line_magic\(\s*["']pip["']\s*,\s*["']install (.+?)["']\s*\)""", re.M)


def _notebook_installs() -> list[tuple[str, Requirement]]:
    """What a notebook's code cells install themselves (``%pip install X`` or ``run_line_magic("pip", "install X")``)."""
    found = []
    for path in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] != "code":
                continue
            for match in _PIP_IN_CELL.finditer("".join(cell["source"])):
                for word in (match.group(1) or match.group(2)).split(" #")[0].split():
                    word = word.strip("\"'")
                    if word and not word.startswith("-") and "git+" not in word and "{" not in word:
                        found.append((f"{path.relative_to(ROOT)} (%pip install)", Requirement(word)))
    return found


def project_requirements() -> list[tuple[str, Requirement]]:
    """requirements.txt, every extra but ``dev``, and the notebooks' own installs, each with where it comes from."""
    found = [("requirements.txt", Requirement(line)) for line in _requirement_lines((ROOT / "requirements.txt").read_text())]
    for extra, lines in _extras().items():
        if extra != "dev":
            found += [(f"setup.py extra [{extra}]", Requirement(line)) for line in lines]
    return found + _notebook_installs()


def test_every_requirement_admits_colabs_installed_version() -> None:
    installed = read_freeze(FREEZE.read_text(encoding="utf-8"))
    requirements = project_requirements()
    names = {canonicalize_name(r.name) for _, r in requirements}
    # the check sees what matters: the freeze holds Colab's torch, and the extras and the notebooks' installs are read
    assert {"torch", "torchvision", "numpy", "pillow", "gradio", "tensorboard"} <= names & set(installed)
    assert installed["torch"] == Version("2.11.0+cu128")
    assert any(where.startswith("notebooks/") for where, _ in requirements)
    assert colab_changes(requirements, installed) == []


def test_a_requirement_that_would_change_a_colab_package_is_named_with_both_versions() -> None:
    installed = read_freeze(FREEZE.read_text(encoding="utf-8"))
    made_up = [("requirements.txt", Requirement("numpy>=3")), ("requirements.txt", Requirement("torch<2.11")),
               ("setup.py extra [app]", Requirement("Gradio==5.0")),
               ("requirements.txt", Requirement("torch==2.11.0")),  # admits 2.11.0+cu128 (PEP 440: local versions)
               ("requirements.txt", Requirement("grad-cam>=99")),  # not in Colab: pip installs it, changes nothing
               ("requirements.txt", Requirement('numpy<2; python_version < "3.13"'))]  # not for Colab's Python
    assert colab_changes(made_up, installed) == [
        "numpy: Colab has 2.1.3, requirements.txt asks for numpy>=3 (pip would replace Colab's 2.1.3)",
        "torch: Colab has 2.11.0+cu128, requirements.txt asks for torch<2.11 (pip would replace Colab's 2.11.0+cu128)",
        "Gradio: Colab has 6.24.0, setup.py extra [app] asks for Gradio==5.0 (pip would replace Colab's 6.24.0)",
    ]


@pytest.mark.parametrize("line, name, version", [("Pillow==11.3.0", "pillow", "11.3.0"),
                                                 ("jupyter_client==7.4.9", "jupyter-client", "7.4.9"),
                                                 ("torch==2.11.0+cu128", "torch", "2.11.0+cu128")])
def test_freeze_names_are_pep_503_normalised(line: str, name: str, version: str) -> None:
    freeze = f"# a comment\n{line}\ngoogle-colab @ file:///colabtools/dist/google_colab-1.0.0.tar.gz\n"
    assert read_freeze(freeze) == {name: Version(version)}
