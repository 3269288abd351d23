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
