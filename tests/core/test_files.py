"""core/files.py's output-folder guard, and a walk of the package that keeps it the only one."""

from __future__ import annotations

import ast
import os
import signal
from pathlib import Path

import pytest

import eva_utils
from eva_utils.core import files
from eva_utils.core.errors import UserError
from eva_utils.core.files import claim_output_file, claim_output_folder, remove_owned_files

PACKAGE = Path(eva_utils.__file__).parent


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_new_folder_is_created_and_returned(tmp_path):
    assert claim_output_folder(tmp_path / "a" / "b", overwrite=False) == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir()


def test_the_writers_own_files_need_overwrite(tmp_path):
    (tmp_path / "grid.png").write_bytes(b"mine")
    with pytest.raises(UserError, match=r"already holds images \(grid.png\): pass overwrite=True") as exc:
        claim_output_folder(tmp_path, overwrite=False, owned=("*.png",), kind="images")
    assert exc.value.param == "overwrite"
    assert claim_output_folder(tmp_path, overwrite=True, owned=("*.png",)) == tmp_path
    assert (tmp_path / "grid.png").read_bytes() == b"mine"  # claiming deletes nothing


def test_other_files_are_allowed_unless_the_folder_is_the_writers_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("the user's")
    claim_output_folder(tmp_path, overwrite=False, owned=("README.md",))
    with pytest.raises(UserError, match="holds notes.txt, which this command did not write") as exc:
        claim_output_folder(tmp_path, overwrite=True, owned=("README.md",), exclusive=True)
    assert exc.value.param == "out"


def test_a_protected_folder_and_any_folder_above_it_are_refused(tmp_path):
    run = tmp_path / "runs" / "r18"
    run.mkdir(parents=True)
    for out in (run, tmp_path / "runs", tmp_path):
        with pytest.raises(UserError, match="which must be kept"):
            claim_output_folder(out, overwrite=True, protect=[run])
    assert claim_output_folder(run / "submission", overwrite=False, protect=[run]).is_dir()


def test_a_file_is_not_a_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="save_dir .* is a file, not a folder") as exc:
        claim_output_folder(tmp_path / "f", overwrite=True, param="save_dir")
    assert exc.value.param == "save_dir"
    with pytest.raises(UserError, match="cannot create"):
        claim_output_folder(tmp_path / "f" / "under", overwrite=True)


def test_an_output_file_needs_overwrite(tmp_path):
    target = tmp_path / "submission.zip"
    assert claim_output_file(target, overwrite=False) == target
    target.write_bytes(b"zip")
    with pytest.raises(UserError, match="already exists: pass overwrite=True"):
        claim_output_file(target, overwrite=False)
    with pytest.raises(UserError, match="is a folder"):
        claim_output_file(tmp_path, overwrite=True)
    assert target.read_bytes() == b"zip"


def test_removing_owned_files_keeps_folders_and_the_rest(tmp_path):
    (tmp_path / "README.md").write_text("old")
    (tmp_path / "keep.txt").write_text("x")
    (tmp_path / "sub.png").mkdir()
    assert remove_owned_files(tmp_path, ("README.md", "*.png")) == [tmp_path / "README.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "sub.png"]


# ----------------------------------------------------------------------------- one home


def _names_overwrite(node: ast.expr) -> bool:
    return any((isinstance(n, ast.Name) and n.id == "overwrite") or (isinstance(n, ast.Attribute) and n.attr == "overwrite")
               for n in ast.walk(node))


def folder_decisions(root: Path = PACKAGE) -> list[str]:
    """Code outside core/files.py that removes a folder tree, or decides on ``overwrite`` whether to refuse a folder."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if path == root / "core" / "files.py":
            continue
        where = path.relative_to(root.parent)
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr == "rmtree") or (
                    isinstance(node, ast.ImportFrom) and any(a.name == "rmtree" for a in node.names)):
                found.append(f"{where}:{node.lineno} removes a folder")
            elif isinstance(node, ast.If) and _names_overwrite(node.test) and any(
                    isinstance(n, ast.Raise) for stmt in node.body for n in ast.walk(stmt)):
                found.append(f"{where}:{node.lineno} refuses an output folder")
    return found


def test_the_walk_finds_a_second_guard(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("import shutil\n\ndef f(out, overwrite):\n"
                                  "    if out.exists() and any(out.iterdir()) and not overwrite:\n"
                                  "        raise UserError('x')\n    shutil.rmtree(out)\n")
    (package / "b.py").write_text("def g(args):\n    return claim_output_folder(args.out, overwrite=args.overwrite)\n")
    assert folder_decisions(package) == ["pkg/a.py:4 refuses an output folder", "pkg/a.py:6 removes a folder"]


def test_only_core_files_decides_on_output_folders():
    found = folder_decisions()
    assert not found, "use eva_utils.core.files.claim_output_folder:\n" + "\n".join(found)


class _InterruptingWriter:
    """A file that gets a real SIGINT on its second write, as a Ctrl-C in the middle of ``torch.save`` would."""

    def __init__(self, f):
        self.f, self.writes = f, 0

    def write(self, data):
        self.writes += 1
        if self.writes == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return self.f.write(data)

    def flush(self):
        self.f.flush()


def test_ctrl_c_during_a_torch_save_stops_the_program_after_the_file_is_whole(tmp_path):
    import torch

    path = tmp_path / "checkpoint.pt"
    files.atomic_write(path, lambda f: torch.save({"epoch": 1}, f))
    state = {"epoch": 2, "w": torch.arange(100_000.0)}
    with pytest.raises(KeyboardInterrupt):  # not torch's RuntimeError from inside its writer, and not lost
        files.atomic_write(path, lambda f: torch.save(state, _InterruptingWriter(f)))
    saved = torch.load(path, weights_only=True)
    assert saved["epoch"] == 2 and torch.equal(saved["w"], state["w"])  # the new file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works as before afterwards


def test_a_writers_ledger_lets_it_replace_its_own_unchanged_files_only(tmp_path):
    from eva_utils.core.files import check_replaceable, record_written

    mine, theirs = tmp_path / "a.txt", tmp_path / "b.txt"
    mine.write_text("written by the writer")
    record_written(tmp_path, [mine], ".ledger.json")
    check_replaceable(tmp_path, ["a.txt", "c.txt"], ".ledger.json", "the writer")  # its own, and a new name: fine
    theirs.write_text("the user's")
    with pytest.raises(UserError, match="b.txt was not written by the writer"):
        check_replaceable(tmp_path, ["a.txt", "b.txt"], ".ledger.json", "the writer")
    mine.write_text("edited by the user")
    with pytest.raises(UserError, match="a.txt was not written by the writer, or was changed since"):
        check_replaceable(tmp_path, ["a.txt"], ".ledger.json", "the writer")
    for damaged in ("[1, 2]", "not json", "{" * 100_000):
        (tmp_path / ".ledger.json").write_text(damaged)  # a damaged ledger records nothing
        with pytest.raises(UserError, match="a.txt was not written"):
            check_replaceable(tmp_path, ["a.txt"], ".ledger.json", "the writer")


def test_stale_temporaries_are_found_by_the_files_own_name_even_with_glob_characters(tmp_path):
    dead = 2**22 + 12345  # above Linux's default pid_max: no such process
    mine, other = tmp_path / f".run[1].pt.tmp{dead}", tmp_path / f".run1.pt.tmp{dead}"
    mine.write_bytes(b"half"), other.write_bytes(b"someone else's")
    assert files.remove_stale_temporaries(tmp_path / "run[1].pt") == [mine]  # "[1]" is part of the name, not a pattern
    assert other.exists() and not mine.exists()


@pytest.mark.parametrize("small_disk", ["1m"], indirect=True)
def test_a_staged_folder_that_is_a_mount_point_is_replaced_whole(small_disk):
    # the staging folder used to sit beside the output folder, in its parent: when the output folder was a mount
    # point (a Drive folder, a volume), the renames crossed file systems (EXDEV) after the old files were removed
    (small_disk / "a.txt").write_text("old a")
    (small_disk / "mine.txt").write_text("the user's")
    with files.staged_folder(small_disk, ["a.txt", "b.txt"]) as staging:
        (staging / "a.txt").write_text("new a")
        (staging / "b.txt").write_text("new b")
    assert sorted(p.name for p in small_disk.iterdir()) == ["a.txt", "b.txt", "mine.txt"]
    assert (small_disk / "a.txt").read_text() == "new a" and (small_disk / "mine.txt").read_text() == "the user's"
    here = os.getcwd()
    os.chdir(small_disk)  # not monkeypatch.chdir: it would move back only after the disk's unmount, which then fails
    try:
        with files.staged_folder(".", ["a.txt"]) as staging:  # the working folder ('.' has no name to stage beside)
            (staging / "a.txt").write_text("newer a")
    finally:
        os.chdir(here)
    assert (small_disk / "a.txt").read_text() == "newer a" and sorted(p.name for p in small_disk.iterdir()) == [
        "a.txt", "b.txt", "mine.txt"]


def test_a_staging_folder_left_by_a_killed_process_is_not_the_users_and_is_removed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("old")
    left = out / f".eva_utils_staging{2**22 + 12345}"  # no such process
    left.mkdir()
    (left / "a.txt").write_text("half")
    files.claim_output_folder(out, overwrite=True, owned=["a.txt"], exclusive=True)  # not a foreign file
    with pytest.raises(UserError, match="already holds"):
        files.claim_output_folder(out, overwrite=False, owned=["*"])  # a.txt is held; the staging folder is not
    with files.staged_folder(out, ["a.txt"]) as staging:
        (staging / "a.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"] and (out / "a.txt").read_text() == "new"
