"""What happens during training, recorded: the maps of fixed images after every epoch, and TensorBoard logs.

Both are callbacks for :func:`~eva_utils.training.fit` (``callbacks=[tracker, logger]``)::

    tracker = CamTracker(model, images, labels, layers=("layer3", "layer4"))   # images: (N, C, H, W) normalised
    tracker.record(0)                                                          # the untrained network's maps
    fit(model, train_loader, test_loader, epochs, optimizer, scheduler, callbacks=[tracker, TensorBoardLogger("tb", tracker)])
    plots.show_cam_evolution(data.denormalize(images), tracker.evolution(), tracker.epochs, labels)
    plots.save_animation(plots.cam_evolution_frames(...), "cam_evolution.gif")

The tracker explains each image's *true* class at every epoch (the prediction changes while the network
learns; the question asked of every frame stays the same), with one ``layer_cams`` call on a handful of
images: a few forward and backward passes per epoch. With ``path`` it keeps its maps in an ``.npz`` after
every epoch, so a resumed run continues the film instead of starting it again.

``TensorBoardLogger`` writes train/test loss and accuracy per epoch, the learning rate and loss per step,
and the tracked maps as images, all at the global step (batches seen); a resumed run's first step purges what
the interrupted run logged after its checkpoint, so the curves do not fork. It needs the optional ``tensorboard`` package
(``pip install "eva-utils[tensorboard]"``; Colab has it).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from eva_utils.core.errors import UserError
from eva_utils.core.files import atomic_write
from eva_utils.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD, denormalize
from eva_utils.explain.cam import layer_cams, map_sizes, predict_targets
from eva_utils.plots.figures import overlay
from eva_utils.training.engine import Callback, History

__all__ = ["CamTracker", "TensorBoardLogger", "tracked_rows"]

TENSORBOARD_INSTALL = 'pip install "eva-utils[tensorboard]"'


def tracked_rows(labels: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """``n`` data set rows to follow: the first image of each class in turn, so the film shows different classes.

    Raises:
        UserError: ``n`` below 1 or above the number of images.
    """
    labels = np.asarray(labels)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= len(labels):
        raise UserError(f"the number of images to track (--track-cams) must be between 1 and {len(labels)}, the test images there are; got {n!r}")
    per_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    rows = [int(p[depth]) for depth in range(max(len(p) for p in per_class)) for p in per_class if depth < len(p)]
    return np.asarray(rows[:n], dtype=np.int64)


class CamTracker(Callback):
    """The Grad-CAM maps of fixed images at chosen layers, recorded after every epoch.

    Args:
        model: the network being trained (its mode, gradients and hooks are left as found).
        images: normalised float (N, C, H, W), e.g. a few test images.
        labels: (N,) their true classes: the class every map explains.
        layers: layer names, as ``layer_cams`` takes them (``layer0``..``layer4`` for the ResNets).
        method: a ``layer_cams`` method.
        path: an ``.npz`` the maps are kept in after every epoch (and read back from, see :meth:`load`).
    """

    def __init__(self, model: nn.Module, images: torch.Tensor, labels: Sequence[int] | np.ndarray,
                 layers: Sequence[str] = ("layer3", "layer4"), method: str = "gradcam",
                 path: str | os.PathLike | None = None) -> None:
        self.model = model
        self.images = images.detach().cpu()
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.labels) != len(self.images):
            raise UserError(f"got {len(self.images)} images but {len(self.labels)} labels to track")
        self.layers = [str(layer) for layer in ([layers] if isinstance(layers, str) else layers)]
        self.method = method
        self.path = None if path is None else Path(path)
        self.sizes = map_sizes(model, self.layers, tuple(self.images.shape[-2:]))  # name -> (h, w) of the layer's map
        self.epochs: list[int] = []
        self.preds: list[np.ndarray] = []  # per epoch (N,)
        self.maps: dict[str, list[np.ndarray]] = {layer: [] for layer in self.layers}  # per epoch (N, H, W)

    def record(self, epoch: int) -> None:
        """Compute and keep the maps (and predictions) at ``epoch`` (0 = before training).

        Whatever was kept for ``epoch`` or later goes first: a run resumed from an earlier checkpoint
        than the film's last frame redraws those epochs instead of keeping two versions of them.
        """
        keep = [i for i, e in enumerate(self.epochs) if e < epoch]
        self.epochs = [self.epochs[i] for i in keep]
        self.preds = [self.preds[i] for i in keep]
        self.maps = {layer: [maps[i] for i in keep] for layer, maps in self.maps.items()}
        cams = layer_cams(self.model, self.images, self.layers, targets=self.labels, method=self.method)
        self.epochs.append(int(epoch))
        self.preds.append(predict_targets(self.model, self.images))
        for layer in self.layers:
            self.maps[layer].append(cams[layer].astype(np.float16))  # a film of maps in [0, 1]: half the bytes

    def on_epoch_end(self, epoch: int, history: History) -> None:
        self.record(epoch)
        if self.path is not None:
            self.save(self.path)

    def evolution(self) -> dict[str, np.ndarray]:
        """Layer -> float32 (E, N, H, W): the maps at each recorded epoch (:attr:`epochs`)."""
        if not self.epochs:
            raise UserError("no maps recorded yet: call record(epoch) or train with this tracker in fit's callbacks")
        return {layer: np.stack(maps).astype(np.float32) for layer, maps in self.maps.items()}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the recorded maps to an ``.npz`` (atomically)."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, epochs=np.asarray(self.epochs, np.int64), preds=np.stack(self.preds),
                            labels=self.labels, layers=np.asarray(self.layers, dtype=str),
                            **{f"maps_{layer}": np.stack(m) for layer, m in self.maps.items()})
        return atomic_write(path, lambda f: f.write(buffer.getvalue()))

    def load(self, path: str | os.PathLike) -> None:
        """Continue the film of an earlier run (epochs it recorded after the checkpoint resumed from are redrawn).

        Raises:
            UserError: the file is not a tracker's, or tracked other images or layers.
        """
        try:
            with np.load(path, allow_pickle=False) as npz:
                epochs, preds, labels = npz["epochs"], npz["preds"], npz["labels"]
                layers = [str(x) for x in npz["layers"]]
                maps = {layer: npz[f"maps_{layer}"] for layer in layers}
        except (OSError, KeyError, ValueError) as exc:
            raise UserError(f"{path} is not a CamTracker file ({exc}); delete it to start the film afresh") from exc
        if layers != self.layers or not np.array_equal(labels, self.labels):
            raise UserError(f"{path} tracked layers {layers} of {len(labels)} images, this run tracks {self.layers} of "
                            f"{len(self.labels)}: keep the run's --track-cams / --track-layers, or delete the file")
        self.epochs = [int(e) for e in epochs]
        self.preds = list(preds)
        self.maps = {layer: list(maps[layer]) for layer in layers}


class TensorBoardLogger(Callback):
    """Loss, accuracy and learning rate of a run, and a tracker's maps, as TensorBoard event files in ``log_dir``.

    Args:
        log_dir: the folder ``%tensorboard --logdir`` is pointed at.
        tracker: a :class:`CamTracker` that runs before this logger in ``callbacks``; its maps are logged per epoch.
        steps_per_epoch: batches per epoch, to place epoch values at the global step.
        mean: normalisation mean of the tracked images (for the overlays).
        std: normalisation std.

    Raises:
        UserError: tensorboard is not installed (the message says how to install it).
    """

    def __init__(self, log_dir: str | os.PathLike, tracker: CamTracker | None = None, steps_per_epoch: int = 1,
                 mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise UserError(f"TensorBoard logging needs the tensorboard package: {TENSORBOARD_INSTALL} "
                            "(Colab has it already)") from exc
        if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
            raise UserError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch!r}")
        self.steps_per_epoch = steps_per_epoch
        self.tracker = tracker
        self.mean, self.std = mean, std
        self.log_dir = Path(log_dir)
        self._writer_class = SummaryWriter
        self.writer: Any = None  # opened at the run's first step (see _open)
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot write TensorBoard logs into {log_dir} ({exc}): choose another folder") from exc

    def _open(self, first_step: int) -> Any:
        """The event writer, opened at the first step this run logs.

        A resumed run (first step after 1) purges what the interrupted run logged from that step on, so the curves
        do not fork; a fresh run purges nothing (another run's logs in the same folder stay as they are).
        """
        if self.writer is None:
            self.writer = self._writer_class(str(self.log_dir), purge_step=first_step if first_step > 1 else None)
        return self.writer

    def on_batch_end(self, step: int, loss: float, lr: float) -> None:
        self._open(step)
        self.writer.add_scalar("lr", lr, step)
        self.writer.add_scalar("loss/train_batch", loss, step)

    def on_epoch_end(self, epoch: int, history: History) -> None:
        step = epoch * self.steps_per_epoch
        self._open(step)
        for name, value in (("loss/train", history.train_loss[-1]), ("loss/test", history.test_loss[-1]),
                            ("accuracy/train", history.train_acc[-1]), ("accuracy/test", history.test_acc[-1])):
            self.writer.add_scalar(name, value, step)
        self.writer.add_scalar("epoch", epoch, step)
        tracker = self.tracker
        if tracker is not None and tracker.epochs and tracker.epochs[-1] == epoch:
            rgb = denormalize(tracker.images, self.mean, self.std)  # (N, H, W, 3)
            for layer, maps in tracker.maps.items():
                shown = overlay(rgb, maps[-1].astype(np.float32))  # (N, H, W, 3)
                h, w = tracker.sizes[layer]
                self.writer.add_images(f"gradcam/{layer} ({h}x{w} map)", shown, step, dataformats="NHWC")  # true class
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
