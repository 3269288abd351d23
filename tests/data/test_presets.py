"""Tests for eva_utils.data.presets, the one home of preprocessing (pixels -> tensor).

The albumentations transforms are checked pixel by pixel; the ImageNet preset against torchvision's own
evaluation transform, the CIFAR preset against the albumentations test transform.
"""

import ast
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import eva_utils
from eva_utils import data
from eva_utils.core.errors import UserError
from eva_utils.data import presets
from eva_utils.data.images import read_image

PACKAGE = Path(eva_utils.__file__).parent


@pytest.fixture(scope="module")
def image():
    return data.load_sample(train=True).images[7]  # (32, 32, 3) uint8


def _normalised(img):
    mean, std = np.array(data.CIFAR10_MEAN), np.array(data.CIFAR10_STD)
    return torch.from_numpy(((img / 255.0 - mean) / std).transpose(2, 0, 1)).float()


def test_presets_build_and_run_without_warnings(image):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train, test = presets.train_transforms(), presets.test_transforms()
        for _ in range(5):
            out = train(image=image)["image"]
        test(image=image)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32


def test_test_transform_normalises_with_cifar10_statistics(image):
    out = presets.test_transforms()(image=image)["image"]
    torch.testing.assert_close(out, _normalised(image), atol=1e-5, rtol=0)


def test_all_augmentations_can_be_switched_off(image):
    off = presets.train_transforms(hflip=0, affine=0, pad=0, cutout=0)
    torch.testing.assert_close(off(image=image)["image"], _normalised(image), atol=1e-5, rtol=0)


def test_flip_alone_mirrors_the_image(image):
    flip = presets.train_transforms(hflip=1.0, affine=0, pad=0, cutout=0)
    torch.testing.assert_close(flip(image=image)["image"], _normalised(image[:, ::-1]), atol=1e-5, rtol=0)


def test_cutout_makes_one_16x16_hole_filled_with_the_mean(image):
    cut = presets.train_transforms(hflip=0, affine=0, pad=0, cutout=1.0, seed=3)
    out = cut(image=image)["image"]
    fill = torch.tensor([round(255 * m) / 255 for m in data.CIFAR10_MEAN])
    hole_value = (fill - torch.tensor(data.CIFAR10_MEAN)) / torch.tensor(data.CIFAR10_STD)  # ~0 after normalising
    in_hole = torch.isclose(out, hole_value[:, None, None], atol=1e-5).all(0)  # (32, 32)
    rows, cols = torch.nonzero(in_hole, as_tuple=True)
    # the hole may be clipped at the border; inside the image it is one axis-aligned square of side <= 16
    assert 0 < in_hole.sum() <= 256
    assert rows.max() - rows.min() < 16 and cols.max() - cols.min() < 16
    assert presets.train_transforms(cutout_size=8, cutout=1.0, hflip=0, affine=0, pad=0)(image=image)["image"].shape == \
        (3, 32, 32)


def test_pad_and_crop_shifts_content_and_pads_with_the_mean(image):
    crop = presets.train_transforms(hflip=0, affine=0, cutout=0, pad=4)
    ref = _normalised(image)
    outs = [crop(image=image)["image"] for _ in range(20)]
    assert any(not torch.allclose(o, ref, atol=1e-5) for o in outs)
    for o in outs:  # each output is the padded image cropped at some offset
        padded = torch.zeros(3, 40, 40) + ((torch.tensor([round(255 * m) / 255 for m in data.CIFAR10_MEAN]) -
                                            torch.tensor(data.CIFAR10_MEAN)) / torch.tensor(data.CIFAR10_STD))[:, None, None]
        padded[:, 4:36, 4:36] = ref
        assert any(
            torch.allclose(o, padded[:, y:y + 32, x:x + 32], atol=1e-5) for y in range(9) for x in range(9)
        )


def test_seeded_presets_repeat(image):
    a = presets.train_transforms(seed=5)
    b = presets.train_transforms(seed=5)
    for _ in range(3):
        assert torch.equal(a(image=image)["image"], b(image=image)["image"])


# ----------------------------------------------------------------------------- inference presets


@pytest.fixture(scope="module")
def cifar():
    return data.load_sample(train=False)


def _png(array: np.ndarray, path: Path) -> Path:
    Image.fromarray(array).save(path)
    return path


def test_preset_from_pil_and_from_array_agree_and_round_trip_to_rgb(tmp_path):
    red = np.zeros((40, 40, 3), np.uint8)
    red[..., 0] = 255
    preset = presets.cifar_preset(size=40)
    from_pil = preset(read_image(_png(red, tmp_path / "red.png")))
    assert torch.equal(from_pil, preset(red))
    shown = preset.to_rgb(from_pil[None])  # (1, 40, 40, 3)
    assert shown.shape == (1, 40, 40, 3)
    np.testing.assert_allclose(shown[0], red / 255.0, atol=1e-5)  # red stays red: RGB order throughout


def test_imagenet_preset_matches_torchvision_evaluation_transform(cifar):
    from torchvision.models import ResNet50_Weights

    reference = ResNet50_Weights.IMAGENET1K_V1.transforms()  # resize 256, crop 224, ImageNet mean/std
    image = np.ascontiguousarray(np.concatenate([cifar.images[0], cifar.images[1]], axis=1))  # (32, 64, 3): not square
    expected = reference(torch.from_numpy(image).permute(2, 0, 1))  # (3, 224, 224)
    got = presets.imagenet_preset()(image)
    assert got.shape == (3, 224, 224)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_cifar_preset_matches_the_training_normalisation(cifar):
    expected = presets.test_transforms()(image=cifar.images[5])["image"]  # albumentations: (3, 32, 32)
    torch.testing.assert_close(presets.cifar_preset()(cifar.images[5]), expected, atol=1e-5, rtol=0)


def test_get_preset_names_sizes_and_overrides():
    small = presets.get_preset("imagenet", size=64)
    assert (small.size, small.resize, small.mean) == (64, 73, presets.IMAGENET_MEAN)
    assert presets.get_preset("CIFAR").size == 32
    bigger = presets.get_preset(presets.cifar_preset(), size=64, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert (bigger.size, bigger.resize, bigger.mean, bigger.std, bigger.name) == (64, 64, (0.5,) * 3, (0.25,) * 3, "cifar")
    assert presets.cifar_preset(size=48)(np.zeros((20, 30, 3), np.uint8)).shape == (3, 48, 48)


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
        presets.get_preset(**kwargs)


# ----------------------------------------------------------------------------- one home


# what builds a preprocessing pipeline or normalises pixels with a mean and std
PREPROCESSING = {"Normalize", "normalize", "ToTensor", "ToTensorV2", "Compose", "Resize", "resize", "CenterCrop",
                 "center_crop", "PILToTensor", "ConvertImageDtype"}


def _preprocessing_in(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    """What in one module builds preprocessing: albumentations or torchvision.transforms' preprocessing, imported
    or called, or ``(x - mean) / std`` written out."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where} imports {a.name}" for a in node.names
                      if a.name.split(".")[0] == "albumentations" or a.name.startswith("torchvision.transforms")]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] == "albumentations":
                found.append(f"{where} imports from {node.module}")
            elif node.module == "torchvision" and any(a.name == "transforms" for a in node.names):
                found.append(f"{where} imports torchvision.transforms")
            elif node.module.startswith("torchvision.transforms"):  # one helper (gaussian_blur) is no pipeline
                found += [f"{where} imports {node.module}.{a.name}" for a in node.names
                          if a.name in PREPROCESSING or a.name in ("functional", "v2", "*")]
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in PREPROCESSING - {"Compose", "resize"}:  # resize and Compose have other meanings too
                found.append(f"{where} calls {name}")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.left, ast.BinOp) \
                and isinstance(node.left.op, ast.Sub) and "mean" in ast.unparse(node.left.right).lower() \
                and "std" in ast.unparse(node.right).lower():
            found.append(f"{where} normalises by hand: {ast.unparse(node)}")
    return found


def test_only_the_presets_module_builds_preprocessing():
    home = PACKAGE / "data" / "presets.py"
    assert _preprocessing_in(home), "the check finds nothing even in data/presets.py: it has gone blind"
    elsewhere = [hit for path in sorted(PACKAGE.rglob("*.py")) if path != home for hit in _preprocessing_in(path)]
    assert not elsewhere, "\n".join(elsewhere)


def test_the_one_home_check_sees_a_second_home(tmp_path):
    second = tmp_path / "second.py"
    second.write_text("from torchvision.transforms import functional as TF\n"
                      "def f(x, mean, std):\n    return TF.normalize(x, mean, std), (x - mean) / std\n")
    found = _preprocessing_in(second, tmp_path)
    assert len(found) == 3, found
