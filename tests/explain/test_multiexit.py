"""Tests for eva_utils.multiexit, checked against independent computations.

Oracles: eva_utils.evaluation.predict / per_class_accuracy run one exit at a time,
torch's FlopCounterMode for the cost accounting, pytorch-grad-cam's own GradCAM on a
wrapper returning one exit's logits, plain Python loops for the anytime rule, and the
training engine's own per-exit test accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.utils.data import DataLoader, Subset

from eva_utils import data, plots, training
from eva_utils.core.errors import UserError
from eva_utils.evaluation import metrics as evaluation
from eva_utils.explain import cam, multiexit
from eva_utils.models.msdnet import MSDNet, load_msdnet_gcn_checkpoint, msdnet

SMALL_CKPT = Path(__file__).parents[1] / "fixtures" / "msdnet_cifar10_3blocks_random.pth.tar"
ROWS = list(range(3, 1000, 50))  # 20 test images, two per class, odd and even indices


@pytest.fixture(scope="module")
def model() -> MSDNet:
    return load_msdnet_gcn_checkpoint(SMALL_CKPT)


@pytest.fixture(scope="module")
def test_set() -> data.ArrayDataset:
    return data.load_sample(train=False, transform=None)  # ToTensor() only, as MSDNet-GCN weights expect


@pytest.fixture(scope="module")
def loader(test_set) -> DataLoader:
    return data.make_loader(Subset(test_set, ROWS), batch_size=8, num_workers=0)


@pytest.fixture(scope="module")
def pred(model, loader) -> multiexit.ExitPredictions:
    return multiexit.predict_exits(model, loader)


def synthetic(num_exits: int = 4, n: int = 300, classes: int = 5, seed: int = 0) -> multiexit.ExitPredictions:
    """Random but structured predictions: later exits sharper and more often right."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(num_exits, n, classes))
    for k in range(num_exits):
        logits[k, np.arange(n), labels] += 0.8 * k
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return multiexit.ExitPredictions(probs.astype(np.float32), probs.argmax(2), labels, np.arange(n) * 2 + 1)


# ----------------------------------------------------------------------------- predictions


def test_predict_exits_equals_predict_one_exit_at_a_time(model, test_set, pred) -> None:
    assert pred.probs.shape == (3, len(ROWS), 10) and pred.preds.shape == (3, len(ROWS))
    np.testing.assert_array_equal(pred.indices, ROWS)  # data set indices, through the Subset
    np.testing.assert_array_equal(pred.labels, test_set.labels[ROWS])
    plain = data.make_loader(Subset(test_set, ROWS), batch_size=8, num_workers=0)
    accuracy = multiexit.exit_accuracy(pred)
    for k in range(3):
        one = evaluation.predict(model, plain, output_index=k)
        np.testing.assert_allclose(pred.probs[k], one.probs, atol=1e-6)
        np.testing.assert_array_equal(pred.preds[k], one.preds)
        assert accuracy[k] == pytest.approx(evaluation.accuracy(one))
        assert pred.exit(k + 1).preds.tolist() == one.preds.tolist()


def test_predict_exits_runs_one_forward_per_batch(model, loader) -> None:
    calls = []
    handle = model.register_forward_hook(lambda *args: calls.append(1))
    try:
        multiexit.predict_exits(model, loader)
    finally:
        handle.remove()
    assert len(calls) == len(loader)
    assert not model.training


def test_predict_exits_refuses_a_shuffled_loader(model, test_set) -> None:
    shuffled = data.make_loader(Subset(test_set, ROWS), batch_size=8, shuffle=True, num_workers=0)
    with pytest.raises(UserError, match="unshuffled"):
        multiexit.predict_exits(model, shuffled)


# ----------------------------------------------------------------------------- tables


def test_tables_equal_independent_computations() -> None:
    pred = synthetic()
    table = multiexit.per_class_exit_accuracy(pred)
    assert table.shape == (5, 4)  # classes x exits
    matrix = multiexit.correctness(pred)
    assert matrix.shape == (300, 4)  # images x exits
    for k in range(4):
        np.testing.assert_allclose(table[:, k], evaluation.per_class_accuracy(pred.labels, pred.preds[k], 5))
        assert multiexit.exit_accuracy(pred)[k] == pytest.approx(np.mean(pred.preds[k] == pred.labels))
        np.testing.assert_array_equal(matrix[:, k], pred.preds[k] == pred.labels)
    np.testing.assert_array_equal(multiexit.difficulty(pred), matrix.sum(axis=1))
    confidence = np.array([[pred.probs[k, i].max() for i in range(300)] for k in range(4)])
    np.testing.assert_allclose(pred.confidence, confidence)


def test_per_class_table_marks_missing_classes_nan() -> None:
    pred = synthetic(classes=5).subset(np.arange(10))
    table = multiexit.per_class_exit_accuracy(pred, num_classes=7)
    assert table.shape == (7, 4) and np.isnan(table[5:]).all()


def test_select_class_by_name(test_set, pred) -> None:
    dogs = multiexit.select_class(pred, "Dog", test_set.classes)
    assert len(dogs.labels) == 2 and set(dogs.labels) == {5}
    assert all(test_set.labels[i] == 5 for i in dogs.indices)
    np.testing.assert_array_equal(dogs.preds, pred.preds[:, pred.labels == 5])


def test_unknown_class_lists_the_valid_ones(pred) -> None:
    with pytest.raises(UserError, match=r"unknown class 'doge'; did you mean dog\?.*airplane, automobile"):
        multiexit.select_class(pred, "doge")
    with pytest.raises(UserError, match="out of range"):
        multiexit.class_index(10, data.CIFAR10_CLASSES)


def test_examples_by_difficulty_spans_hardest_to_easiest() -> None:
    pred = synthetic()
    rows = multiexit.examples_by_difficulty(pred, 5)
    scores = multiexit.difficulty(pred)[rows]
    assert len(rows) == 5 and list(scores) == sorted(scores)
    assert scores[0] == multiexit.difficulty(pred).min() and scores[-1] == multiexit.difficulty(pred).max()
    assert len(multiexit.examples_by_difficulty(pred.subset([0, 1]), 5)) == 2


# ----------------------------------------------------------------------------- anytime


def test_exit_costs_match_torch_flop_counter(model) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    costs = multiexit.exit_costs(model)
    np.testing.assert_array_equal(costs.single, model.exit_flops())
    for k in range(1, 4):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, 3, 32, 32), num_exits=k)  # blocks 1..k and classifiers 1..k
        assert costs.anytime[k - 1] == counter.get_total_flops() / 2  # FLOPs = 2 x multiply-adds
    assert costs.anytime[0] == costs.single[0] and np.all(costs.anytime[1:] > costs.single[1:])


def test_anytime_threshold_extremes() -> None:
    pred = synthetic()
    accuracy = multiexit.exit_accuracy(pred)
    costs = multiexit.ExitCosts(np.array([10.0, 25.0, 45.0, 70.0]), np.array([10.0, 20.0, 30.0, 40.0]))
    first = multiexit.anytime_predict(pred, 0.0, costs)
    assert set(first.exits) == {1} and first.accuracy == pytest.approx(accuracy[0])
    assert first.mean_exit == 1 and first.mean_flops == 10.0
    for threshold in (1.01, np.inf):
        last = multiexit.anytime_predict(pred, threshold, costs)
        assert set(last.exits) == {4} and last.accuracy == pytest.approx(accuracy[-1])
        assert last.mean_flops == 70.0


def test_anytime_equals_a_plain_loop() -> None:
    pred = synthetic()
    costs = multiexit.ExitCosts(np.array([10.0, 25.0, 45.0, 70.0]), np.array([10.0, 20.0, 30.0, 40.0]))
    threshold = float(np.median(pred.confidence))
    result = multiexit.anytime_predict(pred, threshold, costs)
    exits, preds = [], []
    for i in range(len(pred.labels)):
        k = next((k for k in range(4) if pred.probs[k, i].max() >= threshold), 3)
        exits.append(k + 1)
        preds.append(int(np.argmax(pred.probs[k, i])))
    assert result.exits.tolist() == exits and result.preds.tolist() == preds
    assert result.accuracy == pytest.approx(np.mean(np.array(preds) == pred.labels))
    assert result.mean_flops == pytest.approx(np.mean(costs.anytime[np.array(exits) - 1]))


def test_budget_curve_runs_from_first_to_last_exit(model, pred) -> None:
    costs = multiexit.exit_costs(model)
    curve = multiexit.budget_curve(pred, costs)
    assert curve.thresholds[0] == 0 and curve.thresholds[-1] == np.inf
    assert curve.mean_exit[0] == 1 and curve.mean_exit[-1] == 3
    assert np.all(np.diff(curve.mean_exit) >= 0) and np.all(np.diff(curve.mean_flops) >= 0)
    np.testing.assert_allclose(curve.exit_share.sum(axis=1), 1.0)
    assert curve.accuracy[0] == pytest.approx(multiexit.exit_accuracy(pred)[0])
    assert curve.accuracy[-1] == pytest.approx(multiexit.exit_accuracy(pred)[-1])
    assert curve.mean_flops[-1] == costs.anytime[-1]
    np.testing.assert_array_equal(curve.exit_flops, model.exit_flops())


# ----------------------------------------------------------------------------- text and figures


def test_text_tables() -> None:
    pred = synthetic()
    accuracy = multiexit.exit_accuracy(pred)
    text = multiexit.format_exit_accuracy(accuracy, flops=[1e6, 2e6, 3e6, 4e6])
    assert f"mean  {100 * accuracy.mean():7.2f}%" in text and "MMACs" in text and len(text.splitlines()) == 6
    rows = multiexit.format_correctness(pred, classes=list("abcde"), limit=7, marks=("1", "0")).splitlines()
    assert len(rows) == 1 + 7 + 1 and rows[-1] == "... 293 more images not shown"
    first = rows[1].split()
    assert first[0] == str(pred.indices[0]) and first[-1] == str(multiexit.difficulty(pred)[0])
    assert first[2:-1] == ["1" if c else "0" for c in pred.correct[:, 0]]
    assert len(multiexit.format_correctness(pred, list("abcde"), limit=None).splitlines()) == 301
    counts = multiexit.format_difficulty_counts(pred)
    assert sum(int(line.split()[1]) for line in counts.splitlines()[1:]) == 300
    table = multiexit.format_class_exit_accuracy(multiexit.per_class_exit_accuracy(pred), list("abcde"))
    assert len(table.splitlines()) == 6
    curve = multiexit.format_budget_curve(multiexit.budget_curve(pred))
    assert "each exit alone" in curve and "inf" in curve


def test_figures_are_figures_not_pyplot(pred) -> None:
    import matplotlib.pyplot as plt

    fig = plots.plot_budget_curve(multiexit.budget_curve(pred))  # no costs: a note instead of a curve
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert plt.get_fignums() == []


# ----------------------------------------------------------------------------- Grad-CAM per exit


class OneExit(nn.Module):
    """What a pytorch-grad-cam user writes: a model returning one exit's logits."""

    def __init__(self, model: nn.Module, k: int) -> None:
        super().__init__()
        self.model, self.k = model, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[self.k - 1]


@pytest.fixture(scope="module")
def images(test_set) -> torch.Tensor:
    return torch.stack([test_set[i][0] for i in (3, 101, 555, 777)])  # (4, 3, 32, 32)


def test_exit_cams_equal_layer_cams_and_pytorch_grad_cam(model, images) -> None:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = {1: [0, 1, 2, 3], 2: None, 3: None}  # exit 1's own predictions give all-zero maps here
    taps = model.exit_feature_modules()
    for k, wanted in targets.items():
        maps = multiexit.exit_cams(model, images, exits=(k,), targets=wanted)[k]
        assert maps.shape == (4, 32, 32) and maps.max() > 0.99
        ours = cam.layer_cams(model, images, [taps[k - 1]], targets=wanted, output_index=k - 1)
        np.testing.assert_allclose(maps, next(iter(ours.values())), atol=1e-6)
        with torch.no_grad():
            classes = wanted or model(images)[k - 1].argmax(1).tolist()
        with GradCAM(model=OneExit(model, k), target_layers=[taps[k - 1]]) as reference:
            expected = reference(input_tensor=images, targets=[ClassifierOutputTarget(c) for c in classes])
        np.testing.assert_allclose(maps, expected, atol=1e-5)
    model.eval()  # pytorch-grad-cam leaves it in eval mode; ours restores whatever it found


def test_exit_cams_true_class_and_default_exits(model, images, test_set) -> None:
    labels = test_set.labels[[3, 101, 555, 777]]
    maps = multiexit.exit_cams(model, images, targets="true", labels=labels)
    assert list(maps) == [3, 1]  # the blog's 10, 5, 3, 1 clipped to 3 exits
    expected = cam.layer_cams(model, images, [model.exit_feature_modules()[2]], targets=labels, output_index=2)
    np.testing.assert_allclose(maps[3], next(iter(expected.values())), atol=1e-6)
    assert multiexit.default_exits(10) == (10, 5, 3, 1)
    assert multiexit.default_exits(7) == (7, 5, 3, 1)
    assert multiexit.default_exits(1) == (1,)


@pytest.mark.parametrize("exits", [(4,), (0,), (True,), ()])
def test_exit_cams_bad_exits(model, images, exits) -> None:
    with pytest.raises(UserError, match="exit"):
        multiexit.exit_cams(model, images, exits=exits)


def test_exit_cams_need_a_multi_exit_model(images) -> None:
    with pytest.raises(UserError, match="exit_feature_modules"):
        multiexit.exit_cams(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), images)


def test_exit_grid_titles_each_exit(model, images, test_set) -> None:
    labels = test_set.labels[[3, 101, 555, 777]]
    with torch.no_grad():
        preds = torch.stack([o.argmax(1) for o in model(images)]).numpy()  # (3, 4)
    cams = multiexit.exit_cams(model, images)
    pred = multiexit.ExitPredictions(np.zeros((3, 4, 10), np.float32), preds, labels, np.array([3, 101, 555, 777]))
    fig = plots.show_exit_cams(images, cams, pred, classes=test_set.classes)
    axes = np.array(fig.axes).reshape(4, 3)
    for i in range(4):
        assert f"image {[3, 101, 555, 777][i]}" in axes[i, 0].get_ylabel()
        for col, k in enumerate(cams, start=1):
            guess = test_set.classes[preds[k - 1, i]]
            mark = "✓" if preds[k - 1, i] == labels[i] else "✗"
            assert axes[i, col].get_title() == f"{guess} {mark}"
        assert f"{int((preds[:, i] == labels[i]).sum())}/3 exits right" in axes[i, 0].get_ylabel()
    with pytest.raises(UserError, match="pred.subset"):
        plots.show_exit_cams(images, cams, pred.subset([0, 1]))
    import eva_utils.multiexit as released  # the 0.1.0 path

    with pytest.warns(DeprecationWarning, match="moved to eva_utils"):  # 0.1.0's parallel arrays still draw the same grid
        old = released.show_exit_cams(images, cams, labels, preds, indices=[3, 101, 555, 777], classes=test_set.classes)
    assert [ax.get_title() for ax in old.axes] == [ax.get_title() for ax in fig.axes]
    assert [ax.get_ylabel() for ax in old.axes] == [ax.get_ylabel() for ax in fig.axes]


# ----------------------------------------------------------------------------- training


def test_fit_trains_every_exit_and_records_per_exit_accuracy(test_set) -> None:
    torch.manual_seed(0)
    tiny = msdnet(blocks=2, growth=2, stem_channels=8)
    train_set = data.load_sample(train=True, transform=None)
    train_loader = data.make_loader(Subset(train_set, range(0, 2000, 20)), batch_size=25, shuffle=True, num_workers=0)
    test_loader = data.make_loader(Subset(test_set, range(0, 1000, 20)), batch_size=25, num_workers=0)
    images, labels = next(iter(train_loader))
    outputs = tiny(images)
    expected = torch.stack([nn.functional.cross_entropy(o, labels) for o in outputs]).mean()
    torch.testing.assert_close(training.multi_exit_loss(nn.CrossEntropyLoss(), outputs, labels), expected)
    optimizer = training.make_optimizer(tiny, "sgd", lr=0.05)
    history = training.fit(tiny, train_loader, test_loader, epochs=1, optimizer=optimizer, device="cpu",
                           max_batches=2, progress=False)
    assert len(history.test_exit_acc) == 1 and len(history.test_exit_acc[0]) == 2  # one entry per exit
    assert history.test_acc[-1] == history.test_exit_acc[0][-1]
    pred = multiexit.predict_exits(tiny, test_loader)  # the engine's numbers, recomputed
    np.testing.assert_allclose(history.test_exit_acc[0], multiexit.exit_accuracy(pred))
