"""Tests for eva_utils.inputs: finding and reading image files, preprocessing presets.

The ImageNet preset is checked against torchvision's own evaluation transform, the CIFAR preset
against eva_utils's albumentations test transform.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from eva_utils.data import cifar10 as data

from eva_utils.data import images as inputs

from eva_utils.data import presets as transforms
from eva_utils.core.errors import DataNotFoundError, UserError


@pytest.fixture(scope="module")
def cifar():
    return data.load_sample(train=False)


def _save(array: np.ndarray, path, mode: str | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(path)
    return path


# ----------------------------------------------------------------------------- finding images


def test_class_folder_layout_plain_folder_and_single_files(tmp_path, cifar):
    root = tmp_path / "data"
    _save(cifar.images[0], root / "cat" / "b.png")
    _save(cifar.images[1], root / "cat" / "a.jpg")
    _save(cifar.images[2], root / "dog" / "c.PNG")
    (root / "dog" / "notes.txt").write_text("not an image")
    _save(cifar.images[3], root / ".hidden" / "d.png")
    _save(cifar.images[4], root / "cat" / ".e.png")
    found = inputs.find_images(root)
    assert [f.name for f in found] == ["cat/a.jpg", "cat/b.png", "dog/c.PNG"]
    assert not any(f.given for f in found)
    plain = inputs.find_images(root / "cat")
    assert [f.name for f in plain] == ["a.jpg", "b.png"]
    single = inputs.find_images([root / "dog" / "c.PNG", str(root / "cat" / "a.jpg")])
    assert [(f.name, f.given) for f in single] == [("c.PNG", True), ("a.jpg", True)]


def test_folders_keep_corrupt_images_for_the_caller_to_skip(tmp_path, cifar):
    _save(cifar.images[0], tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG but not really")
    found = inputs.find_images(tmp_path)
    assert [f.name for f in found] == ["broken.png", "ok.png"]
    with pytest.raises(inputs.UnreadableImageError, match="broken.png is not an image PIL can read"):
        inputs.read_image(found[0].path)


def test_missing_empty_and_non_image_inputs_are_user_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        inputs.find_images(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("hello")
    with pytest.raises(UserError, match="no images in"):
        inputs.find_images(tmp_path / "empty")
    with pytest.raises(inputs.UnreadableImageError, match="readme.txt is not an image"):
        inputs.find_images(tmp_path / "empty" / "readme.txt")  # named directly: must be an image


# ----------------------------------------------------------------------------- reading images


def test_grey_palette_and_transparent_images_become_rgb(tmp_path, cifar):
    rgb = cifar.images[7]
    grey = inputs.read_image(_save(rgb, tmp_path / "grey.png", "L"))
    assert grey.mode == "RGB" and grey.size == (32, 32)
    grey_array = np.asarray(grey)
    assert (grey_array[..., 0] == grey_array[..., 1]).all() and (grey_array[..., 1] == grey_array[..., 2]).all()
    palette = inputs.read_image(_save(rgb, tmp_path / "palette.png", "P"))
    assert palette.mode == "RGB"
    assert np.abs(np.asarray(palette).astype(int) - rgb).mean() < 20  # a 256-colour palette, close to the original
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:16, :, 3] = 0  # top half transparent
    image = np.asarray(inputs.read_image(_save(rgba, tmp_path / "rgba.png")))
    assert (image[:16] == 255).all(), "transparent pixels are composited on white"
    assert (image[16:] == rgb[16:]).all()


def test_preset_from_pil_and_from_array_agree_and_round_trip_to_rgb(tmp_path):
    red = np.zeros((40, 40, 3), np.uint8)
    red[..., 0] = 255
    preset = inputs.cifar_preset(size=40)
    from_pil = preset(inputs.read_image(_save(red, tmp_path / "red.png")))
    assert torch.equal(from_pil, preset(red))
    shown = preset.to_rgb(from_pil[None])  # (1, 40, 40, 3)
    assert shown.shape == (1, 40, 40, 3)
    np.testing.assert_allclose(shown[0], red / 255.0, atol=1e-5)  # red stays red: RGB order throughout


# ----------------------------------------------------------------------------- presets


def test_imagenet_preset_matches_torchvision_evaluation_transform(cifar):
    from torchvision.models import ResNet50_Weights

    reference = ResNet50_Weights.IMAGENET1K_V1.transforms()  # resize 256, crop 224, ImageNet mean/std
    image = np.ascontiguousarray(np.concatenate([cifar.images[0], cifar.images[1]], axis=1))  # (32, 64, 3): not square
    expected = reference(torch.from_numpy(image).permute(2, 0, 1))  # (3, 224, 224)
    got = inputs.imagenet_preset()(image)
    assert got.shape == (3, 224, 224)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_cifar_preset_matches_the_training_normalisation(cifar):
    expected = transforms.test_transforms()(image=cifar.images[5])["image"]  # albumentations: (3, 32, 32)
    torch.testing.assert_close(inputs.cifar_preset()(cifar.images[5]), expected, atol=1e-5, rtol=0)


def test_get_preset_names_sizes_and_overrides():
    small = inputs.get_preset("imagenet", size=64)
    assert (small.size, small.resize, small.mean) == (64, 73, inputs.IMAGENET_MEAN)
    assert inputs.get_preset("CIFAR").size == 32
    bigger = inputs.get_preset(inputs.cifar_preset(), size=64, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert (bigger.size, bigger.resize, bigger.mean, bigger.std, bigger.name) == (64, 64, (0.5,) * 3, (0.25,) * 3, "cifar")
    assert inputs.cifar_preset(size=48)(np.zeros((20, 30, 3), np.uint8)).shape == (3, 48, 48)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="imagenett"), "did you mean imagenet"),
        (dict(name="imagenet", size=4), "at least 8 pixels"),
        (dict(name="imagenet", std=(0.2, 0.0, 0.2)), "std values must be positive"),
        (dict(name="imagenet", mean=(0.5, 0.5)), "mean needs 3 values"),
    ],
)
def test_bad_presets(kwargs, message):
    with pytest.raises(UserError, match=message):
        inputs.get_preset(**kwargs)
