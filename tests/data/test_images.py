"""Tests for eva_utils.data.images: finding and reading image files (the presets: tests/data/test_presets.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from eva_utils import data
from eva_utils.core.errors import DataNotFoundError, UserError
from eva_utils.data import images as inputs


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


def test_16_bit_and_32_bit_images_are_scaled_to_8_bits_not_clipped(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (8, 1))  # a full-range 16-bit ramp
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    assert (tmp_path / "ramp16.png").read_bytes()[24] == 16  # a real 16-bit PNG (IHDR's bit depth; Pillow 9.5 opens it as "I")
    image = np.asarray(inputs.read_image(tmp_path / "ramp16.png")).astype(float)
    assert image.shape == (8, 256, 3)
    assert abs(image.mean() - ramp.mean() / 257) < 1 and image[:, 0].max() == 0 and image[:, -1].min() == 255
    assert abs(image[0, 128, 0] - ramp[0, 128] / 257) <= 1  # the middle stays grey
    Image.fromarray(ramp).convert("I").save(tmp_path / "ramp32.tif")  # 16-bit values held in 32-bit integers
    assert abs(np.asarray(inputs.read_image(tmp_path / "ramp32.tif")).mean() - ramp.mean() / 257) < 1
    Image.fromarray((ramp / 65535).astype(np.float32)).save(tmp_path / "unit.tif")  # floats in 0..1
    assert abs(np.asarray(inputs.read_image(tmp_path / "unit.tif")).mean() - ramp.mean() / 257) < 1
    Image.fromarray(np.full((8, 8), np.nan, np.float32)).save(tmp_path / "nan.tif")
    with pytest.raises(inputs.UnreadableImageError, match="nan.tif holds pixel values that are not finite") as exc:
        inputs.read_image(tmp_path / "nan.tif")
    assert str(exc.value).count("nan.tif") == 1


def test_an_image_beyond_pils_own_limit_is_refused_with_ours_and_its_size(tmp_path):
    import struct
    import zlib

    from eva_utils.data.images import ImageSizeError, read_image

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    # a PNG header that declares 20000 x 10000 pixels (200 MP, past PIL's 179 MP bomb limit), with no pixels at all
    header = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20_000, 10_000, 8, 2, 0, 0, 0))
    (tmp_path / "bomb.png").write_bytes(header + chunk(b"IEND", b""))
    with pytest.raises(ImageSizeError) as err:
        read_image(tmp_path / "bomb.png")
    assert "bomb.png is 200 megapixels, more than 40 megapixels: resize it first" in str(err.value)
    assert "178956970" not in str(err.value)  # PIL's limit is not the rule
