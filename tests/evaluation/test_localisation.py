"""Tests for eva_utils.evaluation.localisation: the pointing game and map correlation, checked by hand and by NumPy."""

import numpy as np
import pytest

from eva_utils import evaluation
from eva_utils.core.errors import UserError
from eva_utils.evaluation.localisation import map_correlation, pointing_game, pointing_hits


def test_pointing_hits_by_hand():
    cams = np.zeros((3, 6, 6), np.float32)
    cams[0, 1, 1] = cams[1, 5, 5] = cams[2, 3, 0] = 1.0
    masks = np.zeros((3, 6, 6), bool)
    masks[:, 1:3, 1:3] = True
    assert pointing_hits(cams, masks).tolist() == [True, False, False]
    assert pointing_game(cams, masks) == pytest.approx(1 / 3)
    assert pointing_hits(cams, masks, tolerance=2).tolist() == [True, False, True]  # (3, 0) is 1.4 px away
    with pytest.raises(UserError, match="equal shape"):
        pointing_game(cams, masks[:, :5])


def test_map_correlation_is_numpys_pearson_and_nan_for_a_constant_map():
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 6, 6)), rng.random((3, 6, 6))
    b[1] = 2 * a[1] + 1  # perfectly correlated
    b[2] = np.zeros((6, 6))  # an all-zero map
    r = map_correlation(a, b)
    assert r[0] == pytest.approx(np.corrcoef(a[0].ravel(), b[0].ravel())[0, 1])
    assert r[1] == pytest.approx(1.0) and np.isnan(r[2])
    with pytest.raises(UserError, match="same shape"):
        map_correlation(a, b[:2])


def test_the_evaluation_package_and_the_old_cam_path_keep_them():
    import eva_utils.cam as old

    assert evaluation.map_correlation is map_correlation and evaluation.pointing_game is pointing_game
    with pytest.warns(DeprecationWarning, match="eva_utils.cam.pointing_game moved to eva_utils.evaluation.localisation"):
        assert old.pointing_game(np.ones((1, 2, 2)), np.ones((1, 2, 2), bool)) == 1.0
