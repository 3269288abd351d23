import numpy as np
import pytest
import torch

from eva_utils.core.errors import UserError
from eva_utils.plots import cams as plots
from eva_utils.plots.cams import overlay


def test_layer_cam_grid_layout_and_labels(test_set):
    images = torch.stack([test_set[i][0] for i in range(3)])
    cams = {f"layer{i}": np.random.default_rng(i).random((3, 32, 32)).astype(np.float32) for i in range(5)}
    fig = plots.show_layer_cams(images, cams, labels=[0, 1, 2], preds=[0, 3, 2], targets=[0, 3, 5])
    assert len(fig.axes) == 3 * 6
    assert [ax.get_title() for ax in fig.axes[:6]] == ["image", "layer0", "layer1", "layer2", "layer3", "layer4"]
    label = fig.axes[6].get_ylabel()
    assert "true automobile" in label and "pred cat (wrong)" in label and "CAM cat" in label
    assert "CAM dog" in fig.axes[12].get_ylabel()
    with pytest.raises(UserError, match="3 images"):
        plots.show_layer_cams(images, cams, labels=[0, 1], preds=[0, 1, 2])


def test_an_all_zero_map_says_so_in_the_figure():
    rgb = np.full((2, 8, 8, 3), 0.5)
    maps = {"layer4": np.stack([np.zeros((8, 8)), np.eye(8)])}
    fig = plots.show_cams(rgb, maps)
    zero_panel, some_panel = fig.axes[1], fig.axes[3]
    assert any("all zero" in t.get_text() for t in zero_panel.texts)
    assert not some_panel.texts


# ----------------------------------------------------------------------------- overlay


def test_overlay_colours_are_rgb():
    black = np.zeros((8, 8, 3), np.float32)
    hot = overlay(black, np.ones((8, 8), np.float32))[0, 0]
    cold = overlay(black, np.zeros((8, 8), np.float32))[0, 0]
    assert hot[0] > 2 * max(hot[1], hot[2])  # jet's top is red: channel 0
    assert cold[2] > 2 * max(cold[0], cold[1])  # jet's bottom is blue: channel 2


def test_overlay_blend_and_batches():
    rng = np.random.default_rng(0)
    images, cams = rng.random((4, 8, 8, 3), dtype=np.float32), rng.random((4, 8, 8), dtype=np.float32)
    out = overlay(images, cams, alpha=0.3)
    assert out.shape == (4, 8, 8, 3) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    np.testing.assert_allclose(out[2], overlay(images[2], cams[2], alpha=0.3))
    np.testing.assert_allclose(overlay(images, cams, alpha=0.0), images)


@pytest.mark.parametrize(
    "image, cam, match",
    [
        (np.full((8, 8, 3), 200.0), np.zeros((8, 8)), "0..255"),
        (np.full((8, 8, 3), 200, np.uint8), np.zeros((8, 8)), "uint8"),
        (np.full((8, 8, 3), -1.5), np.zeros((8, 8)), "denormalize"),
        (np.zeros((3, 8, 8)), np.zeros((8, 8)), "channels first"),
        (np.zeros((8, 8, 3)), np.zeros((4, 4)), "of the image's size"),
        (np.zeros((8, 8, 3)), np.full((8, 8), 3.0), "\\[0, 1\\]"),
    ],
)
def test_overlay_bad_input(image, cam, match):
    with pytest.raises(UserError, match=match):
        overlay(image, cam)


def test_overlay_unknown_colormap():
    with pytest.raises(UserError, match="did you mean.*jet"):
        overlay(np.zeros((4, 4, 3)), np.zeros((4, 4)), colormap="jett")


def test_show_cams_lays_out_images_and_maps():
    rgb = np.random.default_rng(0).random((2, 16, 16, 3))
    maps = {"gradcam": np.zeros((2, 16, 16)), "layercam": np.ones((2, 16, 16))}
    fig = plots.show_cams(rgb, maps, row_labels=["a", "b"], title="methods")
    assert len(fig.axes) == 6 and fig.axes[1].get_title() == "gradcam" and fig.axes[0].get_ylabel() == "a"
    with pytest.raises(UserError, match="one map per image"):
        plots.show_cams(rgb, [np.zeros((3, 16, 16))])
    with pytest.raises(UserError, match="titles must be 2 rows of 2"):
        plots.show_cams(rgb, maps, titles=[["x"], ["y"]])
