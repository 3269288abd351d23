"""Tests for eva_utils.training.model_to_explain: the notebooks' model to explain, on any machine."""

import pytest
import torchvision

from eva_utils import models, sources
from eva_utils.core.errors import UserError
from eva_utils.data.cifar10 import CIFAR10_CLASSES
from eva_utils.training import model_to_explain


def test_torchvision_classifier_falls_back_to_training_on_the_sample(offline):
    classifier = model_to_explain.torchvision_classifier("resnet18", pretrained=True, fallback="train", epochs=1, max_batches=2,
                                                input_size=32, progress=False)
    assert classifier.classes == CIFAR10_CLASSES and classifier.preset.size == 32
    assert isinstance(classifier.model, torchvision.models.ResNet) and classifier.model.fc.out_features == 10
    assert "could not be downloaded" in classifier.description and "Temporary failure" in classifier.description
    assert not classifier.model.training


def test_torchvision_classifier_falls_back_to_the_shipped_model(offline):
    classifier = model_to_explain.torchvision_classifier("vgg16", pretrained=True)
    assert isinstance(classifier.model, models.ResNet) and classifier.preset.size == 32
    assert classifier.classes == CIFAR10_CLASSES
    assert "resnet18_w16_cifar10" in classifier.description and "could not be downloaded" in classifier.description
    with pytest.raises(UserError, match="valid fallback names: shipped, train"):
        model_to_explain.torchvision_classifier("vgg16", pretrained=False, fallback="random")


def test_the_old_homes_still_work_and_warn(offline):
    with pytest.warns(DeprecationWarning, match="sources.torchvision_classifier moved to eva_utils.training.model_to_explain"):
        classifier = sources.torchvision_classifier("vgg16", pretrained=False)
    with pytest.warns(DeprecationWarning, match="Classifier.categories is now Classifier.classes"):
        assert classifier.categories == classifier.classes == CIFAR10_CLASSES
