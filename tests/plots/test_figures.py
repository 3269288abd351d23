
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from eva_utils.core.errors import UserError
from eva_utils.data import cifar10 as data
from eva_utils.data import presets as transforms
from eva_utils.evaluation import metrics as evaluation
from eva_utils.plots import figures as plots
from eva_utils.plots.figures import overlay
from eva_utils.training import engine as training


@pytest.fixture(scope="module")
def test_set():
    return data.load_sample(train=False, transform=transforms.test_transforms())


def _predictions(n_wrong, n=40):
    rng = np.random.default_rng(1)
    labels = np.arange(n) % 10
    preds = labels.copy()
    preds[:n_wrong] = (labels[:n_wrong] + 1) % 10
    probs = np.full((n, 10), 0.01, np.float32)
    probs[np.arange(n), preds] = rng.uniform(0.3, 0.95, n)
    return evaluation.Predictions(probs, preds, labels, np.arange(n) * 7)  # rows map to data set indices 0, 7, 14, ...


def test_misclassified_gallery_titles_and_true_colours(test_set):
    pred = _predictions(12)
    fig = plots.show_misclassified(test_set, pred, n=10)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 10
    row = evaluation.misclassified(pred, k=1)[0]
    title = shown[0].get_title()
    assert title == f"{data.CIFAR10_CLASSES[pred.labels[row]]} -> {data.CIFAR10_CLASSES[pred.preds[row]]}\n(p={pred.confidence[row]:.2f})"
    # the displayed pixels are the original RGB image: denormalised with CIFAR-10's own statistics, not BGR
    original = test_set.images[pred.indices[row]] / 255.0
    np.testing.assert_allclose(shown[0].images[0].get_array(), original, atol=1e-5)


def test_asking_for_more_mistakes_than_exist_shows_what_there_is_and_says_so(test_set):
    with pytest.warns(UserWarning, match="only 3"):
        fig = plots.show_misclassified(test_set, _predictions(3), n=20)
    assert len([ax for ax in fig.axes if ax.images]) == 3
    assert "only 3 misclassified images (asked for 20)" in fig._suptitle.get_text()


def test_history_plot_has_train_and_test_curves():
    h = training.History()
    for e in range(3):
        h.append(e + 1, training.EpochStats(2 - e * 0.5, 0.3 + 0.1 * e, lr=0.1), training.EpochStats(2.1 - e * 0.4, 0.25 + 0.1 * e), 1.0)
    fig = plots.plot_history(h)
    loss_ax, acc_ax, lr_ax = fig.axes
    assert [l.get_label() for l in loss_ax.lines] == ["train", "test"]
    assert list(acc_ax.lines[1].get_ydata()) == pytest.approx([25, 35, 45])
    assert list(lr_ax.lines[0].get_ydata()) == pytest.approx([0.1, 0.1, 0.1])
    assert all(tick == int(tick) for tick in loss_ax.get_xticks())  # whole epochs
    old = {k: v for k, v in h.to_dict().items() if k != "lr"}  # a history without learning rates: two panels
    assert len(plots.plot_history(old).axes) == 2
    with pytest.raises(UserError, match="empty"):
        plots.plot_history(training.History())


def test_confusion_matrix_plot(tmp_path):
    cm = np.diag(np.arange(1, 11)) + 1
    fig = plots.plot_confusion_matrix(cm)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 100 and texts[0] == f"{100 * 2 / 11:.0f}"
    assert plots.save_figure(fig, tmp_path / "a" / "cm.png").stat().st_size > 5000
    with pytest.raises(UserError, match=r"\(10, 10\)"):
        plots.plot_confusion_matrix(np.ones((3, 3)))


def test_samples_grid_shows_augmented_images():
    ds = data.load_sample(train=True, transform=transforms.train_transforms())
    fig = plots.show_samples(ds, n=16, cols=8)
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == 16 and all(ax.get_title() in data.CIFAR10_CLASSES for ax in axes)


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


def test_figures_are_not_registered_with_pyplot():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    assert isinstance(plots.plot_confusion_matrix(np.eye(10)), Figure)
    assert plt.get_fignums() == before


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


def test_the_old_homes_of_the_figures_still_work_and_warn():
    from eva_utils.explain import cam

    rgb, heat = np.zeros((8, 8, 3), np.float32), np.ones((8, 8), np.float32)
    with pytest.warns(DeprecationWarning, match="eva_utils.cam.overlay moved to eva_utils.plots.overlay"):
        np.testing.assert_array_equal(cam.overlay(rgb, heat), overlay(rgb, heat))


def test_an_all_zero_map_says_so_in_the_figure():
    rgb = np.full((2, 8, 8, 3), 0.5)
    maps = {"layer4": np.stack([np.zeros((8, 8)), np.eye(8)])}
    fig = plots.show_cams(rgb, maps)
    zero_panel, some_panel = fig.axes[1], fig.axes[3]
    assert any("all zero" in t.get_text() for t in zero_panel.texts)
    assert not some_panel.texts
