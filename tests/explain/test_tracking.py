"""Tests for eva_utils.explain.tracking: maps of fixed images through training (TensorBoard: tests/apps/test_tensorboard.py).

The oracle for the tracked maps is ``layer_cams`` of the model as it stood.

Run: python -m pytest tests/explain/test_tracking.py -q    (CPU, about a minute)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from eva_utils import data, plots, training
from eva_utils.apps.runs import run_training
from eva_utils.core.errors import UserError
from eva_utils.data import presets as transforms
from eva_utils.explain import tracking
from eva_utils.explain.cam import layer_cams
from eva_utils.models import resnet18
from eva_utils.training.recipe import TrainConfig


def _loaders():
    train_set = data.load_sample(True, transforms.test_transforms())
    test_set = data.load_sample(False, transforms.test_transforms())
    return (data.make_loader(train_set, 64, shuffle=True, num_workers=0, seed=0),
            data.make_loader(test_set, 250, num_workers=0), test_set)


def _tracked(test_set, n=3):
    rows = tracking.tracked_rows(test_set.labels, n)
    return torch.stack([test_set[int(i)][0] for i in rows]), test_set.labels[rows]


def test_tracked_rows_take_one_image_per_class_first():
    labels = np.array([2, 2, 0, 1, 0, 2])
    assert tracking.tracked_rows(labels, 4).tolist() == [2, 3, 0, 4]
    with pytest.raises(UserError, match="between 1 and 6"):
        tracking.tracked_rows(labels, 7)


def test_the_tracker_records_the_maps_of_every_epoch_as_layer_cams_computes_them(tmp_path):
    training.set_seed(0)
    train_loader, test_loader, test_set = _loaders()
    model = resnet18(width=8)
    images, labels = _tracked(test_set)
    tracker = tracking.CamTracker(model, images, labels, ("layer3", "layer4"), path=tmp_path / "film.npz")
    tracker.record(0)
    before = layer_cams(model, images, ["layer3", "layer4"], targets=labels)
    optimizer = training.make_optimizer(model, "sgd", lr=0.05)
    training.fit(model, train_loader, test_loader, 2, optimizer, device="cpu", max_batches=2, progress=False,
                 callbacks=[tracker])
    after = layer_cams(model, images, ["layer3", "layer4"], targets=labels)
    assert tracker.epochs == [0, 1, 2] and tracker.sizes == {"layer3": (8, 8), "layer4": (4, 4)}
    evolution = tracker.evolution()
    assert evolution["layer3"].shape == (3, 3, 32, 32)
    for layer in ("layer3", "layer4"):  # kept in float16: maps in [0, 1] to 1e-3
        np.testing.assert_allclose(evolution[layer][0], before[layer], atol=1e-3)
        np.testing.assert_allclose(evolution[layer][-1], after[layer], atol=1e-3)
    assert not np.allclose(evolution["layer4"][0], evolution["layer4"][-1], atol=1e-2)  # training moved them
    training.set_seed(0)  # the same run without the tracker: watching must not change what is learnt
    plain = resnet18(width=8)
    train_loader, test_loader, _ = _loaders()
    training.fit(plain, train_loader, test_loader, 2, training.make_optimizer(plain, "sgd", lr=0.05), device="cpu",
                 max_batches=2, progress=False)
    for a, b in zip(model.state_dict().values(), plain.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    copy = tracking.CamTracker(model, images, labels, ("layer3", "layer4"))
    copy.load(tmp_path / "film.npz")  # written after every epoch
    assert copy.epochs == [0, 1, 2] and np.array_equal(copy.evolution()["layer4"], evolution["layer4"])
    other = tracking.CamTracker(model, images, labels, ("layer4",))
    with pytest.raises(UserError, match="tracked layers"):
        other.load(tmp_path / "film.npz")


def test_recording_an_epoch_again_replaces_it_and_what_came_after():
    _, _, test_set = _loaders()
    model = resnet18(width=4)
    tracker = tracking.CamTracker(model, *_tracked(test_set, 2), ("layer4",))
    for epoch in (0, 1, 2, 1):  # a run resumed from epoch 0's checkpoint redraws epoch 1
        tracker.record(epoch)
    assert tracker.epochs == [0, 1] and len(tracker.maps["layer4"]) == len(tracker.preds) == 2


def test_evolution_figure_and_gif(tmp_path):
    _, _, test_set = _loaders()
    model = resnet18(width=4)
    images, labels = _tracked(test_set, 2)
    tracker = tracking.CamTracker(model, images, labels)
    tracker.record(0)
    tracker.record(1)
    rgb = data.denormalize(images)
    fig = plots.show_cam_evolution(rgb, tracker.evolution(), tracker.epochs, labels, sizes=tracker.sizes)
    assert len(fig.axes) == 2 * 2 * 3  # (images x layers) rows, image + 2 epochs columns
    assert "layer4\n4x4 map (coarse)" in fig.axes[3].get_ylabel()
    frames = plots.cam_evolution_frames(rgb, tracker.evolution(), tracker.epochs, labels, preds=tracker.preds,
                                        sizes=tracker.sizes)
    path = plots.save_animation(frames, tmp_path / "film.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == 2 and gif.info["loop"] == 0
    with pytest.raises(UserError, match="no frames"):
        plots.save_animation([], tmp_path / "none.gif")
    with pytest.raises(UserError, match="epochs"):
        plots.show_cam_evolution(rgb, tracker.evolution(), [0, 1, 2], labels)


def test_resuming_continues_the_film(tmp_path):
    """Two epochs, then one more resumed, film the same as three epochs in one go (CPU, same seed)."""
    base = TrainConfig.demo(epochs=3, max_batches=2, scheduler="none", progress=False, track_cams=2,
                            track_layers=("layer4",), width=4)
    whole = run_training(base.__class__(**{**base.to_dict(), "out": str(tmp_path / "whole")}))
    first = TrainConfig(**{**base.to_dict(), "out": str(tmp_path / "parts"), "epochs": 2})
    run_training(first)
    parts = run_training(TrainConfig(**{**base.to_dict(), "out": str(tmp_path / "parts")}),
                         resume=tmp_path / "parts" / "checkpoint.pt")
    a, b = np.load(whole.files["cam_evolution_maps"]), np.load(parts.files["cam_evolution_maps"])
    assert a["epochs"].tolist() == b["epochs"].tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(a["maps_layer4"], b["maps_layer4"])
    with Image.open(parts.files["cam_evolution_gif"]) as gif:
        assert gif.n_frames == 4
