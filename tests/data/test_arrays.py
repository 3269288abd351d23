import re

import numpy as np
import pytest
import torch

from eva_utils import data
from eva_utils.core.errors import DataNotFoundError, UserError
from eva_utils.data import presets as transforms


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UserError, match="cifar10, sample"):
        data.load_dataset("cifar100")


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


@pytest.fixture
def cifar_like(tmp_path):
    """A small valid npz: the bundled sample's first images, with a test split and class names."""
    train, test = data.load_sample(train=True), data.load_sample(train=False)
    return _write_npz(tmp_path / "mine.npz", train_images=train.images[::50], train_labels=train.labels[::50],
                      test_images=test.images[::25], test_labels=test.labels[::25], classes=np.array(data.CIFAR10_CLASSES))


def test_npz_loads_through_the_same_dataset_and_transforms(cifar_like):
    train = data.load_dataset(cifar_like, train=True, transform=transforms.test_transforms())
    test = data.load_dataset(cifar_like, train=False)
    sample = data.load_sample(train=True, transform=transforms.test_transforms())
    assert isinstance(train, data.ArrayDataset) and len(train) == 40 and len(test) == 40
    assert train.classes == data.CIFAR10_CLASSES
    image, label = train[1]
    expected, expected_label = sample[50]
    assert label == expected_label and torch.equal(image, expected)


def test_npz_without_test_split_is_tested_on_the_bundled_test_images(tmp_path):
    train = data.load_sample(train=True)
    path = _write_npz(tmp_path / "t.npz", train_images=train.images[:20], train_labels=train.labels[:20])
    assert data.load_dataset(path, train=True).classes == data.CIFAR10_CLASSES  # no classes: CIFAR-10's
    test = data.load_dataset(path, train=False)
    np.testing.assert_array_equal(test.images, data.load_sample(train=False).images)
    other = _write_npz(tmp_path / "o.npz", train_images=train.images[:20], train_labels=np.arange(20) % 2,
                       classes=np.array(["cat", "dog"]))
    with pytest.raises(UserError, match="add a test split"):
        data.load_dataset(other, train=False)


def test_npz_with_own_classes(tmp_path):
    images = np.zeros((6, 8, 8, 3), np.uint8)
    path = _write_npz(tmp_path / "two.npz", train_images=images, train_labels=np.array([0, 1, 0, 1, 0, 1]),
                      classes=np.array(["cat", "dog"]))
    ds = data.load_npz(path)
    assert ds.classes == ("cat", "dog") and ds[1][1] == 1


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(images=np.zeros((4, 32, 32, 3), np.uint8), labels=np.zeros(4, np.int64)), "has no train_images, train_labels"),
        (dict(train_images=np.zeros((4, 32, 32, 3), np.float32), train_labels=np.zeros(4, np.int64)), "dtype float32"),
        (dict(train_images=np.zeros((4, 3, 32, 32), np.uint8), train_labels=np.zeros(4, np.int64)), "channels first"),
        (dict(train_images=np.zeros((4, 32, 32), np.uint8), train_labels=np.zeros(4, np.int64)), "must be (N, H, W, 3)"),
        (dict(train_images=np.zeros((4, 32, 32, 3), np.uint8), train_labels=np.zeros(3, np.int64)),
         "4 images but train_labels 3"),
        (dict(train_images=np.zeros((4, 32, 32, 3), np.uint8), train_labels=np.array([0, 1, 2, 10])), "range over 0..10"),
        (dict(train_images=np.zeros((4, 32, 32, 3), np.uint8), train_labels=np.array([0, -1, 2, 3])), "range over -1..3"),
        (dict(train_images=np.zeros((4, 32, 32, 3), np.uint8), train_labels=np.zeros(4, np.float32)), "integer array"),
        (dict(train_images=np.zeros((0, 32, 32, 3), np.uint8), train_labels=np.zeros(0, np.int64)), "holds no images"),
        (dict(train_images=np.zeros((2, 32, 32, 3), np.uint8), train_labels=np.zeros(2, np.int64),
              classes=np.array(["cat", "cat"])), "distinct names"),
        (dict(train_images=np.zeros((2, 32, 32, 3), np.uint8), train_labels=np.zeros(2, np.int64),
              classes=np.array(["cat", None], dtype=object)), "without pickle"),
    ],
)
def test_bad_npz_is_one_clear_line(tmp_path, capsys, arrays, message):
    from eva_utils.apps.cli import main

    path = _write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserError, match=re.escape(message)) as exc:
        data.load_npz(path)
    assert "\n" not in str(exc.value) and "bad.npz" in str(exc.value)
    code = main(["train", "--data", path, "--device", "cpu", "--quiet", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_npz_that_is_not_an_npz_or_missing(tmp_path):
    fake = tmp_path / "fake.npz"
    fake.write_text("not a zip file")
    with pytest.raises(UserError, match="not a readable .npz file"):
        data.load_npz(fake)
    with pytest.raises(DataNotFoundError, match="no such file"):
        data.load_npz(tmp_path / "absent.npz")


def test_damaged_npz_members_and_folders_are_one_line(tmp_path):
    import zipfile

    not_npy = tmp_path / "member.npz"
    with zipfile.ZipFile(not_npy, "w") as z:  # a zip whose members are not .npy arrays
        z.writestr("train_images.npy", b"not an array")
        z.writestr("train_labels.npy", b"nor this")
    huge = tmp_path / "huge.npz"
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 32, 32, 3), np.uint8))
    header["shape"] = (2**40, 32, 32, 3)  # a header that declares petabytes
    with zipfile.ZipFile(huge, "w") as z:
        with z.open("train_images.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, header)
        z.writestr("train_labels.npy", b"")
    folder = tmp_path / "folder.npz"
    folder.mkdir()
    for path, message in [(not_npy, "damaged"), (huge, "larger than this machine's memory"), (folder, "is a folder")]:
        with pytest.raises(UserError, match=message) as exc:
            data.load_npz(path)
        assert "\n" not in str(exc.value)


@pytest.mark.parametrize("path", [123, None, 1.5, ["a.npz"]])
def test_a_path_that_is_not_a_path_is_a_user_error_naming_it(path):
    with pytest.raises(UserError, match="path must be") as exc:
        data.load_npz(path)
    assert exc.value.param == "path"


def test_npz_without_test_split_whose_classes_need_pickle_is_one_clear_line(tmp_path):
    # the bundled-test fallback read the classes itself, and numpy's ValueError came out as a traceback
    path = tmp_path / "mine.npz"
    classes = np.array(["a", 1], dtype=object)
    np.savez(path, train_images=np.zeros((4, 8, 8, 3), np.uint8), train_labels=np.zeros(4, np.int64), classes=classes)
    with pytest.raises(UserError, match="cannot be read without pickle"):
        data.load_dataset(str(path), train=False)
