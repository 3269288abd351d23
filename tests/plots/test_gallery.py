import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from eva_utils import data
from eva_utils.core.errors import UserError
from eva_utils.data import presets as transforms
from eva_utils.evaluation import metrics as evaluation
from eva_utils.plots import gallery as plots
from eva_utils.plots.save import save_figure


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
    assert title == (f"{data.CIFAR10_CLASSES[pred.labels[row]]} -> {data.CIFAR10_CLASSES[pred.preds[row]]}\n"
                     f"(p={pred.confidence[row]:.2f})")
    # the displayed pixels are the original RGB image: denormalised with CIFAR-10's own statistics, not BGR
    original = test_set.images[pred.indices[row]] / 255.0
    np.testing.assert_allclose(shown[0].images[0].get_array(), original, atol=1e-5)


def test_asking_for_more_mistakes_than_exist_shows_what_there_is_and_says_so(test_set):
    with pytest.warns(UserWarning, match="only 3"):
        fig = plots.show_misclassified(test_set, _predictions(3), n=20)
    assert len([ax for ax in fig.axes if ax.images]) == 3
    assert "only 3 misclassified images (asked for 20)" in fig._suptitle.get_text()


def test_confusion_matrix_plot(tmp_path):
    cm = np.diag(np.arange(1, 11)) + 1
    fig = plots.plot_confusion_matrix(cm)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 100 and texts[0] == f"{100 * 2 / 11:.0f}"
    assert save_figure(fig, tmp_path / "a" / "cm.png").stat().st_size > 5000
    with pytest.raises(UserError, match=r"\(10, 10\)"):
        plots.plot_confusion_matrix(np.ones((3, 3)))


def test_samples_grid_shows_augmented_images():
    ds = data.load_sample(train=True, transform=transforms.train_transforms())
    fig = plots.show_samples(ds, n=16, cols=8)
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == 16 and all(ax.get_title() in data.CIFAR10_CLASSES for ax in axes)


def test_figures_are_not_registered_with_pyplot():
    before = plt.get_fignums()
    assert isinstance(plots.plot_confusion_matrix(np.eye(10)), Figure)
    assert plt.get_fignums() == before
