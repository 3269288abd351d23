import numpy as np
import pytest

from eva_utils import plots
from eva_utils.plots import figures
from eva_utils.plots.cams import overlay


def test_the_figures_module_still_holds_every_figure():
    assert figures.__all__ == plots.__all__
    assert all(getattr(figures, name) is getattr(plots, name) for name in plots.__all__)


def test_the_old_homes_of_the_figures_still_work_and_warn():
    from eva_utils import cam  # the 0.1.0 path

    rgb, heat = np.zeros((8, 8, 3), np.float32), np.ones((8, 8), np.float32)
    with pytest.warns(DeprecationWarning, match="eva_utils.cam.overlay moved to eva_utils.plots.cams.overlay"):
        np.testing.assert_array_equal(cam.overlay(rgb, heat), overlay(rgb, heat))
