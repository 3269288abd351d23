"""Tests for eva_utils.fork, on a copy of the repository's notebooks and README."""

import json
import shutil
from pathlib import Path

import pytest

from eva_utils.apps.cli import main
from eva_utils.apps.fork import parse_github_url, point_at_fork
from eva_utils.core.errors import UserError

REPO = Path(__file__).parents[2]
FORK = "https://github.com/student-42/my_eva"


@pytest.fixture
def copy(tmp_path):
    shutil.copytree(REPO / "notebooks", tmp_path / "notebooks")
    shutil.copyfile(REPO / "README.md", tmp_path / "README.md")
    return tmp_path


def _texts(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in [*sorted(root.rglob("*.ipynb")), root / "README.md"]}


def test_every_install_cell_and_badge_points_at_the_fork(copy):
    before = _texts(copy)
    changed = point_at_fork(FORK, copy, branch="coursework")
    after = _texts(copy)
    assert {str(p.relative_to(copy)) for p in changed} == set(after)  # every notebook and the README
    for name, text in after.items():
        assert "https://github.com/eva-utils/eva_utils" not in text, name
        assert "colab.research.google.com/github/eva-utils/" not in text, name
        if name.endswith(".ipynb"):
            nb = json.loads(text)  # still a valid notebook
            source = "".join("".join(cell["source"]) for cell in nb["cells"])
            assert f'REPO_URL = "{FORK}"' in source
            assert f"colab.research.google.com/github/student-42/my_eva/blob/coursework/{name}" in source
    # nothing but the URLs changed: the same text once the fork's URLs are put back
    restored = {k: v.replace("student-42/my_eva/blob/coursework", "eva-utils/eva_utils/blob/main")
                .replace(FORK, "https://github.com/eva-utils/eva_utils") for k, v in after.items()}
    assert restored == before


def test_running_it_again_changes_nothing_and_the_cli_says_so(copy, capsys):
    assert main(["fork", FORK, "--repo", str(copy)]) == 0
    assert "pointed" in capsys.readouterr().out
    assert main(["fork", FORK + ".git", "--repo", str(copy)]) == 0
    assert "nothing changed" in capsys.readouterr().out


@pytest.mark.parametrize("url", ["github.com/a/b", "https://gitlab.com/a/b", "https://github.com/a", "https://github.com/a/b/c"])
def test_a_url_that_is_not_a_github_repository(url, copy, capsys):
    with pytest.raises(UserError, match="https://github.com/<you>/<repo>"):
        parse_github_url(url)
    before = _texts(copy)
    code = main(["fork", url, "--repo", str(copy)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert _texts(copy) == before  # nothing touched


def test_outside_a_checkout(tmp_path, capsys):
    assert main(["fork", FORK, "--repo", str(tmp_path)]) == 2
    assert "no notebooks/ folder" in capsys.readouterr().err


@pytest.mark.parametrize("url", ["https://github.com/a/..", "https://github.com/a/.", "https://github.com/../b",
                                 "https://github.com/a/...git", "https://github.com/-a/b", "https://github.com/a--/b"])
def test_dot_names_and_impossible_owners_are_not_repositories(url, copy, capsys):
    with pytest.raises(UserError, match="https://github.com/<you>/<repo>") as exc:
        parse_github_url(url)
    assert exc.value.param == "url"
    before = _texts(copy)
    assert main(["fork", url, "--repo", str(copy)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert _texts(copy) == before


@pytest.mark.parametrize("branch", ["../../..", "a..b", "-main", "a//b", "/main", "main/", "main.lock", "a/.hidden",
                                    "main.", "a@{1}", "@", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[b", "a\\b",
                                    "a\tb", "a\x7fb", ""])
def test_a_branch_name_git_would_refuse_is_refused(branch, copy, capsys):
    with pytest.raises(UserError, match="branch") as exc:
        point_at_fork(FORK, copy, branch=branch)
    assert exc.value.param == "branch"
    before = _texts(copy)
    assert main(["fork", FORK, f"--branch={branch}", "--repo", str(copy)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert _texts(copy) == before


@pytest.mark.parametrize("branch", ["main", "feature/cams-v2", "release-1.0", "student_42", "a.b/c"])
def test_ordinary_branch_names_are_accepted(branch, copy):
    assert point_at_fork(FORK, copy, branch=branch)
