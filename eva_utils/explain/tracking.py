"""What happens during training, recorded: the maps of fixed images after every epoch.

``CamTracker`` is a callback for :func:`~eva_utils.training.fit` (``TensorBoardLogger``, in
:mod:`eva_utils.apps.tensorboard`, can log its maps too)::

    tracker = CamTracker(model, images, labels, layers=("layer3", "layer4"))   # images: (N, C, H, W) normalised
    tracker.record(0)                                                          # the untrained network's maps
    fit(model, train_loader, test_loader, epochs, optimizer, scheduler, callbacks=[tracker, TensorBoardLogger("tb", tracker)])
    plots.show_cam_evolution(data.denormalize(images), tracker.evolution(), tracker.epochs, labels)
    plots.save_animation(plots.cam_evolution_frames(...), "cam_evolution.gif")

The tracker explains each image's *true* class at every epoch (the prediction changes while the network learns; the
question asked of every frame stays the same), with one ``layer_cams`` call on a handful of images. With ``path`` it
keeps its maps in an ``.npz`` after every epoch, so a resumed run continues the film instead of starting it again.
It computes arrays; :mod:`eva_utils.plots` draws them.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from eva_utils.core.errors import UserError
from eva_utils.core.files import atomic_write
from eva_utils.explain.cam import layer_cams, map_sizes, predict_targets
from eva_utils.training.history import Callback, History

__all__ = ["CamTracker", "tracked_rows"]


def tracked_rows(labels: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """``n`` data set rows to follow: the first image of each class in turn, so the film shows different classes.

    Raises:
        UserError: ``n`` below 1 or above the number of images.
    """
    labels = np.asarray(labels)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= len(labels):
        raise UserError(f"the number of images to track (n, a run's track_cams) must be between 1 and {len(labels)}, "
                        f"the test images there are; got {n!r}", param="track_cams")
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

        Whatever was kept for ``epoch`` or later goes first: a run resumed from a checkpoint earlier than the film's
        last frame redraws those epochs instead of keeping two versions of them.
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
                            f"{len(self.labels)}: keep the run's track_cams and track_layers, or delete the file",
                            param="track_layers")
        self.epochs = [int(e) for e in epochs]
        self.preds = list(preds)
        self.maps = {layer: list(maps[layer]) for layer in layers}
