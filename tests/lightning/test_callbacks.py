"""Tests for eva_utils.lightning.callbacks: the tracked maps, their TensorBoard images, the evolution figure and GIF.

The oracle for the maps is ``explain.cam.layer_cams`` on the weights the model had when each record was taken (the
tracker keeps float16 maps, so the oracle's are rounded the same way); the event files are read back with
TensorBoard's own ``EventAccumulator``; the GIF with Pillow, and the pictures against what
``apps.runs.write_cam_evolution`` (``eva-utils train --track-cams``) draws of the same tracker.

Run: python -m pytest tests/lightning/test_callbacks.py -q    (CPU, under a minute)
"""

from __future__ import annotations

import copy
import types

import numpy as np
import pytest
from PIL import Image, ImageSequence

pl = pytest.importorskip("lightning.pytorch")

from lightning.pytorch.loggers import TensorBoardLogger

from eva_utils.apps.runs import write_cam_evolution
from eva_utils.core.errors import UserError
from eva_utils.explain.cam import layer_cams
from eva_utils.lightning import CamTrackerCallback, CifarDataModule, LitClassifier
from eva_utils.models import get_model

LAYERS = ("layer3", "layer4")


class _Snapshots(pl.Callback):
    """The model's weights after every validation epoch (this callback runs after the tracker)."""

    def __init__(self):
        self.weights: list[dict] = []

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.weights.append(copy.deepcopy(pl_module.model.state_dict()))


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, tiny_config, quiet_trainer):
    """A 2-epoch run with a CamTrackerCallback of 3 test images, a TensorBoard logger and a sanity check before it."""
    folder = tmp_path_factory.mktemp("tracked")
    config = tiny_config(folder, lr=0.2)
    model = get_model("resnet18", 10, 4)
    initial = copy.deepcopy(model.state_dict())
    callback, snapshots = CamTrackerCallback(n=3, layers=LAYERS, out=folder / "out"), _Snapshots()
    logger = TensorBoardLogger(str(folder / "tb"), name="", version="")
    trainer = quiet_trainer(config, callbacks=[callback, snapshots], logger=logger, num_sanity_val_steps=1)
    trainer.fit(LitClassifier(model, config), datamodule=CifarDataModule(config))
    return types.SimpleNamespace(callback=callback, weights=[initial, *snapshots.weights], folder=folder)


def test_the_maps_are_layer_cams_of_the_weights_at_each_epoch(tracked):
    tracker = tracked.callback.tracker
    assert tracker.epochs == [0, 1, 2]  # before training and after each epoch
    assert len(set(tracker.labels.tolist())) == 3  # different classes, as --track-cams picks them
    evolution = tracker.evolution()
    model = get_model("resnet18", 10, 4)
    for k, weights in enumerate(tracked.weights):
        model.load_state_dict(weights)
        expected = layer_cams(model, tracker.images, list(LAYERS), targets=tracker.labels)
        for layer in LAYERS:
            np.testing.assert_allclose(evolution[layer][k], expected[layer].astype(np.float16).astype(np.float32),
                                       atol=1e-6)
    assert np.abs(evolution["layer4"][2] - evolution["layer4"][0]).max() > 1e-2  # training moved the maps


def test_the_maps_are_logged_to_tensorboard_at_the_global_step(tracked):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tracked.folder / "tb"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    for tag in ("gradcam/layer3 (8x8 map)", "gradcam/layer4 (4x4 map)"):  # apps.tensorboard's tags
        assert [e.step for e in events.Images(tag)] == [2, 4]  # after epochs 1 and 2 (2 steps each); none at the sanity check
    assert [e.step for e in events.Scalars("val_acc")] == [1, 3]  # Lightning logs epoch metrics at the last step - 1


def test_the_evolution_figure_and_gif_are_written_with_a_frame_per_record(tracked):
    files = tracked.callback.files
    out = tracked.folder / "out"
    assert files == {"cam_evolution": out / "cam_evolution.png", "cam_evolution_gif": out / "cam_evolution.gif",
                     "cam_evolution_maps": out / "cam_evolution.npz"}
    with Image.open(files["cam_evolution_gif"]) as gif:
        assert gif.n_frames == len(tracked.callback.tracker.epochs) == 3
    again = write_cam_evolution(tracked.callback.tracker, tracked.folder / "again", tracked.callback.classes)
    for name in ("cam_evolution", "cam_evolution_gif"):  # the pictures eva-utils train --track-cams draws of these maps
        with Image.open(files[name]) as mine, Image.open(again[name]) as theirs:
            pairs = zip(ImageSequence.Iterator(mine), ImageSequence.Iterator(theirs), strict=True)  # every GIF frame
            assert all(np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB"))) for a, b in pairs)
    with np.load(files["cam_evolution_maps"]) as npz:
        assert npz["epochs"].tolist() == [0, 1, 2] and npz["maps_layer4"].shape == (3, 3, 32, 32)


def test_images_come_with_their_labels():
    with pytest.raises(UserError, match="both images and labels"):
        CamTrackerCallback(images=np.zeros((2, 3, 32, 32), np.float32))


def test_only_rank_zero_tracks():
    callback = CamTrackerCallback(n=2)
    callback.on_fit_start(types.SimpleNamespace(is_global_zero=False), None)  # rank 1: no tracker, nothing read
    assert callback.tracker is None


def test_without_a_datamodule_the_images_must_be_given(tmp_path, tiny_config, quiet_trainer):
    config = tiny_config(tmp_path)
    datamodule = CifarDataModule(config)
    trainer = quiet_trainer(config, callbacks=[CamTrackerCallback(n=2)])
    with pytest.raises(UserError, match="pass images and labels"):
        trainer.fit(LitClassifier(get_model("resnet18", 10, 4), config), train_dataloaders=datamodule.train_dataloader(),
                    val_dataloaders=datamodule.val_dataloader())
