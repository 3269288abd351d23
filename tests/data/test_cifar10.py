import numpy as np
import pytest
import torch

from eva_utils import data
from eva_utils.core.errors import DataNotFoundError, UserError
from eva_utils.data import presets as transforms


def test_sample_is_real_cifar10_with_balanced_classes():
    train, test = data.load_sample(train=True), data.load_sample(train=False)
    assert train.images.shape == (2000, 32, 32, 3) and train.images.dtype == np.uint8
    assert test.images.shape == (1000, 32, 32, 3)
    assert train.classes == data.CIFAR10_CLASSES
    assert np.bincount(train.labels, minlength=10).tolist() == [200] * 10
    assert np.bincount(test.labels, minlength=10).tolist() == [100] * 10


def test_mean_std_are_cifar10_train_statistics_not_imagenet():
    pixels = data.load_sample(train=True).images.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(pixels.mean(0), data.CIFAR10_MEAN, atol=0.015)
    np.testing.assert_allclose(pixels.std(0), data.CIFAR10_STD, atol=0.015)
    # ImageNet's mean differs by > 0.015 in at least one channel: the check above could fail.
    assert np.abs(np.array([0.485, 0.456, 0.406]) - pixels.mean(0)).max() > 0.015


def test_default_item_is_chw_float_in_unit_range():
    image, label = data.load_sample(train=False)[3]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert isinstance(label, int)


def test_denormalize_inverts_the_test_transform():
    ds = data.load_sample(train=False, transform=transforms.test_transforms())
    batch = torch.stack([ds[i][0] for i in range(4)])
    restored = data.denormalize(batch)  # (4, 32, 32, 3)
    np.testing.assert_allclose(restored, ds.images[:4] / 255.0, atol=1e-5)
    assert data.denormalize(batch[0]).shape == (32, 32, 3)
    with pytest.raises(UserError, match="C=3"):
        data.denormalize(torch.zeros(2, 32, 32, 3))


def test_array_dataset_checks_its_input():
    with pytest.raises(UserError, match="uint8"):
        data.ArrayDataset(np.zeros((2, 32, 32, 3), np.float32), [0, 1])
    with pytest.raises(UserError, match="labels"):
        data.ArrayDataset(np.zeros((2, 32, 32, 3), np.uint8), [0])


def test_missing_cifar10_without_download_says_how_to_get_it(tmp_path):
    with pytest.raises(DataNotFoundError, match="download=True") as exc:
        data.get_cifar10(tmp_path / "nothing", download=False)
    assert exc.value.param == "download" and "--" not in str(exc.value)  # the parameter, not the flag


def test_failed_download_offers_the_sample_and_npz_files_by_parameter(tmp_path, monkeypatch):
    import urllib.error

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive", no_network)
    with pytest.raises(DataNotFoundError, match="download from www.cs.toronto.edu failed") as exc:
        data.get_cifar10(tmp_path / "d")
    assert "data='sample'" in str(exc.value) and ".npz" in str(exc.value) and "--" not in str(exc.value)
    assert exc.value.param == "data"
