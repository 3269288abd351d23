"""Tests for eva_utils.recipe: the notebooks' model to explain (the default recipe runs through the CLI tests)."""

import pytest
import torchvision

from eva_utils import models
from eva_utils.core.errors import UserError
from eva_utils.data.cifar10 import CIFAR10_CLASSES
from eva_utils.models import loading as sources
from eva_utils.training import recipe


def test_torchvision_classifier_falls_back_to_training_on_the_sample(offline):
    classifier = recipe.torchvision_classifier("resnet18", pretrained=True, fallback="train", epochs=1, max_batches=2,
                                                input_size=32, progress=False)
    assert classifier.classes == CIFAR10_CLASSES and classifier.preset.size == 32
    assert isinstance(classifier.model, torchvision.models.ResNet) and classifier.model.fc.out_features == 10
    assert "could not be downloaded" in classifier.description and "Temporary failure" in classifier.description
    assert not classifier.model.training


def test_torchvision_classifier_falls_back_to_the_shipped_model(offline):
    classifier = recipe.torchvision_classifier("vgg16", pretrained=True)
    assert isinstance(classifier.model, models.ResNet) and classifier.preset.size == 32
    assert classifier.classes == CIFAR10_CLASSES
    assert "resnet18_w16_cifar10" in classifier.description and "could not be downloaded" in classifier.description
    with pytest.raises(UserError, match="valid fallback names: shipped, train"):
        recipe.torchvision_classifier("vgg16", pretrained=False, fallback="random")


def test_the_old_homes_still_work_and_warn(offline):
    with pytest.warns(DeprecationWarning, match="sources.torchvision_classifier moved to eva_utils.recipe"):
        classifier = sources.torchvision_classifier("vgg16", pretrained=False)
    with pytest.warns(DeprecationWarning, match="Classifier.categories is now Classifier.classes"):
        assert classifier.categories == classifier.classes == CIFAR10_CLASSES


# ----------------------------------------------------------------------------- a notebook's run in Colab


def test_no_accidental_hours_on_a_cpu(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    full = recipe.TrainConfig(epochs=20)
    with pytest.raises(UserError, match="about 8 hours.*Runtime > Change runtime type > GPU.*ALLOW_CPU = True"):
        recipe.for_this_machine(full)
    small = recipe.for_this_machine(full, allow_cpu=True)
    assert (small.width, small.device, small.epochs, small.lr) == (16, "cpu", 20, full.lr)  # the same recipe, narrower
    smoke = recipe.TrainConfig(max_batches=5)
    assert recipe.for_this_machine(smoke) is smoke


def test_a_gpu_runs_the_recipe_as_it_is(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    config = recipe.TrainConfig()
    assert recipe.for_this_machine(config) is config


def test_the_run_folder_goes_to_drive_only_in_colab(monkeypatch):
    import sys
    import types

    assert recipe.run_folder("runs/r18") == recipe.Path("runs/r18")
    with pytest.raises(UserError, match="needs Google Colab"):
        recipe.run_folder("runs/r18", drive=True)
    mounted = []
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=mounted.append)
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(sys.modules["google"], "colab", colab, raising=False)
    assert str(recipe.run_folder("runs/r18", drive=True)) == "/content/drive/MyDrive/eva_utils/runs/r18"
    assert mounted == ["/content/drive"]


def test_resume_point(tmp_path):
    assert recipe.resume_point(tmp_path, resume=True) is None  # nothing to resume yet: start
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    assert recipe.resume_point(tmp_path, resume=True) == tmp_path / "checkpoint.pt"
    assert recipe.resume_point(tmp_path, resume=False) is None
