"""Tests for eva_utils.report: the demo's figures and the coursework submission kit."""

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from eva_utils.apps import report
from eva_utils.apps.cli import main
from eva_utils.core.errors import UserError

TINY = ["--data", "sample", "--width", "4", "--batch-size", "64", "--quiet", "--workers", "0", "--scheduler", "step"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "r18"
    assert main(["train", *TINY, "--epochs", "2", "--out", str(out)]) == 0
    return out


def _links(markdown: str) -> list[str]:
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", markdown)


def test_the_submission_holds_what_coursework_asks_for_and_every_figure_it_names(run, tmp_path):
    files = report.write_submission(run, out=tmp_path / "submission")
    readme = files["readme"].read_text()
    links = _links(readme)
    assert set(links) >= {"curves.png", "misclassified.png", "gradcam_layers.png", "confusion_matrix.png"}
    for link in links:
        with Image.open(tmp_path / "submission" / link) as image:
            image.verify()  # each figure the README names exists and is a complete image
    for section in ("## Hyperparameters", "## Model", "## Results", "## What was observed", "Per class"):
        assert section in readme


def test_the_submissions_numbers_are_the_historys(run, tmp_path):
    files = report.write_submission(run, out=tmp_path / "s")
    history = json.loads((run / "history.json").read_text())
    assert json.loads(files["history"].read_text()) == history
    metrics = json.loads(files["metrics"].read_text())
    assert metrics["final_test_accuracy"] == history["test_acc"][-1]
    assert metrics["final_train_accuracy"] == history["train_acc"][-1]
    assert metrics["epochs"] == len(history["epoch"]) == 2
    row = f"| final accuracy (epoch 2) | {100 * history['train_acc'][-1]:.2f}% | {100 * history['test_acc'][-1]:.2f}% |"
    readme = files["readme"].read_text()
    assert row in readme
    assert f"| lr | {metrics['settings']['lr']} |" in readme
    per_class = metrics["per_class_accuracy"]
    assert len(per_class) == 10 and sum(sum(r) for r in metrics["confusion_matrix"]) == metrics["images"] == 1000


def test_an_existing_submission_is_kept_without_overwrite(run, tmp_path, capsys):
    out = tmp_path / "s"
    report.write_submission(run, out=out)
    before = (out / "README.md").read_bytes()
    code = main(["report", str(run), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (out / "README.md").read_bytes() == before
    assert main(["report", str(run), "--out", str(out), "--overwrite", "--zip"]) == 0
    assert Path(f"{out}.zip").stat().st_size > 10_000


def test_a_folder_that_is_not_a_run(tmp_path, capsys):
    code = main(["report", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "checkpoint.pt is missing" in err and "Traceback" not in err


def test_an_msdnet_run_is_pointed_to_eva_utils_msd(tmp_path):
    out = tmp_path / "msd"
    assert main(["train", "--model", "msdnet", "--data", "sample", "--batch-size", "64", "--max-batches", "1",
                 "--epochs", "1", "--quiet", "--workers", "0", "--scheduler", "step", "--out", str(out)]) == 0
    with pytest.raises(UserError, match="eva-utils msd"):
        report.write_submission(out)


# ----------------------------------------------------------------------------- nothing of the user's is lost (issue 22)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _report(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eva_utils", "report", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def _refused(proc: subprocess.CompletedProcess, *expected: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for text in expected:
        assert text in proc.stderr, proc.stderr


def test_overwrite_never_removes_the_run_a_folder_above_it_or_the_users_files(run, tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("the user's own")
    for out, said in ((run, "which must be kept"), (run.parent, "which must be kept"),
                      (user, "holds notes.txt, which this command did not write")):
        before, mine = _tree(run), _tree(user)
        _refused(_report(str(run), "--out", str(out), "--overwrite"), said, "--out")
        assert _tree(run) == before and _tree(user) == mine
    before = _tree(run)
    _refused(_report(str(run), "--out", ".", "--overwrite", cwd=run.parent), "which must be kept")
    assert _tree(run) == before


def test_an_out_that_is_a_file_is_refused(run, tmp_path):
    (tmp_path / "f").write_text("x")
    _refused(_report(str(run), "--out", str(tmp_path / "f")), "is a file, not a folder", "--out")
    assert (tmp_path / "f").read_text() == "x"


@pytest.mark.parametrize("text", [b"5", b"null", b"[]", b'{"epoch": [1, 2], "train_loss": [1.0]}',
                                  b'{"epoch": [1], "train_loss": ["a"]}', b"\xff\xfe", b"[" * 100_000])
def test_a_damaged_history_is_refused_before_anything_is_written(tmp_path, text):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"not read: the history is checked first")
    (run / "history.json").write_bytes(text)
    _refused(_report(str(run), "--out", str(tmp_path / "s")), f"{run / 'history.json'}")
    assert not (tmp_path / "s").exists() and (run / "history.json").read_bytes() == text


def test_zip_never_replaces_a_submission_zip_without_overwrite(run, tmp_path):
    out = tmp_path / "s"
    archive = Path(f"{out}.zip")
    with zipfile.ZipFile(archive, "w") as earlier:  # a zip of a submission's files: overwrite may replace it
        earlier.writestr("README.md", "an earlier submission")
    before = archive.read_bytes()
    _refused(_report(str(run), "--out", str(out), "--zip"), "already exists", "--overwrite")
    assert archive.read_bytes() == before and not any(out.iterdir() if out.exists() else [])
    assert main(["report", str(run), "--out", str(out), "--zip", "--overwrite"]) == 0
    assert zipfile.ZipFile(archive).testzip() is None and "README.md" in zipfile.ZipFile(archive).namelist()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left behind


def test_overwrite_replaces_only_the_reports_own_files(run, tmp_path):
    out = tmp_path / "s"
    report.write_submission(run, out=out)
    (out / "README.md").write_text("stale")
    assert main(["report", str(run), "--out", str(out), "--overwrite"]) == 0
    assert (out / "README.md").read_text().startswith("# ") and set(_tree(out)) <= set(report.SUBMISSION_FILES)


@pytest.mark.parametrize("small_disk", ["8m"], indirect=True)  # the submission (2.5 MB), its staged copy and a zip
def test_a_full_disk_while_zipping_names_the_zip_and_leaves_no_partial_archive(run, small_disk, fill_disk, tmp_path):
    out = small_disk / "sub"
    assert _report(str(run), "--out", str(out)).returncode == 0
    used = sum(p.stat().st_blocks * 512 for p in out.rglob("*") if p.is_file())  # the pages the files take
    zipped = Path(shutil.make_archive(str(tmp_path / "measure"), "zip", root_dir=out)).stat().st_size
    fill_disk(small_disk, leave_kb=(used + zipped // 2) // 1024)  # room for the new files and about half their zip
    before = _tree(out)
    _refused(_report(str(run), "--out", str(out), "--zip", "--overwrite"),
             f"could not write {out}.zip (No space left on device)")
    assert not Path(f"{out}.zip").exists() and [p.name for p in small_disk.iterdir() if p.name.startswith(".")] == []
    assert _tree(out) == before  # the submission already there is whole


@pytest.mark.parametrize("small_disk", ["8m"], indirect=True)  # room for the submission and its staged copy
def test_a_full_disk_while_rewriting_a_submission_keeps_the_earlier_one_whole(run, small_disk, fill_disk):
    out = small_disk / "sub"
    assert _report(str(run), "--out", str(out)).returncode == 0
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    fill_disk(small_disk, leave_kb=size // 2048)  # room for about half the new submission
    before = _tree(out)
    done = _report(str(run), "--out", str(out), "--overwrite")
    _refused(done, "No space left on device", "what was there before is intact")
    assert f"could not write {out}{os.sep}" in done.stderr  # the file meant, not the hidden folder it was staged in
    assert _tree(out) == before  # the earlier submission, every file of it, as it was
    assert [p.name for p in small_disk.iterdir() if p.name.startswith(".")] == []
    (small_disk / "filler").unlink()
    assert _report(str(run), "--out", str(out), "--overwrite").returncode == 0
    assert set(_tree(out)) == set(before)


@pytest.mark.parametrize("mine", [b"MINE\n", "zip of notes.txt"])
def test_overwrite_never_replaces_a_zip_that_report_did_not_write(run, tmp_path, mine):
    out, archive = tmp_path / "uz", tmp_path / "uz.zip"  # uz/ does not exist: only the zip is the user's
    if mine == "zip of notes.txt":
        with zipfile.ZipFile(archive, "w") as theirs:
            theirs.writestr("README.md", "mine")
            theirs.writestr("notes.txt", "mine too")
    else:
        archive.write_bytes(mine)
    before = _tree(tmp_path)
    _refused(_report(str(run), "--out", str(out), "--zip", "--overwrite"),
             f"{archive} was not written by eva-utils report", "move it away or choose another out", "--out")
    assert _tree(tmp_path) == before and not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["uz.zip"]


# ----------------------------------------------------------------------------- the numbers are the model's (issue 1)


def _tampered_copy(run: Path, tmp_path: Path, change) -> Path:
    """A copy of ``run`` whose history.json is changed by ``change`` (a function of the history's dict)."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    history = json.loads((copy / "history.json").read_text())
    change(history)
    (copy / "history.json").write_text(json.dumps(history))
    return copy


@pytest.mark.parametrize(("change", "said"), [
    (lambda h: h.update(epoch=[5, 3], test_acc=[0.97, 0.99]), "epoch 3 follows epoch 5"),
    (lambda h: h.update(test_acc=[0.97, 0.99]), "does not match the history saved in the checkpoint (test_acc of epoch 1: 0.97"),
    (lambda h: h.update({k: v[:1] for k, v in h.items()}), "(1 epochs in"),
])
def test_a_history_json_that_is_not_the_checkpoints_is_refused_before_anything_is_written(run, tmp_path, change, said):
    copy = _tampered_copy(run, tmp_path, change)
    before = _tree(copy)
    _refused(_report(str(copy), "--out", str(tmp_path / "s")), said)
    assert not (tmp_path / "s").exists() and _tree(copy) == before


def test_the_headline_accuracy_is_the_saved_models_measured_now(run, tmp_path):
    # history.json and the checkpoint's history both say 99%: the README's title must be what the model scores
    copy = _tampered_copy(run, tmp_path, lambda h: h.update(test_acc=[0.97, 0.99]))
    ckpt = torch.load(copy / "checkpoint.pt", weights_only=True)
    ckpt["history"]["test_acc"] = [0.97, 0.99]
    torch.save(ckpt, copy / "checkpoint.pt")
    files = report.write_submission(copy, out=tmp_path / "s")
    metrics = json.loads(files["metrics"].read_text())
    title = files["readme"].read_text().splitlines()[0]
    assert metrics["accuracy"] < 0.5 and title.endswith(f": {100 * metrics['accuracy']:.2f}% test accuracy"), title
    readme = files["readme"].read_text()
    assert "| history.json | train | test |" in readme and "99.00%" in readme  # the history's, labelled so
    assert f"**{100 * metrics['accuracy']:.2f}%**" in readme and "the history's last epoch recorded 99.00%" in readme
