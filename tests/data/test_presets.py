import warnings

import numpy as np
import pytest
import torch

from eva_utils.data import cifar10 as data

from eva_utils.data import presets as transforms


@pytest.fixture(scope="module")
def image():
    return data.load_sample(train=True).images[7]  # (32, 32, 3) uint8


def _normalised(img):
    mean, std = np.array(data.CIFAR10_MEAN), np.array(data.CIFAR10_STD)
    return torch.from_numpy(((img / 255.0 - mean) / std).transpose(2, 0, 1)).float()


def test_presets_build_and_run_without_warnings(image):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train, test = transforms.train_transforms(), transforms.test_transforms()
        for _ in range(5):
            out = train(image=image)["image"]
        test(image=image)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32


def test_test_transform_normalises_with_cifar10_statistics(image):
    out = transforms.test_transforms()(image=image)["image"]
    torch.testing.assert_close(out, _normalised(image), atol=1e-5, rtol=0)


def test_all_augmentations_can_be_switched_off(image):
    off = transforms.train_transforms(hflip=0, affine=0, pad=0, cutout=0)
    torch.testing.assert_close(off(image=image)["image"], _normalised(image), atol=1e-5, rtol=0)


def test_flip_alone_mirrors_the_image(image):
    flip = transforms.train_transforms(hflip=1.0, affine=0, pad=0, cutout=0)
    torch.testing.assert_close(flip(image=image)["image"], _normalised(image[:, ::-1]), atol=1e-5, rtol=0)


def test_cutout_makes_one_16x16_hole_filled_with_the_mean(image):
    cut = transforms.train_transforms(hflip=0, affine=0, pad=0, cutout=1.0, seed=3)
    out = cut(image=image)["image"]
    fill = torch.tensor([round(255 * m) / 255 for m in data.CIFAR10_MEAN])
    hole_value = (fill - torch.tensor(data.CIFAR10_MEAN)) / torch.tensor(data.CIFAR10_STD)  # ~0 after normalising
    in_hole = torch.isclose(out, hole_value[:, None, None], atol=1e-5).all(0)  # (32, 32)
    rows, cols = torch.nonzero(in_hole, as_tuple=True)
    # the hole may be clipped at the border; inside the image it is one axis-aligned square of side <= 16
    assert 0 < in_hole.sum() <= 256
    assert rows.max() - rows.min() < 16 and cols.max() - cols.min() < 16
    assert transforms.train_transforms(cutout_size=8, cutout=1.0, hflip=0, affine=0, pad=0)(image=image)["image"].shape == (3, 32, 32)


def test_pad_and_crop_shifts_content_and_pads_with_the_mean(image):
    crop = transforms.train_transforms(hflip=0, affine=0, cutout=0, pad=4)
    ref = _normalised(image)
    outs = [crop(image=image)["image"] for _ in range(20)]
    assert any(not torch.allclose(o, ref, atol=1e-5) for o in outs)
    for o in outs:  # each output is the padded image cropped at some offset
        padded = torch.zeros(3, 40, 40) + ((torch.tensor([round(255 * m) / 255 for m in data.CIFAR10_MEAN]) - torch.tensor(data.CIFAR10_MEAN)) / torch.tensor(data.CIFAR10_STD))[:, None, None]
        padded[:, 4:36, 4:36] = ref
        assert any(
            torch.allclose(o, padded[:, y:y + 32, x:x + 32], atol=1e-5) for y in range(9) for x in range(9)
        )


def test_seeded_presets_repeat(image):
    a = transforms.train_transforms(seed=5)
    b = transforms.train_transforms(seed=5)
    for _ in range(3):
        assert torch.equal(a(image=image)["image"], b(image=image)["image"])
