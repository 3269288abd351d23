"""A whole training run with what it leaves behind: :func:`run_training` composes the recipe's core
(:func:`~eva_utils.training.recipe.setup_run`, :func:`~eva_utils.training.recipe.train_run`) with Grad-CAM tracking,
TensorBoard and the run's figures (``curves.png``, ``cam_evolution.png`` and its GIF).

    result = run_training(TrainConfig.demo())          # eva-utils demo; eva-utils train builds its config
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from eva_utils.apps.tensorboard import TensorBoardLogger
from eva_utils.data.cifar10 import ArrayDataset, denormalize
from eva_utils.explain.tracking import CamTracker, tracked_rows
from eva_utils.plots.animation import cam_evolution_frames, save_animation, show_cam_evolution
from eva_utils.plots.save import save_figure
from eva_utils.plots.training import plot_history, plot_lr_finder
from eva_utils.training.history import Callback
from eva_utils.training.recipe import TrainConfig, TrainResult, setup_run, train_run

__all__ = ["run_training", "write_cam_evolution"]


def run_training(config: TrainConfig, resume: str | os.PathLike | None = None, overwrite: bool = False) -> TrainResult:
    """Train as ``config`` says and write ``history.json``, ``checkpoint.pt`` and ``curves.png`` into ``config.out``.

    With ``config.lr_find`` also ``lr_finder.png``; with ``config.track_cams`` also ``cam_evolution.png``, ``.gif``
    and ``.npz`` (:class:`~eva_utils.explain.tracking.CamTracker`); with ``config.tensorboard`` its event files.

    Args:
        config: the settings; validated first.
        resume: a checkpoint to continue from (often ``<out>/checkpoint.pt``).
        overwrite: allow starting afresh in a folder that already holds a checkpoint.

    Returns:
        The trained model, its history, the output folder and the test loader.

    Raises:
        UserError: bad settings, or an output folder holding a run that would be overwritten.
    """
    setup = setup_run(config, resume, overwrite)
    config, out = setup.config, setup.out
    main = setup.group is None or setup.group.is_main
    test_set = setup.test_loader.dataset
    found = {}
    if setup.lr_test is not None and main:  # drawn before the first epoch: the curve the peak was read from
        found["lr_finder"] = save_figure(plot_lr_finder(setup.lr_test), out / "lr_finder.png")
        print(f"LR range test: peak lr {config.lr:.3g} (the steepest fall of the loss), drawn in {found['lr_finder']}",
              flush=True)
    tracker = _tracker(config, setup.model, test_set, out, resume) if config.track_cams and main else None
    logger = (TensorBoardLogger(config.tensorboard, tracker, steps_per_epoch=setup.steps_per_epoch)
              if config.tensorboard and main else None)
    callbacks: list[Callback] = [callback for callback in (tracker, logger) if callback is not None]
    try:
        result = train_run(setup, resume, callbacks)
    finally:
        if logger is not None:
            logger.close()
    if not main:  # rank 0 writes the run's files
        return result
    title = f"{config.model} (width {config.width}) on {Path(config.data).name}"
    files = {**result.files, **found, "curves": save_figure(plot_history(result.history, title=title), out / "curves.png")}
    if tracker is not None and tracker.epochs:
        files.update(write_cam_evolution(tracker, out, test_set.classes))
    if logger is not None:
        files["tensorboard"] = Path(config.tensorboard)
    return result._replace(files=files)


def _tracker(config: TrainConfig, model: nn.Module, test_set: ArrayDataset, out: Path,
             resume: str | os.PathLike | None) -> CamTracker:
    """The CamTracker of a run: ``track_cams`` test images of different classes; an earlier film continued on resume."""
    rows = tracked_rows(test_set.labels, config.track_cams)
    images = torch.stack([test_set[int(i)][0] for i in rows])  # (N, C, H, W), the test transform
    tracker = CamTracker(model, images, test_set.labels[rows], config.track_layers, path=out / "cam_evolution.npz")
    earlier = None if resume is None else Path(resume).parent / "cam_evolution.npz"
    if earlier is not None and earlier.is_file():
        tracker.load(earlier)
    elif resume is None:
        tracker.record(0)  # the untrained network's maps: where the film starts
    return tracker


def write_cam_evolution(tracker: CamTracker, out: Path, classes: Sequence[str]) -> dict[str, Path]:
    """``cam_evolution.png`` (images x epochs) and ``cam_evolution.gif`` (one frame per epoch) of a tracker into ``out``."""
    rgb = denormalize(tracker.images)
    evolution = tracker.evolution()
    figure = show_cam_evolution(rgb, evolution, tracker.epochs, tracker.labels, classes, sizes=tracker.sizes)
    frames = cam_evolution_frames(rgb, evolution, tracker.epochs, tracker.labels, classes, preds=tracker.preds,
                                  sizes=tracker.sizes)
    return {"cam_evolution": save_figure(figure, out / "cam_evolution.png"),
            "cam_evolution_gif": save_animation(frames, out / "cam_evolution.gif"),
            "cam_evolution_maps": tracker.save(out / "cam_evolution.npz")}
