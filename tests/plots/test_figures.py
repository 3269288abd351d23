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


def test_a_full_disk_leaves_an_earlier_figure_whole(small_disk, fill_disk):
    from matplotlib.figure import Figure

    from eva_utils.plots import save_figure

    small = Figure(figsize=(1, 1))
    path = save_figure(small, small_disk / "curves.png")
    before = path.read_bytes()
    fill_disk(small_disk, leave_kb=8)
    big = Figure(figsize=(12, 12))
    big.add_subplot().imshow(np.random.default_rng(0).random((512, 512)))  # noise: a PNG of far more than 8 kB
    with pytest.raises(OSError, match="No space left") as exc:
        save_figure(big, path, dpi=200)
    assert exc.value.filename == str(path)  # the file meant, not a temporary
    assert path.read_bytes() == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["curves.png", "filler"]  # no temporary left
