"""The default recipe for ResNet18 on CIFAR-10, and one call that runs a whole training job.

``TrainConfig()`` holds every setting with its default; ``run_training(config)`` builds the
data, model, optimizer and schedule, trains with :func:`~eva_utils.training.fit`, and writes
``history.json``, ``checkpoint.pt`` and ``curves.png`` into ``config.out``. The command line
(``eva-utils train``, ``eva-utils demo``) and the notebooks are thin layers over these two.

Where the default recipe comes from (target: 94% test accuracy in 20 epochs on one GPU;
it has not been measured on a GPU by this project, see the README):

* the course assignment's submission: SGD lr 0.01, StepLR, batch 64 -> 88.95% in 20 epochs;
* course runs with OneCycle and an LR finder report 91.0 to 91.6% in 20-24 epochs;
* fast CIFAR-10 training (Page, "How to train your ResNet", 2018; Jordan, airbench, 2024):
  batch 512, linear warm-up then linear decay to zero (one cycle), peak lr 0.4 with
  Nesterov momentum 0.9 and weight decay 5e-4, label smoothing, flip + crop + cutout
  -> 94% in 24 epochs with a smaller ResNet. ResNet18 has more capacity, so 20 epochs
  of the same schedule aim at 94% or more.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from eva_utils.core.errors import DataNotFoundError, UserError, first_line, unknown_name
from eva_utils.data import cifar10 as data_lib
from eva_utils.data.images import cifar_preset
from eva_utils.data.presets import test_transforms, train_transforms
from eva_utils.explain.tracking import CamTracker, TensorBoardLogger, tracked_rows
from eva_utils.models import MODELS, get_model
from eva_utils.models.loading import PRETRAINED_PREFIX, Classifier, WeightsDownloadError, load_model, torchvision_names
from eva_utils.models.resnet import MAX_WIDTH
from eva_utils.plots.figures import cam_evolution_frames, plot_history, save_animation, save_figure, show_cam_evolution
from eva_utils.training import distributed
from eva_utils.training.engine import (
    OPTIMIZERS,
    SCHEDULERS,
    Callback,
    History,
    fit,
    make_optimizer,
    make_scheduler,
    resolve_device,
    set_seed,
)

__all__ = [
    "SHIPPED_FALLBACK", "TrainConfig", "TrainResult", "check_output_folder", "for_this_machine", "in_colab", "resume_point",
    "run_folder", "run_training", "torchvision_classifier", "write_cam_evolution",
]


@dataclass
class TrainConfig:
    """Every setting of a training run. Defaults: the 20-epoch ResNet18 recipe."""

    model: str = "resnet18"  # resnet18 | resnet34 | msdnet
    width: int = 64  # channels of the first stage; 16 is ~16x cheaper for CPU runs
    num_classes: int | None = None  # None: the data's number of classes (10 for CIFAR-10)
    data: str = "cifar10"  # cifar10 (downloads) | sample (bundled, offline) | path/to/file.npz
    data_dir: str = "./data"
    download: bool = True
    epochs: int = 20
    batch_size: int = 512
    optimizer: str = "sgd"  # sgd | adam
    lr: float = 0.4  # peak lr for onecycle, initial lr otherwise
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    scheduler: str = "onecycle"  # onecycle | step | cosine | none
    pct_start: float = 0.25  # onecycle: fraction of training spent warming up (5 of 20 epochs)
    step_size: int = 6  # step: epochs between decays
    gamma: float = 0.1  # step: decay factor
    label_smoothing: float = 0.1
    augment: bool = True  # flip, shift-scale-rotate, pad-crop, cutout 16x16
    amp: bool = True  # CUDA only: bf16 where supported, else fp16 + GradScaler
    channels_last: bool = True  # CUDA only
    device: str = "auto"
    num_workers: int | None = None  # None: 2 on a 2-core Colab
    seed: int = 0
    out: str = "runs/resnet18"
    max_batches: int | None = None  # per pass; for smoke runs only
    progress: bool = True
    track_cams: int = 0  # follow the Grad-CAM of this many test images through training (figure + GIF in out)
    track_layers: tuple[str, ...] = ("layer3", "layer4")  # the layers of the tracked maps
    tensorboard: str | None = None  # a folder for TensorBoard event files (needs eva-utils[tensorboard])
    sync_bn: bool = False  # under torchrun: BatchNorm statistics over the global batch (SyncBatchNorm)

    @classmethod
    def demo(cls, **overrides: Any) -> TrainConfig:
        """The offline CPU demo: a narrow ResNet18 for a few epochs on the bundled sample."""
        settings: dict[str, Any] = dict(
            width=16, data="sample", download=False, epochs=12, batch_size=64, lr=0.05,
            label_smoothing=0.0, device="cpu", num_workers=0, out="eva_demo", track_cams=4,
        )
        settings.update(overrides)
        return cls(**settings)

    def validate(self) -> None:
        """Raise :class:`UserError` for a setting that cannot work, saying which and why."""
        if self.model.lower() not in MODELS:
            raise unknown_name("model", self.model, MODELS)
        if self.data not in data_lib.DATASETS and not data_lib.is_npz_path(self.data):
            raise data_lib.unknown_dataset(self.data)
        if self.optimizer.lower() not in OPTIMIZERS:
            raise unknown_name("optimizer", self.optimizer, OPTIMIZERS)
        if self.scheduler.lower() not in SCHEDULERS:
            raise unknown_name("scheduler", self.scheduler, SCHEDULERS)
        if isinstance(self.width, int) and self.width > MAX_WIDTH:
            raise UserError(f"width must be at most {MAX_WIDTH} (64 is ResNet18's own), got {self.width}")
        for name in ("epochs", "batch_size", "width", "num_classes"):
            value = getattr(self, name)
            if name == "num_classes" and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise UserError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.weight_decay, (int, float)) and math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise UserError(f"weight_decay must be a number >= 0, got {self.weight_decay!r}")
        if self.num_workers is not None and (not isinstance(self.num_workers, int) or self.num_workers < 0):
            raise UserError(f"workers must be 0 (load in the main process) or more, got {self.num_workers!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise UserError(f"seed must be a whole number from 0 to {2**32 - 1}, got {self.seed!r}")
        resolve_device(self.device)  # meta, mps, a missing GPU: refused with the devices that exist
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UserError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.max_batches is not None and self.max_batches <= 0:
            raise UserError(f"max_batches must be a positive integer, got {self.max_batches}")
        if isinstance(self.track_cams, bool) or not isinstance(self.track_cams, int) or self.track_cams < 0:
            raise UserError(f"track_cams must be 0 (off) or a number of test images, got {self.track_cams!r}")
        if self.track_cams and self.model.lower() == "msdnet":
            raise UserError("--track-cams follows the ResNets' stages (layer0..layer4); for MSD-Net's exits use "
                            "eva-utils msd on the trained checkpoint")
        if self.track_cams and (isinstance(self.track_layers, str) or not self.track_layers):
            raise UserError(f"track_layers must be a list of layer names such as layer3 layer4, got {self.track_layers!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain settings, stored in checkpoints."""
        return asdict(self)

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`, ignoring keys this version does not know."""
        names = {f.name for f in fields(cls)}
        known = {k: v for k, v in settings.items() if k in names}
        if isinstance(known.get("track_layers"), list):
            known["track_layers"] = tuple(known["track_layers"])
        return cls(**known)


class TrainResult(NamedTuple):
    """What :func:`run_training` produced."""

    model: nn.Module
    history: History
    out: Path
    test_loader: torch.utils.data.DataLoader
    train_set: data_lib.ArrayDataset
    files: dict[str, Path] = {}  # what was written: checkpoint, history, curves (and cam_evolution, its gif, tensorboard)


def build_loaders(config: TrainConfig, device: torch.device):
    """Train and test loaders for ``config`` (train: augmented and shuffled)."""
    train_tf = train_transforms() if config.augment else test_transforms()
    train_set = data_lib.load_dataset(config.data, True, train_tf, config.data_dir, config.download)
    test_set = data_lib.load_dataset(config.data, False, test_transforms(), config.data_dir, config.download)
    if train_set.classes != test_set.classes:
        raise UserError(f"the {config.data} data's test split has other classes than its training split: "
                        f"{list(test_set.classes)} vs {list(train_set.classes)}")
    for split in (train_set, test_set):
        if split.images.shape[1:3] != (32, 32):
            raise UserError(f"the {config.data} data holds {split.images.shape[2]}x{split.images.shape[1]} images; the "
                            "recipe's augmentations and models are for 32x32 CIFAR-style images: resize them first")
    if config.num_classes is not None and len(train_set.classes) != config.num_classes:
        raise UserError(f"the {config.data} data has {len(train_set.classes)} classes but num_classes is "
                        f"{config.num_classes}: leave num_classes out (it follows the data) or fix the classes array")
    train_loader = data_lib.make_loader(
        train_set, config.batch_size, shuffle=True, num_workers=config.num_workers, seed=config.seed, device=device,
        drop_last=len(train_set) > config.batch_size,
    )
    test_loader = data_lib.make_loader(
        test_set, max(config.batch_size, 256), shuffle=False, num_workers=config.num_workers, seed=config.seed, device=device
    )
    return train_loader, test_loader


RUN_FILES = ("checkpoint.pt", "history.json", "curves.png")


def check_output_folder(out: Path, resume: str | os.PathLike | None, overwrite: bool) -> None:
    """Refuse an output folder that would lose another run, or that cannot be written, before any training.

    A run writes into ``out`` only when it is new or empty, when ``resume`` is a checkpoint in
    ``out`` itself (the run continues there), or with ``overwrite``.

    Raises:
        UserError: ``out`` holds another run, is a file, or is not writable; the message says what to do.
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder: choose a folder for the run")
    if resume is not None and not Path(resume).is_file():
        raise DataNotFoundError(f"checkpoint {resume} to resume from does not exist: check the path "
                                "(eva-utils train writes <out>/checkpoint.pt)")
    held = [name for name in RUN_FILES if (out / name).exists()]
    if held and not overwrite:
        if resume is None:
            raise UserError(
                f"{out} already holds a run ({out / held[0]}); continue it with --resume, "
                "choose another --out, or pass --overwrite to replace it"
            )
        if Path(resume).resolve().parent != out.resolve():
            raise UserError(
                f"{out} holds another run ({out / held[0]}), and resuming {resume} there would overwrite it: "
                f"resume into the checkpoint's own folder (--out {Path(resume).parent}), into an empty --out, "
                "or pass --overwrite to replace that run"
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output folder {out} ({first_line(exc)}): choose another --out") from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise UserError(f"the output folder {out} is not writable: choose another --out")


def run_training(config: TrainConfig, resume: str | os.PathLike | None = None, overwrite: bool = False) -> TrainResult:
    """Train as ``config`` says and write ``history.json``, ``checkpoint.pt`` and ``curves.png`` into ``config.out``.

    With ``config.track_cams`` also ``cam_evolution.png``, ``.gif`` and ``.npz`` (the maps of that many test
    images after every epoch, see :class:`~eva_utils.tracking.CamTracker`); with ``config.tensorboard`` event
    files in that folder (:class:`~eva_utils.tracking.TensorBoardLogger`).

    Args:
        config: the settings; validated first.
        resume: a checkpoint to continue from (often ``<out>/checkpoint.pt``).
        overwrite: allow starting afresh in a folder that already holds a checkpoint.

    Returns:
        The trained model, its history, the output folder and the test loader.

    Raises:
        UserError: bad settings, or an output folder holding a run that would be overwritten.
    """

    config.validate()
    out = Path(config.out)
    checkpoint_path = out / "checkpoint.pt"
    group = distributed.join(config.device)  # under torchrun: this process's rank; None otherwise
    if group is not None:
        distributed.per_process_batch(config.batch_size, group.world_size)  # refused before any data is read
    device = group.device if group is not None else resolve_device(config.device)
    main = group is None or group.is_main
    check_output_folder(out, resume, overwrite)
    distributed.barrier(group)  # every process has checked the folder before rank 0 writes into it
    set_seed(config.seed)
    train_loader, test_loader = build_loaders(config, device)
    if config.num_classes is None:  # follows the data; stored in the checkpoint as a number
        config = replace(config, num_classes=len(train_loader.dataset.classes))
    model = get_model(config.model, config.num_classes, config.width)
    optimizer = make_optimizer(
        model, config.optimizer, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )
    steps = config.max_batches or len(train_loader)
    steps = min(steps, len(train_loader))
    scheduler = make_scheduler(
        optimizer, config.scheduler, epochs=config.epochs, steps_per_epoch=steps, max_lr=config.lr,
        pct_start=config.pct_start, step_size=config.step_size, gamma=config.gamma,
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    def save_progress(epoch: int, history: History) -> None:
        history.save(out / "history.json")

    tracker = _tracker(config, model, test_loader.dataset, out, resume) if config.track_cams and main else None
    callbacks: list[Callback] = [] if tracker is None else [tracker]
    logger = None
    if config.tensorboard and main:
        logger = TensorBoardLogger(config.tensorboard, tracker, steps_per_epoch=steps)
        callbacks.append(logger)
    try:
        history = fit(
            model, train_loader, test_loader, config.epochs, optimizer, scheduler, criterion=criterion,
            device=device, amp=config.amp, channels_last=config.channels_last, seed=config.seed,
            checkpoint_path=checkpoint_path, resume=resume, config=config.to_dict(),
            max_batches=config.max_batches, progress=config.progress, on_epoch_end=save_progress, callbacks=callbacks,
            sync_batchnorm=config.sync_bn,
        )
    finally:
        if logger is not None:
            logger.close()
    if not main:  # rank 0 writes the run's files
        return TrainResult(model, history, out, test_loader, train_loader.dataset, {})
    files = {"checkpoint": checkpoint_path, "history": history.save(out / "history.json"),
             "curves": save_figure(plot_history(history, title=f"{config.model} (width {config.width}) on {Path(config.data).name}"),
                                   out / "curves.png")}
    if tracker is not None and tracker.epochs:
        files.update(write_cam_evolution(tracker, out, test_loader.dataset.classes))
    if logger is not None:
        files["tensorboard"] = Path(config.tensorboard)
    return TrainResult(model, history, out, test_loader, train_loader.dataset, files)


def _tracker(config: TrainConfig, model: nn.Module, test_set: data_lib.ArrayDataset, out: Path,
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
    rgb = data_lib.denormalize(tracker.images)
    evolution = tracker.evolution()
    figure = show_cam_evolution(rgb, evolution, tracker.epochs, tracker.labels, classes, sizes=tracker.sizes)
    frames = cam_evolution_frames(rgb, evolution, tracker.epochs, tracker.labels, classes, preds=tracker.preds,
                                  sizes=tracker.sizes)
    return {"cam_evolution": save_figure(figure, out / "cam_evolution.png"),
            "cam_evolution_gif": save_animation(frames, out / "cam_evolution.gif"),
            "cam_evolution_maps": tracker.save(out / "cam_evolution.npz")}


# ----------------------------------------------------------------------------- the notebooks' model to explain


SHIPPED_FALLBACK = "resnet18_w16_cifar10"


def torchvision_classifier(
    name: str = "resnet18",
    pretrained: bool = True,
    fallback: str = "shipped",
    epochs: int = 3,
    max_batches: int | None = None,
    input_size: int = 64,
    batch_size: int = 64,
    lr: float = 0.05,
    device: str | torch.device | None = None,
    progress: bool = True,
    seed: int = 0,
) -> Classifier:
    """A model to explain: a torchvision model with ImageNet weights if they download, else a trained CIFAR-10 one.

    With ``pretrained`` the ImageNet weights are tried first (preprocessing: ImageNet's, class
    names: ImageNet's). Without them, or when the download fails (no internet), ``fallback`` says
    what comes instead: ``"shipped"`` (default) the ResNet18 trained on all of CIFAR-10 that ships
    with eva_utils (``pretrained:resnet18_w16_cifar10``, 32x32 inputs, no training needed);
    ``"train"`` the architecture ``name`` with 10 outputs trained for ``epochs`` on the bundled
    CIFAR-10 sample with :func:`~eva_utils.training.fit`, at ``input_size`` (CIFAR's 32 pixels
    upsampled: torchvision's ImageNet models shrink the input 32x before their last stage, so
    32x32 would leave 1x1 maps), a barely trained model.

    Args:
        name: a torchvision classification model name.
        pretrained: try the ImageNet weights first.
        fallback: ``"shipped"`` or ``"train"``, see above.
        epochs: epochs of the fallback training.
        max_batches: batches per pass of the fallback training (smoke runs).
        input_size: side of the fallback's input.
        batch_size: the fallback's batch size.
        lr: the fallback's peak learning rate (one-cycle SGD).
        device: ``None`` picks CUDA when available.
        progress: progress bars during the fallback training.
        seed: seeds the fallback training.

    Returns:
        A :class:`Classifier`; its ``description`` says which way it was made, and why.
    """

    if fallback not in ("shipped", "train"):
        raise unknown_name("fallback", fallback, ("shipped", "train"))
    why = "ImageNet weights not requested"
    if pretrained:
        try:
            return load_model(name, weights="default", device=device)
        except WeightsDownloadError as exc:
            why = f"the ImageNet weights could not be downloaded ({exc.reason})"
    if fallback == "shipped":
        shipped = load_model(PRETRAINED_PREFIX + SHIPPED_FALLBACK, device=device)
        return shipped._replace(description=f"{shipped.description} (instead of torchvision {name}: {why})")
    if name.lower() not in torchvision_names():
        raise unknown_name("torchvision model", name, torchvision_names())
    set_seed(seed)
    model = load_model(name.lower(), weights="none", num_classes=10, device=device).model
    preset = cifar_preset(size=input_size)
    train_loader = data_lib.make_loader(data_lib.load_sample(True, preset), batch_size, shuffle=True, num_workers=0, seed=seed)
    test_loader = data_lib.make_loader(data_lib.load_sample(False, preset), 256, num_workers=0)
    optimizer = make_optimizer(model, "sgd", lr=lr, weight_decay=5e-4)
    steps = min(max_batches or len(train_loader), len(train_loader))
    schedule = "onecycle" if epochs * steps >= 4 else "none"  # one-cycle needs a few steps to warm up and decay
    scheduler = make_scheduler(optimizer, schedule, epochs=epochs, steps_per_epoch=steps, max_lr=lr)
    history = fit(model, train_loader, test_loader, epochs, optimizer, scheduler, device=device,
                  max_batches=max_batches, progress=progress, seed=seed)
    description = (f"torchvision {name} with random initial weights, trained for {epochs} epoch{'s' if epochs != 1 else ''} on the bundled "
                   f"CIFAR-10 sample at {input_size}x{input_size} (test accuracy {100 * history.test_acc[-1]:.1f}%): {why}")
    return Classifier(model.eval(), data_lib.CIFAR10_CLASSES, preset, description)


# ----------------------------------------------------------------------------- a notebook's run in Colab

DRIVE_ROOT = Path("/content/drive")
_CPU_MINUTES_PER_EPOCH_W64 = 22.7  # measured: one epoch of 50,000 images at width 64, 2-core AMD EPYC (README)


def in_colab() -> bool:
    """Whether this runs in a Google Colab kernel."""
    return "google.colab" in sys.modules


def run_folder(out: str | os.PathLike[str], drive: bool = False) -> Path:
    """Where a notebook's run goes: ``out``, or ``out`` on Google Drive when ``drive`` and in Colab.

    A Colab VM that is recycled wipes ``/content``, checkpoints included; a folder on Drive survives,
    so the next session can resume from it. Mounts Drive (Colab asks for permission once).

    Raises:
        UserError: ``drive`` outside Colab (there is no Drive to mount: keep ``DRIVE = False``).
    """
    if not drive:
        return Path(out)
    if not in_colab():
        raise UserError("DRIVE = True needs Google Colab (it keeps the run on Google Drive); elsewhere set DRIVE = False")
    from google.colab import drive as colab_drive  # only in Colab

    colab_drive.mount(str(DRIVE_ROOT))
    return DRIVE_ROOT / "MyDrive" / "eva_utils" / Path(out).relative_to(Path(out).anchor)


def for_this_machine(config: TrainConfig, allow_cpu: bool = False) -> TrainConfig:
    """``config`` where a GPU will run it; on a CPU, stop before hours of training, or scale it down.

    A full-width ResNet18 takes about 8 hours for 20 epochs on a 2-core CPU (22.7 minutes per epoch
    measured), so without a GPU a run wider than 16 is refused, unless ``allow_cpu``: then it is the
    same recipe at width 16 (the shipped model's: 20 epochs in about an hour, 84.7% on the bundled
    test images). Smoke runs (``max_batches`` set) pass as they are.

    Raises:
        UserError: no GPU and not ``allow_cpu``; the message says how to get one.
    """
    if config.max_batches is not None or config.width <= 16 or resolve_device(config.device).type == "cuda":
        return config
    if not allow_cpu:
        hours = config.epochs * _CPU_MINUTES_PER_EPOCH_W64 * (config.width / 64) ** 2 / 60
        raise UserError(f"no GPU: width {config.width} for {config.epochs} epochs would take about {hours:.0f} hours on a "
                        "2-core CPU. In Colab: Runtime > Change runtime type > GPU, then run all again; or set "
                        "ALLOW_CPU = True for ResNet18 at width 16 on the CPU (about an hour, 84.7% measured)")
    return replace(config, width=16, device="cpu")


def resume_point(out: str | os.PathLike[str], resume: bool) -> Path | None:
    """The checkpoint a notebook continues from: ``out/checkpoint.pt`` when ``resume`` and it exists."""
    checkpoint = Path(out) / "checkpoint.pt"
    return checkpoint if resume and checkpoint.is_file() else None
