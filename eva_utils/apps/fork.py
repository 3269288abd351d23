"""Point a fork's notebooks and README at the fork: ``eva-utils fork https://github.com/<you>/<repo>``.

Otherwise a fork's notebooks install the upstream package and their badges open the upstream notebooks.
``point_at_fork`` rewrites ``REPO_URL = "https://github.com/<owner>/<repo>"``, the Colab badges and
``pip install git+https://github.com/<owner>/<repo>`` in ``notebooks/**/*.ipynb`` and ``README.md``, as text
(a notebook's JSON layout and outputs stay as they are).
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

from eva_utils.core.errors import UserError
from eva_utils.core.files import atomic_write_text

__all__ = ["add_parser", "check_branch", "parse_github_url", "point_at_fork"]

# GitHub's rules: an owner is letters, digits and single inner hyphens (39 at most); a repository is letters,
# digits, '.', '_' and '-', but not only dots ('.' and '..' are paths, not repositories).
_GITHUB = re.compile(r"^https://github\.com/([A-Za-z0-9](?:-?[A-Za-z0-9]){0,38})/(?!\.+(?:\.git)?/?$)"
                     r"([A-Za-z0-9._-]+?)(?:\.git)?/?$")
_REPO_URL = re.compile(r'REPO_URL = \\?"https://github\.com/([A-Za-z0-9-]+)/([A-Za-z0-9._-]+)\\?"')


def parse_github_url(url: str) -> tuple[str, str]:
    """``(owner, repo)`` of ``https://github.com/<owner>/<repo>`` (``.git`` and a trailing slash allowed).

    Raises:
        UserError: anything else, with the form expected.
    """
    found = _GITHUB.match(url.strip())
    if not found:
        raise UserError(f"{url!r} is not a GitHub repository URL: give https://github.com/<you>/<repo>", param="url")
    return found.group(1), found.group(2)


def check_branch(branch: str) -> str:
    """``branch`` if git would accept it as a branch name (``git check-ref-format --branch``) and it is safe in a URL.

    Raises:
        UserError: naming the rule it breaks.
    """
    if not isinstance(branch, str):
        raise UserError(f"branch must be a str, got {type(branch).__name__}", param="branch")
    rules = [  # git's rules (git help check-ref-format), after the characters a URL takes as they are
        (not re.fullmatch(r"[A-Za-z0-9._/-]+", branch), "only letters, digits and . _ - / may appear (no spaces, "
                                                        "control characters, ~^:?*[\\ or '@{')"),
        (branch.startswith("-"), "it may not start with '-'"),
        (".." in branch, "it may not hold '..'"),
        (branch.startswith("/") or branch.endswith("/") or "//" in branch, "'/' may not start or end it or be doubled"),
        (branch.endswith("."), "it may not end with '.'"),
        (any(part.startswith(".") or part.endswith(".lock") for part in branch.split("/")),
         "no part between slashes may start with '.' or end with '.lock'"),
    ]
    broken = next((why for bad, why in rules if bad), None)
    if broken:
        raise UserError(f"branch {branch!r} is not a branch name git accepts: {broken}", param="branch")
    return branch


def _files(root: Path) -> list[Path]:
    notebooks = sorted((root / "notebooks").rglob("*.ipynb"))
    if not notebooks:
        raise UserError(f"{root} has no notebooks/ folder with notebooks: run this in the fork's checkout (or pass --repo)")
    readme = root / "README.md"
    return [*notebooks, *([readme] if readme.is_file() else [])]


def _current(files: list[Path]) -> tuple[str, str]:
    for path in files:
        found = _REPO_URL.search(path.read_text(encoding="utf-8"))
        if found:
            return found.group(1), found.group(2)
    raise UserError("no notebook sets REPO_URL = \"https://github.com/...\": nothing to point at the fork")


def point_at_fork(url: str, root: str | os.PathLike[str] = ".", branch: str = "main") -> list[Path]:
    """Rewrite the repository URL and the Colab badges of a checkout to ``url`` (on ``branch``).

    Args:
        url: the fork, ``https://github.com/<you>/<repo>``.
        root: the checkout (holds ``notebooks/`` and ``README.md``).
        branch: the branch the Colab badges open.

    Returns:
        The files changed (none when they already point at ``url`` and ``branch``).

    Raises:
        UserError: not a GitHub URL, a branch name git refuses (:func:`check_branch`), or not a checkout with notebooks.
    """
    owner, repo = parse_github_url(url)
    check_branch(branch)
    root = Path(root).expanduser()
    files = _files(root)
    old_owner, old_repo = _current(files)
    old = re.escape(f"github.com/{old_owner}/{old_repo}")
    changed = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        new = re.sub(rf"colab\.research\.google\.com/github/{re.escape(old_owner)}/{re.escape(old_repo)}/blob/[^/]+/",
                     f"colab.research.google.com/github/{owner}/{repo}/blob/{branch}/", text)
        new = re.sub(rf"https://{old}(?=[\"@\s)`\\/]|$)", f"https://github.com/{owner}/{repo}", new)
        if new != text:
            atomic_write_text(path, new)
            changed.append(path)
    return changed


# ----------------------------------------------------------------------------- the command


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``fork`` on the ``eva-utils`` subcommands; returns its parser."""
    p = subparsers.add_parser("fork", description="Rewrite REPO_URL in every notebook and the Colab badges in the "
                              "notebooks and README so that Colab installs and opens your fork, not the upstream repository.")
    p.add_argument("url", metavar="URL", help="your fork: https://github.com/<you>/<repo>")
    p.add_argument("--branch", default="main", help="the branch the Colab badges open (default %(default)s)")
    p.add_argument("--repo", default=".", help="the fork's checkout (default: the current folder)")
    p.set_defaults(func=_cmd_fork)
    return p


def _cmd_fork(args: argparse.Namespace) -> int:
    changed = point_at_fork(args.url, root=args.repo, branch=args.branch)
    for path in changed:
        print(f"pointed {path} at {args.url} ({args.branch})")
    print("commit and push these files; Colab then installs and opens your fork" if changed
          else f"the notebooks and README already point at {args.url} ({args.branch}); nothing changed")
    return 0


if __name__ == "__main__":  # a module, not a command: say which one
    from eva_utils.apps.cli import not_a_command

    raise SystemExit(not_a_command(__spec__.name, "fork"))
