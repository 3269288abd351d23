"""Tests for eva_utils.apps.colab: a notebook's run in Colab (Drive, resuming, a recipe that fits the machine)."""

from pathlib import Path

import pytest

from eva_utils.apps import colab
from eva_utils.core.errors import UserError
from eva_utils.training.recipe import TrainConfig


def test_no_accidental_hours_on_a_cpu(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    full = TrainConfig(epochs=20)
    with pytest.raises(UserError, match="about 8 hours.*Runtime > Change runtime type > GPU.*ALLOW_CPU = True"):
        colab.for_this_machine(full)
    small = colab.for_this_machine(full, allow_cpu=True)
    assert (small.width, small.device, small.epochs, small.lr) == (16, "cpu", 20, full.lr)  # the same recipe, narrower
    smoke = TrainConfig(max_batches=5)
    assert colab.for_this_machine(smoke) is smoke


def test_a_gpu_runs_the_recipe_as_it_is(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    config = TrainConfig()
    assert colab.for_this_machine(config) is config


def test_the_run_folder_goes_to_drive_only_in_colab(monkeypatch):
    import sys
    import types

    assert colab.run_folder("runs/r18") == Path("runs/r18")
    with pytest.raises(UserError, match="needs Google Colab"):
        colab.run_folder("runs/r18", drive=True)
    mounted = []
    google_colab = types.ModuleType("google.colab")
    google_colab.drive = types.SimpleNamespace(mount=mounted.append)
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", google_colab)
    monkeypatch.setattr(sys.modules["google"], "colab", google_colab, raising=False)
    assert str(colab.run_folder("runs/r18", drive=True)) == "/content/drive/MyDrive/eva_utils/runs/r18"
    assert mounted == ["/content/drive"]


def test_resume_point(tmp_path):
    assert colab.resume_point(tmp_path, resume=True) is None  # nothing to resume yet: start
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    assert colab.resume_point(tmp_path, resume=True) == tmp_path / "checkpoint.pt"
    assert colab.resume_point(tmp_path, resume=False) is None


# ----------------------------------------------------------------------------- use_commit (the install cell's second line)


def _git(*args: str, cwd: Path) -> str:
    import subprocess

    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "HOME": str(cwd), "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repository(tmp_path, monkeypatch):
    """A real git repository with two commits on main, pip's record of an install, and pip itself stood in for."""
    import json
    import subprocess
    from importlib import metadata

    repo = tmp_path / "eva_utils"
    repo.mkdir()
    _git("init", "-q", "-b", "main", cwd=repo)
    for text in ("one", "two"):
        (repo / "file.txt").write_text(text)
        _git("add", "file.txt", cwd=repo)
        _git("commit", "-q", "-m", text, cwd=repo)
    state = {"url": f"file://{repo}", "pip": [], "installed": None}
    real_run = subprocess.run

    def run(command, **kwargs):
        if command[1:3] == ["-m", "pip"]:
            state["pip"].append(command[3:])
            return subprocess.CompletedProcess(command, 0, "", "")
        return real_run(command, **kwargs)  # git, for real

    class Distribution:
        def read_text(self, name):
            return json.dumps(state["installed"])

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(metadata, "distribution", lambda name: Distribution())
    state["commits"] = _git("log", "--format=%H", cwd=repo).split()  # newest first
    return state


def test_use_commit_keeps_the_install_that_ref_names(repository, capsys):
    head = repository["commits"][0]
    repository["installed"] = {"url": repository["url"], "vcs_info": {"vcs": "git", "commit_id": head}}
    assert colab.use_commit(repository["url"], "main") == head
    assert repository["pip"] == []
    assert capsys.readouterr().out == f"eva_utils from {repository['url']} at commit {head[:12]}\n"
    assert colab.use_commit(repository["url"], head[:9]) == head[:9]  # a short commit hash: git lists none, pip has it
    assert repository["pip"] == []


def test_use_commit_reinstalls_when_ref_moved_on(repository, capsys):
    head, old = repository["commits"]
    repository["installed"] = {"url": repository["url"], "vcs_info": {"vcs": "git", "commit_id": old}}
    colab.use_commit(repository["url"], "main")
    assert repository["pip"] == [["install", "-q", "--force-reinstall", "--no-deps", f"git+{repository['url']}@{head}"]]
    assert f"installed over {repository['url']} at {old[:12]}" in capsys.readouterr().out


def test_use_commit_says_what_to_check(repository, tmp_path):
    with pytest.raises(UserError, match="could not reach .*no_such_repo: check REPO_URL"):
        colab.use_commit(f"file://{tmp_path}/no_such_repo", "main")
    with pytest.raises(UserError, match="has no branch or tag 'mian': check REF"):
        colab.use_commit(repository["url"], "mian")
    assert repository["pip"] == []
