import pytest

from eva_utils import training
from eva_utils.core.errors import UserError
from eva_utils.plots import training as plots


def test_history_plot_has_train_and_test_curves():
    h = training.History()
    for e in range(3):
        h.append(e + 1, training.EpochStats(2 - e * 0.5, 0.3 + 0.1 * e, lr=0.1),
                 training.EpochStats(2.1 - e * 0.4, 0.25 + 0.1 * e), 1.0)
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
