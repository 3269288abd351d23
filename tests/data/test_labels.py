"""Tests for eva_utils.labels: labels files are read as data, never run."""

import json

import pytest

from eva_utils import sources  # the 0.1.0 path, where the old names live on
from eva_utils.core.errors import DataNotFoundError, UserError
from eva_utils.data import labels


@pytest.mark.parametrize(
    "text",
    [
        "{0: 'cat',\n 1: 'dog',\n 2: 'person'}\n",  # the GradCam tool's format
        "labels = {0: 'cat', 1: 'dog', 2: 'person'}",
        json.dumps({"0": "cat", "1": "dog", "2": "person"}),
        json.dumps(["cat", "dog", "person"]),
        "['cat', 'dog', 'person']",
        "cat\ndog\n\nperson\n",
        "\ufeffcat\r\ndog\r\nperson",
    ],
)
def test_labels_formats(tmp_path, text):
    (tmp_path / "labels.txt").write_text(text, encoding="utf-8")
    assert labels.read_labels(tmp_path / "labels.txt") == ("cat", "dog", "person")


def test_labels_one_per_line_may_hold_spaces_and_commas(tmp_path):
    (tmp_path / "labels.txt").write_text("great white shark, white shark\ntench, Tinca tinca\n")
    assert labels.read_labels(tmp_path / "labels.txt") == ("great white shark, white shark", "tench, Tinca tinca")


@pytest.mark.parametrize(
    "template",
    [
        "__import__('os').remove({path!r})",
        "{{0: __import__('os').remove({path!r}), 1: 'dog'}}",
        "['cat', __import__('os').remove({path!r})]",
        "import os; os.remove({path!r})",
        "(lambda: __import__('os').remove({path!r}))()",
    ],
)
def test_labels_file_with_code_is_never_run(tmp_path, template):
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("still here")
    (tmp_path / "labels.txt").write_text(template.format(path=str(sentinel)))
    with pytest.raises(UserError, match="contains Python code.*it was not run"):
        labels.read_labels(tmp_path / "labels.txt")
    assert sentinel.read_text() == "still here"


@pytest.mark.parametrize(
    "text, message",
    [
        ("{0: 'cat', 2: 'dog'}", "1 is missing"),
        ("{'a': 'cat'}", "class indices"),
        ("['cat', 3]", "label 1 is 3"),
        ("{0: 'cat', 1: 'dog'", "not valid Python or JSON"),
        ("   \n", "is empty"),
        ("[" * 100_000, "nested too deeply"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"0": ' * 50_000 + '"cat"' + "}" * 50_000, "nested too deeply"),
    ],
)
def test_bad_labels_files(tmp_path, text, message):
    (tmp_path / "labels.txt").write_text(text)
    with pytest.raises(UserError, match=message) as exc:
        labels.read_labels(tmp_path / "labels.txt")
    assert "\n" not in str(exc.value)


def test_labels_file_missing_or_binary(tmp_path):
    with pytest.raises(DataNotFoundError):
        labels.read_labels(tmp_path / "nope.txt")
    (tmp_path / "labels.bin").write_bytes(b"\xff\xfe\x00\x81binary")
    with pytest.raises(UserError, match="not a readable text file"):
        labels.read_labels(tmp_path / "labels.bin")


def test_imagenet_classes_ship_with_torchvision():
    names = labels.imagenet_classes()
    assert len(names) == 1000 and names[0] == "tench" and names[281] == "tabby"


def test_the_old_names_in_sources_still_work_and_warn(tmp_path):
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    with pytest.warns(DeprecationWarning, match="eva_utils.sources.read_labels moved to eva_utils.data.labels.read_labels"):
        assert sources.read_labels(tmp_path / "labels.txt") == ("cat", "dog")
    with pytest.warns(DeprecationWarning):
        assert sources.imagenet_categories() == labels.imagenet_classes()
