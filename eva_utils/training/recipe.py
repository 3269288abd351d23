"""The default recipe for ResNet18 on CIFAR-10, and the core of a training run.

``TrainConfig()`` holds every setting with its default; :func:`setup_run` builds the data, model, optimizer and
schedule, :func:`train_run` trains with :func:`~eva_utils.training.fit` (``apps.runs.run_training`` does both).

The default aims at 94% in 20 epochs on one GPU (not measured by this project, see the README): fast CIFAR-10
training (Page, "How to train your ResNet", 2018; Jordan, airbench, 2024) reaches 94% in 24 epochs with a smaller
ResNet, batch 512, one cycle peaking at lr 0.4, Nesterov momentum 0.9, weight decay 5e-4, label smoothing and
flip + crop + cutout; the course's submission (SGD lr 0.01, StepLR, batch 64) reached 88.95% in 20 epochs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.data import DataLoader

import eva_utils.data as data_lib
from eva_utils.core.checks import positive_int
from eva_utils.core.devices import resolve_device
from eva_utils.core.errors import DataNotFoundError, UserError, unknown_name
from eva_utils.core.files import claim_output_folder
from eva_utils.data.batch_transforms import NO_AUGMENTATION, BatchTransform
from eva_utils.data.presets import AUGMENTATIONS, test_transforms, train_transforms
from eva_utils.models import MODELS, get_model, model_key
from eva_utils.models.resnet import MAX_WIDTH
from eva_utils.training import distributed
from eva_utils.training.engine import fit
from eva_utils.training.history import Callback, History
from eva_utils.training.lr_finder import LRFinderResult, find_lr
from eva_utils.training.optim import OPTIMIZERS, SCHEDULERS, make_optimizer, make_scheduler, set_seed

__all__ = [
    "AUGMENT_ON", "RECIPES", "RUN_FILES", "RunSetup", "TrainConfig", "TrainResult", "build_loaders", "check_output_folder",
    "find_peak_lr", "resolve_augment_on", "setup_run", "train_run",
]

AUGMENT_ON = ("auto", "device", "cpu")
"""Where the training images are augmented: ``device`` (``data.DeviceLoader``: batched tensor operations on the
model's device), ``cpu`` (the albumentations preset in loader workers), ``auto`` (device on CUDA, cpu elsewhere)."""


@dataclass
class TrainConfig:
    """Every setting of a training run. Defaults: the 20-epoch ResNet18 recipe."""

    model: str = "resnet18"  # resnet18 | resnet34 | custom_resnet | msdnet
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
    augmentation: str = "default"  # which of data.presets.AUGMENTATIONS: default | page (flip, pad-crop, cutout 8x8)
    augment_on: str = "auto"  # auto (device on CUDA, cpu elsewhere) | device (tensor ops on the GPU) | cpu (albumentations)
    lr_find: bool = False  # run the LR range test first and take its suggestion as the (peak) lr
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
        settings: dict[str, Any] = dict(width=16, data="sample", download=False, epochs=12, batch_size=64, lr=0.05,
                                        label_smoothing=0.0, device="cpu", num_workers=0, out="eva_demo", track_cams=4)
        return cls(**{**settings, **overrides})

    @classmethod
    def page24(cls, **overrides: Any) -> TrainConfig:
        """David Page's recipe for his custom ResNet: 24 epochs, batch 512, one cycle peaking at epoch 5 (no
        annihilation), SGD Nesterov lr 0.4, weight decay 5e-4, flip + pad-crop + 8x8 cutout, no label smoothing.
        Page: 94% in 24 epochs on a V100; the course's target is 90%. ``lr_find=True`` takes the LR test's peak."""
        settings: dict[str, Any] = dict(model="custom_resnet", width=64, epochs=24, batch_size=512, optimizer="sgd",
                                        lr=0.4, scheduler="onecycle", pct_start=5 / 24, label_smoothing=0.0,
                                        augmentation="page", out="runs/custom_resnet", track_layers=("layer2", "layer3"))
        return cls(**{**settings, **overrides})

    def validate(self) -> None:
        """Raise :class:`UserError` for a setting that cannot work, saying which and why."""
        if model_key(self.model) not in MODELS:
            raise unknown_name("model", self.model, MODELS)
        if self.data not in data_lib.DATASETS and not data_lib.is_npz_path(self.data):
            raise data_lib.unknown_dataset(self.data)
        if self.augmentation not in AUGMENTATIONS:
            raise unknown_name("augmentation", self.augmentation, AUGMENTATIONS)
        if self.augment_on not in AUGMENT_ON:
            raise UserError(f"{unknown_name('augment_on', self.augment_on, AUGMENT_ON)} (device: the model's own, "
                            "a GPU included)", param="augment_on")
        if self.optimizer.lower() not in OPTIMIZERS:
            raise unknown_name("optimizer", self.optimizer, OPTIMIZERS)
        if self.scheduler.lower() not in SCHEDULERS:
            raise unknown_name("scheduler", self.scheduler, SCHEDULERS)
        if self.lr_find and self.scheduler.lower() != "onecycle":
            raise UserError(f"lr_find picks the peak of a one-cycle schedule, and scheduler={self.scheduler!r} has no "
                            "peak: use scheduler='onecycle', or give lr instead", param="lr_find")
        if isinstance(self.width, int) and self.width > MAX_WIDTH:
            raise UserError(f"width must be at most {MAX_WIDTH} (64 is ResNet18's own), got {self.width}")
        for name in ("epochs", "batch_size", "width", "num_classes", "max_batches"):
            value = getattr(self, name)
            if value is not None or name not in ("num_classes", "max_batches"):  # those two may be None
                positive_int(value, name)
        if not (isinstance(self.weight_decay, (int, float)) and math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise UserError(f"weight_decay must be a number >= 0, got {self.weight_decay!r}")
        if self.num_workers is not None and (not isinstance(self.num_workers, int) or self.num_workers < 0):
            raise UserError(f"workers must be 0 (load in the main process) or more, got {self.num_workers!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise UserError(f"seed must be a whole number from 0 to {2**32 - 1}, got {self.seed!r}")
        resolve_device(self.device)  # meta, mps, a missing GPU: refused with the devices that exist
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UserError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if isinstance(self.track_cams, bool) or not isinstance(self.track_cams, int) or self.track_cams < 0:
            raise UserError(f"track_cams must be 0 (off) or a number of test images, got {self.track_cams!r}")
        if self.track_cams and self.model.lower() == "msdnet":
            raise UserError("track_cams follows the ResNets' stages (layer0..layer4); for MSD-Net's exits use "
                            "eva-utils msd on the trained checkpoint", param="track_cams")
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
    test_loader: DataLoader
    train_set: data_lib.ArrayDataset
    files: dict[str, Path] = {}  # what was written: checkpoint, history, curves (and cam_evolution, its gif, tensorboard)


def resolve_augment_on(augment_on: str, device: torch.device) -> str:
    """Where ``augment_on`` augments on ``device``: ``"device"`` or ``"cpu"`` (``"auto"``: the device on CUDA)."""
    if augment_on != "auto":
        return augment_on
    return "device" if torch.device(device).type == "cuda" else "cpu"


def build_loaders(config: TrainConfig, device: torch.device) -> tuple[DataLoader, DataLoader]:
    """Train and test loaders for ``config``: train augmented and shuffled, test in order, both where
    ``config.augment_on`` says (``DeviceLoader`` on the device, or albumentations in CPU workers)."""
    train_tf = train_transforms(**AUGMENTATIONS[config.augmentation]) if config.augment else test_transforms()
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
    batch, test_batch, seed = config.batch_size, max(config.batch_size, 256), config.seed
    drop_last = len(train_set) > batch
    if resolve_augment_on(config.augment_on, device) == "device":  # the test images normalised on the device as well
        settings = AUGMENTATIONS[config.augmentation] if config.augment else NO_AUGMENTATION
        return (data_lib.DeviceLoader(train_set, batch, BatchTransform(**settings), device, shuffle=True,
                                      drop_last=drop_last, seed=seed),
                data_lib.DeviceLoader(test_set, test_batch, BatchTransform(**NO_AUGMENTATION), device, shuffle=False,
                                      drop_last=False, seed=seed))
    return (data_lib.make_loader(train_set, batch, shuffle=True, num_workers=config.num_workers, seed=seed,
                                 device=device, drop_last=drop_last),
            data_lib.make_loader(test_set, test_batch, shuffle=False, num_workers=config.num_workers, seed=seed,
                                 device=device))


RECIPES: dict[str, Callable[..., TrainConfig]] = {"default": TrainConfig, "page24": TrainConfig.page24}
"""Named recipes: a name -> the function that makes its TrainConfig (settings given override it)."""

RUN_FILES = ("checkpoint.pt", "history.json", "curves.png")


def check_output_folder(out: Path, resume: str | os.PathLike | None, overwrite: bool) -> None:
    """Refuse an output folder that would lose another run, or that cannot be written, before any training.

    A run writes into ``out`` only when it holds no run, when ``resume`` is a checkpoint in ``out`` itself (the run
    continues there), or with ``overwrite`` (the guard is :func:`eva_utils.core.files.claim_output_folder`).

    Raises:
        UserError: ``out`` holds another run, is a file, or is not writable; the message says what to do.
    """
    if resume is not None and not Path(resume).is_file():
        raise DataNotFoundError(f"checkpoint {resume} to resume from does not exist: check the path "
                                "(a run writes <out>/checkpoint.pt)", param="resume")
    if resume is None:
        kind, hint, own = "a run", "continue it with resume=<out>/checkpoint.pt, ", False
    else:
        own = Path(resume).resolve().parent == Path(out).resolve()
        kind = "another run"
        hint = (f"resuming {resume} there would overwrite it: resume into the checkpoint's own folder "
                f"(out={Path(resume).parent}) or into an empty out, or ")
    claim_output_folder(out, overwrite=overwrite or own, owned=RUN_FILES, kind=kind, hint=hint)


class RunSetup(NamedTuple):
    """What a run is built from before its first batch (:func:`setup_run`); :func:`train_run` trains it."""

    config: TrainConfig  # validated, num_classes filled in from the data
    out: Path
    group: distributed.Group | None  # under torchrun: this process's rank; None otherwise
    device: torch.device
    train_loader: DataLoader
    test_loader: DataLoader
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    steps_per_epoch: int
    lr_test: LRFinderResult | None = None  # the LR range test that chose the peak (``lr_find``)


def config_optimizer(config: TrainConfig, model: nn.Module, lr: float | None = None) -> torch.optim.Optimizer:
    """``config``'s optimizer over ``model``'s parameters, starting at ``lr`` (default ``config.lr``)."""
    return make_optimizer(model, config.optimizer, lr=config.lr if lr is None else lr, momentum=config.momentum,
                          nesterov=config.nesterov, weight_decay=config.weight_decay)


def config_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer,
                     steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """``config``'s learning-rate schedule (peak ``config.lr``) over ``config.epochs`` of ``steps_per_epoch`` steps."""
    return make_scheduler(optimizer, config.scheduler, epochs=config.epochs, steps_per_epoch=steps_per_epoch,
                          max_lr=config.lr, pct_start=config.pct_start, step_size=config.step_size, gamma=config.gamma)


def find_peak_lr(config: TrainConfig, model: nn.Module, train_loader: DataLoader,
                 device: torch.device) -> LRFinderResult:
    """The LR range test with ``config``'s optimizer, loss and precision; its suggestion (the steepest fall of
    the loss, below the loss's minimum) is the one cycle's peak. 100 batches, 20 for a ``max_batches`` run."""
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    return find_lr(model, train_loader, config_optimizer(config, model, 1e-6), criterion, device,
                   num_iter=100 if config.max_batches is None else 20, amp=config.amp, channels_last=config.channels_last)


def setup_run(config: TrainConfig, resume: str | os.PathLike | None = None, overwrite: bool = False) -> RunSetup:
    """Validate ``config``, claim its output folder, and build the loaders, model, optimizer and schedule of its run.

    Raises:
        UserError: bad settings, or an output folder holding a run that would be overwritten.
    """
    config.validate()
    out = Path(config.out)
    group = distributed.join(config.device)  # under torchrun: this process's rank; None otherwise
    if group is not None:
        distributed.per_process_batch(config.batch_size, group.world_size)  # refused before any data is read
    device = group.device if group is not None else resolve_device(config.device)
    check_output_folder(out, resume, overwrite)
    distributed.barrier(group)  # every process has checked the folder before rank 0 writes into it
    set_seed(config.seed)
    train_loader, test_loader = build_loaders(config, device)
    if config.num_classes is None:  # follows the data; stored in the checkpoint as a number
        config = replace(config, num_classes=len(train_loader.dataset.classes))
    model = get_model(config.model, config.num_classes, config.width)
    lr_test = None
    if config.lr_find and resume is None:  # on resume the checkpoint's schedule goes on
        if group is not None:
            raise UserError("lr_find runs on one process: find the lr in a run without torchrun, then pass it as lr",
                            param="lr_find")
        lr_test = find_peak_lr(config, model, train_loader, device)
        config = replace(config, lr=lr_test.suggested_lr)
    optimizer = config_optimizer(config, model)
    steps = min(config.max_batches or len(train_loader), len(train_loader))
    scheduler = config_scheduler(config, optimizer, steps)
    return RunSetup(config, out, group, device, train_loader, test_loader, model, optimizer, scheduler, steps, lr_test)


def train_run(setup: RunSetup, resume: str | os.PathLike | None = None, callbacks: Sequence[Callback] = ()) -> TrainResult:
    """Train what :func:`setup_run` built with :func:`~eva_utils.training.fit`: ``checkpoint.pt`` and ``history.json``
    after every epoch (rank 0 writes; the run's figures are ``eva_utils.apps.runs``'s).

    Args:
        setup: what :func:`setup_run` built.
        resume: a checkpoint to continue from (often ``<out>/checkpoint.pt``).
        callbacks: called by ``fit`` after every batch and epoch (e.g. a CamTracker).

    Returns:
        The trained model, its history, the output folder, the test loader and the files written.
    """
    config, out = setup.config, setup.out
    checkpoint_path = out / "checkpoint.pt"

    def save_progress(epoch: int, history: History) -> None:
        history.save(out / "history.json")

    history = fit(
        setup.model, setup.train_loader, setup.test_loader, config.epochs, setup.optimizer, setup.scheduler,
        criterion=nn.CrossEntropyLoss(label_smoothing=config.label_smoothing), device=setup.device, amp=config.amp,
        channels_last=config.channels_last, seed=config.seed, checkpoint_path=checkpoint_path, resume=resume,
        config=config.to_dict(), max_batches=config.max_batches, progress=config.progress, on_epoch_end=save_progress,
        callbacks=callbacks, sync_batchnorm=config.sync_bn,
    )
    result = TrainResult(setup.model, history, out, setup.test_loader, setup.train_loader.dataset, {})
    if setup.group is not None and not setup.group.is_main:  # rank 0 writes the run's files
        return result
    return result._replace(files={"checkpoint": checkpoint_path, "history": history.save(out / "history.json")})
