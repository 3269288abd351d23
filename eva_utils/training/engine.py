"""Training engine in the torchvision-references style.

``train_one_epoch`` and ``evaluate`` set their own train/eval mode and return numbers;
``fit`` runs epochs, steps the scheduler, keeps a :class:`History`, writes a checkpoint
after every epoch and resumes from one exactly. ``make_optimizer``, ``make_scheduler``
and ``find_lr`` build the rest of a recipe.

Multi-exit models (a list or tuple of logits, shallowest first) train on the mean of
the per-exit losses; accuracy is the last exit's, and per-exit test accuracy is kept in
``History.test_exit_acc``.

Example::

    model = get_model("resnet18")
    optimizer = make_optimizer(model, "sgd", lr=0.4, weight_decay=5e-4)
    scheduler = make_scheduler(optimizer, "onecycle", epochs=20, steps_per_epoch=len(train_loader))
    history = fit(model, train_loader, test_loader, epochs=20, optimizer=optimizer, scheduler=scheduler)
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from eva_utils.core.devices import kept_modes, resolve_device
from eva_utils.core.errors import CheckpointError, UserError, unknown_name
from eva_utils.core.files import atomic_write_text
from eva_utils.evaluation.metrics import model_device_dtype
from eva_utils.plots.figures import plot_lr_finder
from eva_utils.training import distributed
from eva_utils.training.checkpoint import load_checkpoint, restore_training_state, save_checkpoint

__all__ = [
    "OPTIMIZERS",
    "SCHEDULERS",
    "EpochStats",
    "Precision",
    "History",
    "LRFinderResult",
    "TrainingDivergedError",
    "Callback",
    "amp_dtype",
    "evaluate",
    "find_lr",
    "fit",
    "make_optimizer",
    "make_scheduler",
    "mixed_precision",
    "multi_exit_loss",
    "resolve_device",
    "set_seed",
    "train_one_epoch",
]

OPTIMIZERS = ("sgd", "adam")
SCHEDULERS = ("onecycle", "step", "cosine", "none")


_SKIPPED_STEP = r"Detected call of `lr_scheduler.step\(\)` before `optimizer.step\(\)`"


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


# ---------------------------------------------------------------------------------------------
# Seeds, devices, small helpers
# ---------------------------------------------------------------------------------------------


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise UserError(f"{name} must be a positive number, got {value!r}")


def _as_list(outputs: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def multi_exit_loss(
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    outputs: torch.Tensor | Sequence[torch.Tensor],
    labels: torch.Tensor,
) -> torch.Tensor:
    """``criterion`` for one output; the mean over exits for a list of outputs (MSD-Net's loss)."""
    outs = _as_list(outputs)
    if len(outs) == 1:
        return criterion(outs[0], labels)
    return torch.stack([criterion(o, labels) for o in outs]).mean()


@dataclass(frozen=True)
class Precision:
    """How a run computes: ``dtype`` None is float32; bfloat16/float16 is autocast to that type.

    ``fit`` decides it once (:func:`mixed_precision`) and hands it to every epoch.
    """

    device_type: str
    dtype: torch.dtype | None = None

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of a forward pass (a no-op in float32)."""
        return torch.autocast(self.device_type, dtype=self.dtype) if self.dtype is not None else nullcontext()

    @property
    def needs_scaler(self) -> bool:
        """float16 gradients underflow without loss scaling; bfloat16 and float32 ones do not."""
        return self.dtype == torch.float16

    def new_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler for this precision (enabled for float16 only)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.needs_scaler)


def amp_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on GPUs that run it natively (compute capability 8.0+: A100, L4, RTX 30xx...), else float16.

    Not ``torch.cuda.is_bf16_supported()``: it also says yes on a T4 (Colab's free GPU, capability 7.5),
    where bfloat16 is only emulated and several times slower than float16.
    """
    if torch.version.hip:
        return torch.bfloat16
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def mixed_precision(device: torch.device, amp: bool | torch.dtype | Precision) -> Precision:
    """The precision of a run.

    ``amp=True``: on CUDA, native bf16 autocast, or fp16 autocast with a GradScaler (see ``amp_dtype``);
    float32 on the CPU, where autocast is slower than float32. ``amp=torch.bfloat16`` or ``torch.float16``:
    that autocast on any device, with a GradScaler for float16; this is how the CUDA path is exercised
    on a CPU-only machine (same code, CPU kernels). ``amp=False``: float32. A ``Precision`` is returned as is.
    """
    device = torch.device(device)
    if isinstance(amp, Precision):
        return amp
    if isinstance(amp, torch.dtype):
        if amp not in (torch.bfloat16, torch.float16):
            raise UserError(f"mixed precision runs in bfloat16 or float16, not {amp}")
        return Precision(device.type, amp)
    if amp and device.type == "cuda":
        return Precision(device.type, amp_dtype(device))
    return Precision(device.type)


def _to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device, channels_last: bool,
               dtype: torch.dtype | None = None):
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    images = images.to(device, dtype, non_blocking=True, memory_format=memory_format)
    return images, labels.to(device, non_blocking=True)


def _use_channels_last(device: torch.device, channels_last: bool | str) -> bool:
    """NHWC on CUDA when ``channels_last`` is true; ``"always"`` also on the CPU (to test the CUDA path there)."""
    return channels_last == "always" or (bool(channels_last) and torch.device(device).type == "cuda")


def _model_device(model: nn.Module) -> torch.device:
    return model_device_dtype(model)[0]


def _is_channels_last(model: nn.Module) -> bool:
    weights = [p for p in model.parameters() if p.dim() == 4]
    return bool(weights) and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)


def _old_argument_order(name: str, old: tuple[str, ...], args: tuple, kwargs: dict) -> dict:
    """The keywords of a call in eva_utils 0.1.0's positional order, with a DeprecationWarning."""
    warnings.warn(f"{name}({', '.join(old[:len(args)])}) is the order of eva_utils 0.1.0; "
                  f"pass {name}(model, loader, criterion, ...) and the rest by name", DeprecationWarning, stacklevel=3)
    return {**dict(zip(old, args, strict=False)), **kwargs}


# ---------------------------------------------------------------------------------------------
# One epoch of training, one pass of evaluation
# ---------------------------------------------------------------------------------------------


@dataclass
class EpochStats:
    """Sample-weighted means over one pass."""

    loss: float
    acc: float
    exit_acc: list[float] = field(default_factory=list)
    lr: float = float("nan")


_TRAIN_ONE_EPOCH_0_1 = ("model", "criterion", "optimizer", "train_loader", "device", "epoch", "scheduler", "scaler",
                        "amp", "channels_last", "max_batches", "progress")


def train_one_epoch(*args: Any, **kwargs: Any) -> EpochStats:
    """Train for one pass over ``train_loader``: ``train_one_epoch(model, train_loader, criterion, optimizer, *, ...)``.

    Args:
        model: put into train mode here.
        train_loader: yields ``(images, labels)``.
        criterion: e.g. ``nn.CrossEntropyLoss(label_smoothing=0.1)``.
        optimizer: steps once per batch.
        device: where the model lives (default: the model's own device).
        epoch: 0-based, for the progress bar and error messages.
        scheduler: stepped after every batch (pass it only for per-batch schedules such as OneCycleLR).
        scaler: the run's GradScaler, needed for float16 autocast (``fit`` makes one per run).
        amp: autocast on CUDA (ignored on the CPU); a dtype forces it anywhere; or ``fit``'s Precision
            (see ``mixed_precision``).
        channels_last: NHWC memory format on CUDA (ignored on the CPU); ``"always"`` also on the CPU.
        max_batches: stop early, for smoke runs.
        progress: show a tqdm bar with running loss and accuracy.
        on_batch_end: called with (batch index in this epoch, loss, lr) after every step.

    Returns:
        Mean loss and accuracy over the samples seen, and the learning rate at the end.

    Raises:
        TrainingDivergedError: the loss is NaN or infinite; names the epoch and batch.
        UserError: float16 autocast without a scaler, or an empty loader.
    """
    if len(args) >= 3 and isinstance(args[2], torch.optim.Optimizer):  # (model, criterion, optimizer, loader, ...)
        kwargs = _old_argument_order("train_one_epoch", _TRAIN_ONE_EPOCH_0_1, args, kwargs)
        args = ()
    return _train_one_epoch(*args, **kwargs)


def _train_one_epoch(
    model: nn.Module,
    train_loader: DataLoader,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    *,
    device: str | torch.device | None = None,
    epoch: int = 0,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    amp: bool | torch.dtype | Precision = True,
    channels_last: bool | str = True,
    max_batches: int | None = None,
    progress: bool = True,
    on_batch_end: Callable[[int, float, float], None] | None = None,
    group: distributed.Group | None = None,
) -> EpochStats:
    from tqdm.auto import tqdm

    device = torch.device(device) if device is not None else _model_device(model)
    precision = mixed_precision(device, amp)
    if scaler is None and precision.needs_scaler:
        raise UserError("float16 autocast needs the run's GradScaler: pass scaler=torch.amp.GradScaler(...) "
                        "(fit makes one), or use bfloat16")
    model.train()
    cl = _use_channels_last(device, channels_last)
    total = max_batches if max_batches is not None else len(train_loader)
    bar = tqdm(train_loader, total=total, desc=f"epoch {epoch + 1} train", disable=not progress, leave=False)
    loss_sum, correct, seen = 0.0, 0, 0
    # fp16: GradScaler skips the optimizer's step on overflow and the schedule keeps its pace anyway; torch
    # would warn that the scheduler stepped first. One filter for the epoch, not one per batch.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SKIPPED_STEP)
        for batch, (images, labels) in enumerate(bar):
            if max_batches is not None and batch >= max_batches:
                break
            images, labels = _to_device(images, labels, device, cl)  # (N, C, H, W), (N,)
            with precision.autocast():
                outputs = model(images)
                loss = multi_exit_loss(criterion, outputs, labels)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise TrainingDivergedError(
                    f"loss is {loss_value} at epoch {epoch + 1}, batch {batch + 1}: training stopped. "
                    "Lower the learning rate, or turn AMP off (--no-amp) if it only happens with mixed precision"
                )
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            lr = optimizer.param_groups[0]["lr"]  # the rate this batch used (before the scheduler moves on)
            if scheduler is not None:
                scheduler.step()
            if on_batch_end is not None:
                on_batch_end(batch, loss_value, lr)
            n = labels.size(0)
            loss_sum += loss_value * n
            correct += (_as_list(outputs)[-1].argmax(1) == labels).sum().item()
            seen += n
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{100 * correct / seen:.2f}%")
    bar.close()
    loss_sum, correct, seen = distributed.sum_across([loss_sum, correct, seen], group).tolist()  # all processes' images
    if seen == 0:
        raise UserError("the training loader yielded no batches: is the data set empty?")
    return EpochStats(loss_sum / seen, correct / seen, lr=lr)


_EVALUATE_0_1 = ("model", "test_loader", "device", "criterion", "amp", "channels_last", "tta", "max_batches", "progress")


def evaluate(*args: Any, **kwargs: Any) -> EpochStats:
    """Loss and accuracy over ``test_loader`` in eval mode: ``evaluate(model, test_loader, criterion=None, *, ...)``.

    The loss is the mean over samples (each batch weighted by its size), not a sum or an
    unweighted mean of batch means, so the last, smaller batch counts for what it holds.

    Args:
        model: put into eval mode here.
        test_loader: yields ``(images, labels)``.
        criterion: a mean-reduced loss; default plain cross-entropy.
        device: where the model lives (default: the model's own device).
        amp: autocast on CUDA; a dtype forces it anywhere; or ``fit``'s Precision (see ``mixed_precision``).
        channels_last: NHWC memory format on CUDA; ``"always"`` also on the CPU.
        tta: average the logits of each image and its horizontal flip.
        max_batches: stop early, for smoke runs.
        progress: show a tqdm bar.

    Returns:
        Mean loss, accuracy of the last exit, and per-exit accuracy for multi-exit models.
    """
    if len(args) >= 3 and isinstance(args[2], (str, torch.device)):  # (model, loader, device, criterion, ...)
        kwargs = _old_argument_order("evaluate", _EVALUATE_0_1, args, kwargs)
        args = ()
    return _evaluate(*args, **kwargs)


@torch.inference_mode()
def _evaluate(
    model: nn.Module,
    test_loader: DataLoader,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    *,
    device: str | torch.device | None = None,
    amp: bool | torch.dtype | Precision = True,
    channels_last: bool | str = True,
    tta: bool = False,
    max_batches: int | None = None,
    progress: bool = False,
    group: distributed.Group | None = None,
) -> EpochStats:
    from tqdm.auto import tqdm

    criterion = criterion or nn.CrossEntropyLoss()
    device = torch.device(device) if device is not None else _model_device(model)
    precision = mixed_precision(device, amp)
    cl = _use_channels_last(device, channels_last)
    dtype = model_device_dtype(model)[1]
    model.eval()
    loss_sum, seen = 0.0, 0
    exit_correct: torch.Tensor | None = None
    for batch, (images, labels) in enumerate(tqdm(test_loader, desc="test", disable=not progress, leave=False)):
        if max_batches is not None and batch >= max_batches:
            break
        images, labels = _to_device(images, labels, device, cl, dtype)  # a float16/bfloat16 model: its own dtype
        with precision.autocast():
            outs = [o.float() for o in _as_list(model(images))]
            if tta:
                flipped = _as_list(model(torch.flip(images, dims=[3])))
                outs = [(o + f.float()) / 2 for o, f in zip(outs, flipped, strict=True)]
        n = labels.size(0)
        loss_sum += multi_exit_loss(criterion, outs, labels).item() * n
        hits = torch.stack([(o.argmax(1) == labels).sum() for o in outs]).cpu()  # (exits,)
        exit_correct = hits if exit_correct is None else exit_correct + hits
        seen += n
    if group is not None:  # every process's shard: each test image counted once
        if exit_correct is None:  # a shard can be empty (fewer images than processes); the exits' count comes from the rest
            raise UserError(f"the test set has fewer images than processes ({group.world_size}): use fewer processes")
        totals = distributed.sum_across([loss_sum, seen, *exit_correct.tolist()], group)
        loss_sum, seen, exit_correct = float(totals[0]), int(totals[1]), totals[2:]
    if seen == 0:
        raise UserError("the test loader yielded no batches: is the data set empty?")
    exit_acc = (exit_correct.double() / seen).tolist()
    return EpochStats(loss_sum / seen, exit_acc[-1], exit_acc if len(exit_acc) > 1 else [])


# ---------------------------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------------------------


@dataclass
class History:
    """Per-epoch numbers of a run; ``history.save(path)`` / ``History.load(path)`` use JSON."""

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    test_exit_acc: list[list[float]] = field(default_factory=list)

    def append(self, epoch: int, train: EpochStats, test: EpochStats, seconds: float) -> None:
        """Record one epoch (1-based ``epoch``)."""
        self.epoch.append(epoch)
        self.train_loss.append(train.loss)
        self.train_acc.append(train.acc)
        self.test_loss.append(test.loss)
        self.test_acc.append(test.acc)
        self.lr.append(train.lr)
        self.seconds.append(seconds)
        if test.exit_acc:
            self.test_exit_acc.append(list(test.exit_acc))

    def __len__(self) -> int:
        return len(self.epoch)

    def to_dict(self) -> dict[str, list]:
        """Plain lists, JSON-ready."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise UserError(f"not a History: unexpected keys {sorted(unknown)}")
        return cls(**{k: list(v) for k, v in data.items()})

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON atomically; returns the path."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> History:
        """Read a history written by :meth:`save`."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"cannot read history {path}: {exc}") from exc


class Callback:
    """What :func:`fit` calls during a run; subclass it and override what you need (both are no-ops here).

    ``on_batch_end(step, loss, lr)``: after every optimizer step; ``step`` counts batches from the start of
    the run (resumed runs continue the count), ``lr`` is the rate that batch used. ``on_epoch_end(epoch,
    history)``: after each epoch's checkpoint, ``epoch`` 1-based. ``eva_utils.tracking`` has two: the maps
    of fixed images per epoch (``CamTracker``) and TensorBoard logs (``TensorBoardLogger``).
    """

    def on_batch_end(self, step: int, loss: float, lr: float) -> None:
        """Called after every training batch."""

    def on_epoch_end(self, epoch: int, history: History) -> None:
        """Called after every epoch, once its checkpoint is written."""


# ---------------------------------------------------------------------------------------------
# Optimizers and schedulers
# ---------------------------------------------------------------------------------------------


def make_optimizer(
    model: nn.Module,
    name: str = "sgd",
    lr: float = 0.4,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 5e-4,
) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or Adam over the trainable parameters.

    Raises:
        UserError: unknown name (lists the valid ones) or ``lr <= 0``.
    """
    _positive("lr", lr)
    params = [p for p in model.parameters() if p.requires_grad]
    key = name.lower()
    if key == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0, weight_decay=weight_decay)
    if key == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise unknown_name("optimizer", name, OPTIMIZERS)


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str = "onecycle",
    epochs: int = 20,
    steps_per_epoch: int = 1,
    max_lr: float | None = None,
    pct_start: float = 0.25,
    step_size: int = 6,
    gamma: float = 0.1,
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A learning-rate schedule by name.

    ``onecycle`` (stepped per batch): linear warm-up over ``pct_start`` of training to
    ``max_lr`` (default: the optimizer's lr), then linear decay to ~0. ``step`` (per epoch):
    multiply by ``gamma`` every ``step_size`` epochs. ``cosine`` (per epoch): cosine decay to 0.
    ``none``: constant.

    Raises:
        UserError: unknown name (lists the valid ones), or epochs / steps not positive.
    """
    _positive("epochs", epochs)
    _positive("steps_per_epoch", steps_per_epoch)
    key = name.lower().replace("-", "").replace("_", "")
    sched = torch.optim.lr_scheduler
    if key == "onecycle":
        peak = max_lr if max_lr is not None else optimizer.param_groups[0]["lr"]
        _positive("max_lr", peak)
        total = int(epochs) * int(steps_per_epoch)
        if total < 4:
            raise UserError(f"onecycle needs at least 4 steps in all, got {total}: train longer or use another scheduler")
        # each phase needs 2 or more steps (OneCycleLR divides by the phase length minus one)
        pct_start = min(max(pct_start, 2 / total), 1 - 2 / total)
        return sched.OneCycleLR(
            optimizer,
            max_lr=peak,
            epochs=int(epochs),
            steps_per_epoch=int(steps_per_epoch),
            pct_start=pct_start,
            anneal_strategy="linear",
            div_factor=25.0,
            final_div_factor=1e4,
            three_phase=False,
        )
    if key in ("step", "steplr"):
        return sched.StepLR(optimizer, step_size=step_size, gamma=gamma)
    if key in ("cosine", "cos"):
        return sched.CosineAnnealingLR(optimizer, T_max=int(epochs))
    if key == "none":
        return None
    raise unknown_name("scheduler", name, SCHEDULERS)


def _steps_per_batch(scheduler: object) -> bool:
    return isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR)


# ---------------------------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------------------------


def _seed_epoch(seed: int, epoch: int, train_loader: DataLoader, rank: int = 0) -> None:
    """Make epoch ``epoch``'s randomness a function of (seed, epoch) alone, so a resumed run repeats it.

    Under torchrun each process's augmentations get their own stream (``rank``); the model's randomness is shared.
    """
    set_seed(seed * 1000 + epoch)
    if getattr(train_loader, "generator", None) is not None:
        train_loader.generator.manual_seed(seed * 1000 + epoch + 1_000_003 * rank)
    if hasattr(train_loader.sampler, "set_epoch"):  # a DistributedSampler: this epoch's permutation
        train_loader.sampler.set_epoch(epoch)


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    test_loader: DataLoader,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    *,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    device: str | torch.device | None = None,
    amp: bool | torch.dtype = True,
    channels_last: bool | str = True,
    seed: int = 0,
    checkpoint_path: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    config: dict[str, Any] | None = None,
    max_batches: int | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int, History], None] | None = None,
    callbacks: Sequence[Callback] = (),
    sync_batchnorm: bool = False,
) -> History:
    """Train for ``epochs`` epochs, evaluating after each, and return the :class:`History`.

    Args:
        model: moved to ``device`` (and to channels_last on CUDA when asked).
        train_loader: training batches; its ``generator`` (see ``make_loader``) is reseeded every epoch.
        test_loader: evaluation batches.
        epochs: total number of epochs, counting those already done when resuming.
        optimizer: e.g. from :func:`make_optimizer`.
        scheduler: OneCycleLR is stepped per batch, any other scheduler per epoch.
        criterion: training loss; default cross-entropy. The test loss uses the same one.
        device: ``None`` picks CUDA when available.
        amp: mixed precision on CUDA (bf16 where supported, else fp16 with a GradScaler); a dtype forces
            that autocast on any device, the CPU included (see ``mixed_precision``).
        channels_last: NHWC on CUDA; ``"always"`` also on the CPU.
        seed: with the same seed, a run interrupted and resumed repeats the uninterrupted one (CPU).
        checkpoint_path: written atomically after every epoch.
        resume: a checkpoint to continue from (model, optimizer, scheduler, scaler, history).
        config: stored in the checkpoint, e.g. the command line's settings.
        max_batches: per pass, for smoke runs.
        progress: tqdm bars and a one-line summary per epoch.
        on_epoch_end: called with (epoch, history) after each epoch's checkpoint.
        callbacks: :class:`Callback` objects, called in order after ``on_epoch_end`` (e.g. a
            ``tracking.CamTracker`` and then a ``tracking.TensorBoardLogger`` that logs its maps).
        sync_batchnorm: under torchrun, BatchNorm statistics over the global batch (``SyncBatchNorm``).

    Under ``torchrun`` (see :mod:`eva_utils.distributed`) the same call trains one model on every
    process: the loaders are sharded (the global batch kept), gradients averaged by DDP, metrics summed
    over all processes, and rank 0 alone prints, checkpoints (the unwrapped model) and calls back.

    Returns:
        The history, including epochs loaded from ``resume``.
    """
    from tqdm.auto import tqdm

    _positive("epochs", epochs)
    group = distributed.join(device)  # None in a single process
    device = group.device if group is not None else resolve_device(device)
    main = group is None or group.is_main
    progress = progress and main
    criterion = criterion or nn.CrossEntropyLoss()
    model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed 32x32 shapes: let cuDNN pick its fastest kernels once
    if _use_channels_last(device, channels_last):
        model.to(memory_format=torch.channels_last)
    precision = mixed_precision(device, amp)  # decided once for the run
    scaler = precision.new_scaler()  # one for the run (disabled unless float16): its scale carries across epochs
    history = History()
    start = 0
    if resume is not None:
        ckpt = load_checkpoint(resume, map_location=device)
        try:
            history = History.from_dict(restore_training_state(ckpt, model, optimizer, scheduler, scaler))
        except UserError as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"checkpoint {resume}: its history is damaged ({exc}); resume from an earlier copy "
                                  "or start a new run in another output folder") from exc
        start = int(ckpt["epoch"])
        if start >= epochs and main:
            tqdm.write(f"checkpoint {resume} already holds {start} epochs (asked for {epochs}); nothing to do")
    per_batch = _steps_per_batch(scheduler)
    steps = min(max_batches, len(train_loader)) if max_batches is not None else len(train_loader)
    trained = model
    if group is not None:
        trained = distributed.wrap(model, group, sync_batchnorm)  # after resuming: DDP starts from rank 0's weights
        train_loader = distributed.shard_train_loader(train_loader, group, seed)
        test_loader = distributed.shard_eval_loader(test_loader, group)
    callbacks = callbacks if main else ()
    for epoch in range(start, int(epochs)):
        _seed_epoch(seed, epoch, train_loader, 0 if group is None else group.rank)
        t0 = time.perf_counter()

        def batch_done(batch: int, loss: float, lr: float, first: int = epoch * steps) -> None:
            for callback in callbacks:
                callback.on_batch_end(first + batch + 1, loss, lr)

        train = _train_one_epoch(
            trained, train_loader, criterion, optimizer, device=device, epoch=epoch,
            scheduler=scheduler if per_batch else None, scaler=scaler, amp=precision,
            channels_last=channels_last, max_batches=max_batches, progress=progress,
            on_batch_end=batch_done if callbacks else None, group=group,
        )
        if scheduler is not None and not per_batch:
            scheduler.step()
        distributed.broadcast_buffers(model, group)  # every process evaluates the model rank 0 checkpoints
        test = _evaluate(model, test_loader, criterion, device=device, amp=precision, channels_last=channels_last,
                         max_batches=max_batches, group=group)
        history.append(epoch + 1, train, test, time.perf_counter() - t0)
        if progress:
            tqdm.write(
                f"epoch {epoch + 1:>3}/{epochs}  lr {train.lr:.4g}  train loss {train.loss:.4f} acc {100 * train.acc:.2f}%"
                f"  test loss {test.loss:.4f} acc {100 * test.acc:.2f}%  ({history.seconds[-1]:.1f}s)"
            )
        if checkpoint_path is not None and main:
            save_checkpoint(checkpoint_path, model, optimizer, scheduler, scaler, history, epoch + 1, config)
        if on_epoch_end is not None and main:
            on_epoch_end(epoch + 1, history)
        for callback in callbacks:
            callback.on_epoch_end(epoch + 1, history)
    if main and resume is not None and checkpoint_path is not None and not Path(checkpoint_path).exists():
        Path(checkpoint_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(resume, checkpoint_path)  # resumed into a new folder with nothing left to train: it holds the run
    return history


# ---------------------------------------------------------------------------------------------
# Learning-rate range test
# ---------------------------------------------------------------------------------------------


class LRFinderResult(NamedTuple):
    """What :func:`find_lr` found: the steepest-descent LR, the curve and its plot."""

    suggested_lr: float
    lrs: list[float]
    losses: list[float]
    figure: Any


def find_lr(
    model: nn.Module,
    train_loader: DataLoader,
    optimizer: torch.optim.Optimizer | None = None,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    device: str | torch.device | None = None,
    start_lr: float = 1e-6,
    end_lr: float = 10.0,
    num_iter: int = 100,
    skip_start: int = 10,
    skip_end: int = 5,
    amp: bool | torch.dtype = True,
    channels_last: bool | str = True,
) -> LRFinderResult:
    """Leslie Smith's LR range test with torch-lr-finder; the model and optimizer are restored after.

    The test runs in the precision and memory format ``fit`` trains in (same ``amp`` and
    ``channels_last`` rules), so its losses are those training will see.

    Args:
        model: trained for ``num_iter`` batches with an exponentially rising LR, then restored.
        train_loader: batches for the test (cycled when shorter than ``num_iter``).
        optimizer: default SGD with momentum 0.9, Nesterov, weight decay 5e-4.
        criterion: default cross-entropy (mean over exits for multi-exit models).
        device: default the model's own device.
        start_lr: first LR tried.
        end_lr: last LR tried.
        num_iter: batches in the test.
        skip_start: points dropped at the start before choosing the suggestion.
        skip_end: points dropped at the end.
        amp: as for :func:`fit`: mixed precision on CUDA, a dtype forces it anywhere.
        channels_last: as for :func:`fit`; the model's memory format is put back after.

    Returns:
        The suggested LR (steepest loss descent), the LRs and smoothed losses, and a Figure.
    """
    from torch_lr_finder import LRFinder, TrainDataLoaderIter

    class _ChannelsLast(TrainDataLoaderIter):  # NHWC batches, as fit feeds them
        def inputs_labels_from_batch(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
            inputs, labels = super().inputs_labels_from_batch(batch)
            return inputs.contiguous(memory_format=torch.channels_last), labels

    _positive("start_lr", start_lr)
    _positive("end_lr", end_lr)
    if num_iter < skip_start + skip_end + 2:
        raise UserError(f"num_iter must be at least skip_start + skip_end + 2 = {skip_start + skip_end + 2}, got {num_iter}")
    base = criterion or nn.CrossEntropyLoss()
    optimizer = optimizer or make_optimizer(model, "sgd", lr=start_lr)
    dev = resolve_device(device) if device is not None else _model_device(model)
    precision = mixed_precision(dev, amp)
    to_nhwc = _use_channels_last(dev, channels_last) and not _is_channels_last(model)
    if to_nhwc:
        model.to(memory_format=torch.channels_last)
    autocast = {} if precision.dtype is None else {
        "amp_backend": "torch", "amp_config": {"device_type": dev.type, "dtype": precision.dtype},
        "grad_scaler": precision.new_scaler(),
    }
    finder = LRFinder(model, optimizer, lambda out, y: multi_exit_loss(base, out, y), device=dev, **autocast)
    said = io.StringIO()  # torch-lr-finder prints "See the graph with {finder_name}.plot()": not our API
    try:
        with kept_modes(model), contextlib.redirect_stdout(said), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_SKIPPED_STEP)  # fp16: a skipped step on overflow, as in training
            batches = _ChannelsLast(train_loader) if _use_channels_last(dev, channels_last) else train_loader
            finder.range_test(batches, start_lr=start_lr, end_lr=end_lr, num_iter=num_iter)
    finally:
        for line in said.getvalue().splitlines():
            if "finder_name" not in line:
                warnings.warn(line, RuntimeWarning, stacklevel=2)  # e.g. "Stopping early, the loss has diverged"
        finder.reset()  # model and optimizer back to their states before the test
        if to_nhwc:
            model.to(memory_format=torch.contiguous_format)
    lrs, losses = finder.history["lr"], finder.history["loss"]
    end = len(lrs) - skip_end if skip_end else len(lrs)
    xs, ys = lrs[skip_start:end], losses[skip_start:end]
    if len(xs) < 2:
        raise UserError(f"the LR test stopped after {len(lrs)} batches (the loss diverged): lower end_lr")
    best = int(np.gradient(np.asarray(ys)).argmin())
    return LRFinderResult(float(xs[best]), list(lrs), list(losses), plot_lr_finder(xs, ys, best))
