"""eva_utils.data.batch_transforms against its trusted peer, the albumentations train preset (data.presets).

Each augmentation alone: the same probe image goes through both pipelines a few thousand times, and the same
measurement reads each output's parameters (flip, crop offset, hole, affine matrix); the distributions must agree.
Tolerances are set from the sampling error of n draws (stated at each), well below what a wrong setting moves:
every test also checks that a deliberately wrong ``BatchTransform`` is caught by the same comparison.
"""

import cv2
import numpy as np
import pytest
import torch
from albumentations.augmentations.geometric import functional as fgeometric

from eva_utils.core.errors import UserError
from eva_utils.data import CIFAR10_MEAN, CIFAR10_STD, load_sample
from eva_utils.data.batch_transforms import NO_AUGMENTATION, BatchTransform, _warp, affine_theta
from eva_utils.data.presets import AUGMENTATIONS, _pixel_fill, train_transforms

FILL = _pixel_fill(CIFAR10_MEAN)  # (125, 123, 114): padding, border and holes in both pipelines


def _to_pixels(x):
    """Normalised (N, 3, H, W) -> uint8 pixels (N, 3, H, W), undoing Normalize exactly (the values are whole)."""
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (CIFAR10_MEAN, CIFAR10_STD))
    return (x * std + mean).mul(255).round().clamp(0, 255).to(torch.uint8).numpy()


def _albumentations(image, n, seed=0, **settings):
    """``n`` passes of one HWC uint8 ``image`` through ``train_transforms(**settings)``: (n, 3, H, W) uint8."""
    transform = train_transforms(**{**NO_AUGMENTATION, **settings}, seed=seed)
    return _to_pixels(torch.stack([transform(image=image)["image"] for _ in range(n)]))


def _batched(image, n, seed=0, **settings):
    """The same through ``BatchTransform(**settings)``: (n, 3, H, W) uint8."""
    images = torch.from_numpy(image).permute(2, 0, 1)[None].repeat(n, 1, 1, 1)
    out = BatchTransform(**{**NO_AUGMENTATION, **settings}).apply(images, torch.Generator().manual_seed(seed))
    return _to_pixels(out)


def _constant(value=200):
    return np.full((32, 32, 3), value, np.uint8)


def _shares(values, support):
    values = np.asarray(values)
    return np.array([(values == v).mean() for v in support])


def _ks(a, b):
    """The two-sample Kolmogorov-Smirnov statistic."""
    grid = np.sort(np.concatenate([a, b]))
    return np.abs(np.searchsorted(np.sort(a), grid, "right") / len(a) - np.searchsorted(np.sort(b), grid, "right") / len(b)).max()


def _ks_limit(n, m):
    """The KS statistic that two samples of one distribution exceed with probability 0.001."""
    return 1.95 * np.sqrt((n + m) / (n * m))


# ----------------------------------------------------------------------------- flip


def _flip_rate(pixels):
    return (pixels[:, 0, 0, 0] == 255).mean()  # the probe is black on the left, white on the right


def test_flip_rate_matches():
    probe = np.zeros((32, 32, 3), np.uint8)
    probe[:, 16:] = 255
    n = 4000  # a rate's sd is 0.008 at n = 4000, a difference of two 0.011: 0.04 is 3.6 sd
    expected = _flip_rate(_albumentations(probe, n, hflip=0.5))
    assert abs(expected - 0.5) < 0.03
    assert abs(_flip_rate(_batched(probe, n, hflip=0.5)) - expected) < 0.04
    assert abs(_flip_rate(_batched(probe, n, hflip=0.4)) - expected) > 0.04  # a wrong p is caught
    assert _flip_rate(_batched(probe, 50, hflip=1.0)) == 1.0 and _flip_rate(_batched(probe, 50, hflip=0.0)) == 0.0


# ----------------------------------------------------------------------------- pad and crop


def _crop_shifts(pixels):
    """Each output's (dy, dx): the crop offset less the pad, read from the rows and columns of fill that came in."""
    fill_rows = (pixels[:, 0] == FILL[0]).all(2)  # (N, H)
    fill_cols = (pixels[:, 0] == FILL[0]).all(1)  # (N, W)
    return (fill_rows[:, 16:].sum(1) - fill_rows[:, :16].sum(1), fill_cols[:, 16:].sum(1) - fill_cols[:, :16].sum(1))


def test_crop_offsets_match():
    n, support = 4000, range(-4, 5)  # a share of 1/9 has sd 0.005 at n = 4000, a difference of two 0.007: 0.03 is 4 sd
    expected = [_shares(s, support) for s in _crop_shifts(_albumentations(_constant(), n, pad=4))]
    assert all(np.abs(e - 1 / 9).max() < 0.03 for e in expected)  # uniform over 0..8 (both ends included)
    got = [_shares(s, support) for s in _crop_shifts(_batched(_constant(), n, pad=4))]
    assert max(np.abs(g - e).max() for g, e in zip(got, expected, strict=True)) < 0.03
    wrong = [_shares(s, support) for s in _crop_shifts(_batched(_constant(), n, pad=3))]
    assert max(np.abs(w - e).max() for w, e in zip(wrong, expected, strict=True)) > 0.03


def test_a_crop_of_a_real_image_moves_it_and_brings_in_the_mean():
    image = load_sample(True).images[0]
    out = _batched(image, 200, pad=4)
    dy, dx = _crop_shifts(out)
    for k in np.flatnonzero((dy == 2) & (dx == -3))[:3]:  # the image moved up 2 and right 3
        assert np.array_equal(out[k][:, :30, 3:], image.transpose(2, 0, 1)[:, 2:, :29])
        assert (out[k][:, 30:] == np.array(FILL)[:, None, None]).all()


# ----------------------------------------------------------------------------- cutout


def _holes(pixels):
    """Each output's hole area (pixels that are no longer the probe's 200), top row, and the values inside."""
    hole = (pixels != 200).any(1)  # (N, H, W)
    area = hole.sum((1, 2))
    top = np.where(area > 0, hole.any(2).argmax(1), -1)
    inside = pixels.transpose(0, 2, 3, 1)[hole]  # (pixels, 3)
    return area, top, inside


@pytest.mark.parametrize("name, side, p", [("default", 16, 0.5), ("page", 8, 1.0)])
def test_cutout_holes_match(name, side, p):
    settings = {k: v for k, v in {**train_transforms.__kwdefaults__, **AUGMENTATIONS[name]}.items() if k.startswith("cutout")}
    n = 3000  # at n = 3000 a rate's sd is 0.009 (0.04 is 3 sd of a difference); a top row's share (1/17) 0.0043
    area, top, inside = _holes(_albumentations(_constant(), n, **settings))
    assert set(area) == ({0, side * side} if p < 1 else {side * side}) and (inside == FILL).all()  # whole holes of the mean
    got_area, got_top, got_inside = _holes(_batched(_constant(), n, **settings))
    assert set(got_area) == set(area) and (got_inside == FILL).all()
    assert abs((got_area > 0).mean() - (area > 0).mean()) < 0.04
    support = range(0, 32 - side + 1)  # the hole lies inside the image: its top row uniform over 0..32 - side
    assert np.abs(_shares(got_top[got_top >= 0], support) - _shares(top[top >= 0], support)).max() < 0.035
    wrong, _, _ = _holes(_batched(_constant(), 50, **{**settings, "cutout_size": side - 2}))
    assert set(wrong) != set(area)


# ----------------------------------------------------------------------------- shift-scale-rotate


def _coordinates():
    """A probe whose red and green encode each pixel's column and row; blue marks the image (250) against the border."""
    rows, cols = np.mgrid[0:32, 0:32]
    return np.stack([30 + 6 * cols, 30 + 6 * rows, np.full_like(cols, 250)], -1).astype(np.uint8)


def _affine_params(pixels):
    """Per output: (angle in degrees, scale x, scale y, shift x, shift y, share of pixels the border reached),
    fitted by least squares to the source coordinates the probe's colours give at the pixels the border missed."""
    rows, cols = np.mgrid[0:32, 0:32]
    centre = np.array([15.5, 15.5])
    found = []
    for out in pixels:
        inner = out[2] == 250
        dst = np.stack([cols[inner], rows[inner], np.ones(inner.sum())], 1)
        src = np.stack([(out[0][inner] - 30) / 6, (out[1][inner] - 30) / 6], 1)
        inverse = np.linalg.lstsq(dst, src, rcond=None)[0].T  # src = inverse @ [x, y, 1]
        forward = np.linalg.inv(inverse[:, :2])
        shift = -forward @ inverse[:, 2] - centre + forward @ centre  # dst = c + t + A (src - c)
        found.append([np.degrees(np.arctan2(-forward[1, 0], forward[0, 0])), np.hypot(*forward[:, 0]),
                      np.hypot(*forward[:, 1]), *shift, 1 - inner.mean()])
    return np.array(found)


def test_shift_scale_rotate_parameters_match():
    n = 1500  # KS limits at p = 0.001 for 1500 + 1500 draws: 0.071
    expected = _affine_params(_albumentations(_coordinates(), n, affine=1.0))
    got = _affine_params(_batched(_coordinates(), n, affine=1.0))
    assert np.abs(expected[:, 0]).max() < 15.2 and np.abs(expected[:, 1:3] - 1).max() < 0.102  # the peer's own ranges
    for column in range(3):  # angle, scale x, scale y: continuous
        assert _ks(got[:, column], expected[:, column]) < _ks_limit(n, n), column
    for column in (3, 4):  # shifts: int(u * 32) for u in +-0.0625, so -1, 0, 1 pixels with shares 1/4, 1/2, 1/4
        assert np.abs(np.round(got[:, column]) - got[:, column]).max() < 0.1
        shares = _shares(np.round(expected[:, column]), (-1, 0, 1))
        assert np.abs(shares - [0.25, 0.5, 0.25]).max() < 0.05
        assert np.abs(_shares(np.round(got[:, column]), (-1, 0, 1)) - shares).max() < 0.05  # 0.05: 3.9 sd at n = 1500
    assert _ks(got[:, 5], expected[:, 5]) < _ks_limit(n, n)  # how much of the image the mean border covers
    assert abs(got[:, 5].mean() - expected[:, 5].mean()) < 0.01
    wrong = _affine_params(_batched(_coordinates(), n, affine=1.0, rotate=10.0))
    assert _ks(wrong[:, 0], expected[:, 0]) > _ks_limit(n, n)


def test_shift_scale_rotate_probability_matches():
    n = 3000
    changed = [(_albumentations(_coordinates(), n, affine=0.5) != _coordinates().transpose(2, 0, 1)).any((1, 2, 3)).mean(),
               (_batched(_coordinates(), n, affine=0.5) != _coordinates().transpose(2, 0, 1)).any((1, 2, 3)).mean()]
    assert abs(changed[0] - 0.5) < 0.03 and abs(changed[1] - changed[0]) < 0.04


def test_the_warp_is_cv2_warp_affine_with_albumentations_matrix():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for _ in range(20):
        angle, sx, sy, tx, ty = rng.uniform(-15, 15), *rng.uniform(0.9, 1.1, 2), *rng.integers(-1, 2, 2)
        matrix = fgeometric.create_affine_transformation_matrix({"x": tx, "y": ty}, {"x": 0, "y": 0}, {"x": sx, "y": sy},
                                                                angle, fgeometric.center((32, 32)))
        expected = cv2.warpAffine(image, matrix[:2], (32, 32), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                  borderValue=FILL)
        theta = affine_theta(*(torch.tensor([float(v)]) for v in (angle, sx, sy, tx, ty)), 32, 32)
        got = _warp(torch.from_numpy(image).permute(2, 0, 1)[None].float(), theta, torch.tensor(FILL).view(1, 3, 1, 1))
        diff = np.abs(got[0].permute(1, 2, 0).numpy().astype(int) - expected)
        assert diff.max() <= 1 and diff.mean() < 0.01  # cv2 interpolates in fixed point: at most one level apart


def test_a_flip_comes_first_the_mirrored_image_going_through_the_rest():
    """The flip is folded into the warp's matrix and the crop's gather; the same draws (a flip's probability draws
    the same numbers) on the mirrored images without the flip must give the same outputs (a warped pixel may round
    the other way: one level, in a few pixels of a million)."""
    images = torch.from_numpy(load_sample(True).images[:256]).permute(0, 3, 1, 2).contiguous()
    for settings in ({"affine": 1.0}, {"affine": 0.0}, {"affine": 0.5, "pad": 0}):
        flipped = BatchTransform(**{**settings, "hflip": 1.0}).apply(images, torch.Generator().manual_seed(3))
        mirrored = BatchTransform(**{**settings, "hflip": 0.0}).apply(images.flip(-1), torch.Generator().manual_seed(3))
        diff = _to_pixels(flipped).astype(int) - _to_pixels(mirrored)
        assert np.abs(diff).max() <= 1 and (diff != 0).mean() < 1e-4, settings
    wrong = BatchTransform(hflip=1.0, affine=1.0).apply(images.flip(-1), torch.Generator().manual_seed(3))  # flipped twice
    assert (_to_pixels(wrong) != _to_pixels(flipped)).mean() > 0.5


# ----------------------------------------------------------------------------- the whole presets


@pytest.mark.parametrize("name", ["default", "page"])
def test_the_whole_preset_gives_the_same_statistics_on_real_images(name):
    images = load_sample(True).images  # 2,000 real CIFAR-10 images, each augmented once
    settings = AUGMENTATIONS[name]
    transform = train_transforms(**settings, seed=0)
    expected = torch.stack([transform(image=image)["image"] for image in images])
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    got = BatchTransform(**settings).apply(batch, torch.Generator().manual_seed(0))
    assert got.shape == expected.shape and got.dtype == torch.float32
    # over seeds, albumentations' own per-channel mean and std of these 2,000 images move by up to 0.006: 0.015 is 2.5x
    for stat in (lambda x: x.mean((0, 2, 3)), lambda x: x.std((0, 2, 3))):
        assert (stat(got) - stat(expected)).abs().max() < 0.015
    wrong = BatchTransform(**settings, std=(0.2023, 0.1994, 0.2010)).apply(batch, torch.Generator().manual_seed(0))
    assert (wrong.std((0, 2, 3)) - expected.std((0, 2, 3))).abs().max() > 0.015  # the often-copied std is caught
    filled = (_to_pixels(got) == np.array(FILL)[None, :, None, None]).all(1).mean()
    assert abs(filled - (_to_pixels(expected) == np.array(FILL)[None, :, None, None]).all(1).mean()) < 0.01


# ----------------------------------------------------------------------------- seeds and settings


def test_a_seed_fixes_the_augmentations_and_a_new_seed_changes_them():
    images = torch.from_numpy(load_sample(True).images[:64]).permute(0, 3, 1, 2).contiguous()
    transform = BatchTransform()
    a, b, c = (transform.apply(images, torch.Generator().manual_seed(s)) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_without_augmentation_it_only_normalises():
    image = load_sample(True).images[5]
    assert (_batched(image, 3) == image.transpose(2, 0, 1)[None]).all()


def test_bad_settings_are_refused_by_name():
    with pytest.raises(UserError, match="hflip is a probability") as info:
        BatchTransform(hflip=1.5)
    assert info.value.param == "hflip"
    with pytest.raises(UserError, match="cutout_size"):
        BatchTransform(cutout_size=40)
    with pytest.raises(UserError, match=r"\(N, 3, 32, 32\) uint8"):
        BatchTransform().apply(torch.zeros(2, 3, 32, 32), torch.Generator())
