"""Training engine in the torchvision-references style.

``train_one_epoch`` and ``evaluate`` set their own train/eval mode and return numbers; ``fit`` runs epochs, steps the
scheduler, keeps a :class:`History`, writes a checkpoint after every epoch and resumes from one exactly.

Multi-exit models (a list or tuple of logits, shallowest first) train on the mean of the per-exit losses; accuracy is
the last exit's, and per-exit test accuracy is kept in ``History.test_exit_acc``.

Example::

    model = get_model("resnet18")
    optimizer = make_optimizer(model, "sgd", lr=0.4, weight_decay=5e-4)
    scheduler = make_scheduler(optimizer, "onecycle", epochs=20, steps_per_epoch=len(train_loader))
    history = fit(model, train_loader, test_loader, epochs=20, optimizer=optimizer, scheduler=scheduler)
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from eva_utils.core.devices import resolve_device
from eva_utils.core.errors import UserError
from eva_utils.core.interrupts import stop_if_interrupted
from eva_utils.evaluation.metrics import exit_logits, model_device_dtype
from eva_utils.training import distributed
from eva_utils.training.checkpoint import keep_resumed, resume_from, save_checkpoint
from eva_utils.training.history import Callback, EpochEndFunction, EpochStats, History, batch_callback
from eva_utils.training.optim import check_positive, seed_epoch, steps_per_batch
from eva_utils.training.precision import (
    SKIPPED_STEP,
    Precision,
    mixed_precision,
    model_device,
    out_of_memory,
    place,
    to_device,
    use_channels_last,
)

__all__ = ["TrainingDivergedError", "evaluate", "fit", "multi_exit_loss", "train_one_epoch"]

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


def multi_exit_loss(criterion: Criterion, outputs: torch.Tensor | Sequence[torch.Tensor],
                    labels: torch.Tensor) -> torch.Tensor:
    """``criterion`` for one output; the mean over exits for a list of outputs (MSD-Net's loss)."""
    outs = exit_logits(outputs)
    if len(outs) == 1:
        return criterion(outs[0], labels)
    return torch.stack([criterion(o, labels) for o in outs]).mean()


def _refuse_old_order(name: str, value: object, types: tuple[type, ...], param: str) -> None:
    """A call in eva_utils 0.1.0's positional order (``value`` of ``types`` where ``param`` goes): say so."""
    if isinstance(value, types):
        raise UserError(f"{name} got a {type(value).__name__} as {param}: that is eva_utils 0.1.0's argument order; "
                        f"pass {name}(model, loader, criterion, ...) and the rest by name (eva_utils.{name} still "
                        "takes the old order, with a DeprecationWarning)", param=param)


def train_one_epoch(model: nn.Module, train_loader: DataLoader, criterion: Criterion, optimizer: torch.optim.Optimizer,
                    *, device: str | torch.device | None = None, epoch: int = 0,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                    scaler: torch.amp.GradScaler | None = None, amp: bool | torch.dtype | Precision = True,
                    channels_last: bool | str = True, max_batches: int | None = None, progress: bool = True,
                    on_batch_end: Callable[[int, float, float], None] | None = None,
                    group: distributed.Group | None = None) -> EpochStats:
    """Train for one pass over ``train_loader``.

    Args:
        model: put into train mode here.
        train_loader: yields ``(images, labels)``.
        criterion: e.g. ``nn.CrossEntropyLoss(label_smoothing=0.1)``.
        optimizer: steps once per batch.
        device: where the model lives (default: the model's own device).
        epoch: 0-based, for the progress bar and error messages.
        scheduler: stepped after every batch (pass it only for per-batch schedules such as OneCycleLR).
        scaler: the run's GradScaler, needed for float16 autocast (``fit`` makes one per run).
        amp: autocast on CUDA; a dtype forces it anywhere; or ``fit``'s Precision (see ``mixed_precision``).
        channels_last: NHWC memory format on CUDA (ignored on the CPU); ``"always"`` also on the CPU.
        max_batches: stop early, for smoke runs.
        progress: show a tqdm bar with running loss and accuracy.
        on_batch_end: called with (batch index in this epoch, loss, lr) after every step.
        group: under torchrun, the process group whose sums make the epoch's numbers (``fit`` passes it).

    Returns:
        Mean loss and accuracy over the samples seen, and the learning rate at the end.

    Raises:
        TrainingDivergedError: the loss is NaN or infinite; names the epoch and batch.
        UserError: float16 autocast without a scaler, or an empty loader.
    """
    from tqdm.auto import tqdm

    _refuse_old_order("train_one_epoch", criterion, (torch.optim.Optimizer,), "criterion")
    device = torch.device(device) if device is not None else model_device(model)
    precision = mixed_precision(device, amp)
    if scaler is None and precision.needs_scaler:
        raise UserError("float16 autocast needs the run's GradScaler: pass scaler=torch.amp.GradScaler(...) "
                        "(fit makes one), or use bfloat16", param="scaler")
    model.train()
    cl = use_channels_last(device, channels_last)
    total = max_batches if max_batches is not None else len(train_loader)
    # an iterator, not the loader: tqdm.auto's bar would iter() the loader twice (a second, discarded pass of workers)
    bar = tqdm(iter(train_loader), total=total, desc=f"epoch {epoch + 1} train", disable=not progress, leave=False)
    loss_sum, correct, seen, lr = 0.0, 0, 0, None
    # fp16: GradScaler skips a step on overflow, the schedule keeps its pace; torch's warning about it is held back
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=SKIPPED_STEP)
        for batch, (images, labels) in enumerate(bar):
            stop_if_interrupted()  # a Ctrl-C that Python swallowed (in a loader's __del__) stops the run here
            if max_batches is not None and batch >= max_batches:
                break
            images, labels = to_device(images, labels, device, cl)  # (N, C, H, W), (N,)
            with precision.autocast():
                outputs = model(images)
                loss = multi_exit_loss(criterion, outputs, labels)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise TrainingDivergedError(
                    f"loss is {loss_value} at epoch {epoch + 1}, batch {batch + 1}: training stopped. Lower the learning "
                    "rate, or turn mixed precision off (amp=False) if it only happens with mixed precision")
            lr = _step(loss, optimizer, scaler)  # the rate this batch used (before the scheduler moves on)
            if scheduler is not None:
                scheduler.step()
            if on_batch_end is not None:
                on_batch_end(batch, loss_value, lr)
            loss_sum += loss_value * labels.size(0)
            correct += (exit_logits(outputs)[-1].argmax(1) == labels).sum().item()
            seen += labels.size(0)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{100 * correct / seen:.2f}%")
    bar.close()
    loss_sum, correct, seen = distributed.sum_across([loss_sum, correct, seen], group).tolist()  # all processes' images
    if seen == 0:
        raise UserError("the training loader yielded no batches: is the data set empty?", param="train_loader")
    return EpochStats(loss_sum / seen, correct / seen, lr=lr)


def _step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> float:
    """Backward and one optimizer step (through ``scaler`` when there is one); returns the rate the step used."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return optimizer.param_groups[0]["lr"]


@torch.inference_mode()
def evaluate(model: nn.Module, test_loader: DataLoader, criterion: Criterion | None = None, *,
             device: str | torch.device | None = None, amp: bool | torch.dtype | Precision = True,
             channels_last: bool | str = True, tta: bool = False, max_batches: int | None = None, progress: bool = False,
             group: distributed.Group | None = None) -> EpochStats:
    """Loss and accuracy over ``test_loader`` in eval mode; the loss is the mean over samples, not over batches.

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
        group: under torchrun, the process group whose shards make the whole test set (``fit`` passes it).

    Returns:
        Mean loss, accuracy of the last exit, and per-exit accuracy for multi-exit models.
    """
    from tqdm.auto import tqdm

    _refuse_old_order("evaluate", criterion, (str, torch.device), "criterion")
    criterion = criterion or nn.CrossEntropyLoss()
    device = torch.device(device) if device is not None else model_device(model)
    precision = mixed_precision(device, amp)
    cl = use_channels_last(device, channels_last)
    dtype = model_device_dtype(model)[1]
    model.eval()
    loss_sum, seen = 0.0, 0
    exit_correct: torch.Tensor | None = None
    bar = tqdm(iter(test_loader), total=len(test_loader), desc="test", disable=not progress, leave=False)  # see above
    for batch, (images, labels) in enumerate(bar):
        stop_if_interrupted()
        if max_batches is not None and batch >= max_batches:
            break
        images, labels = to_device(images, labels, device, cl, dtype)  # a float16/bfloat16 model: its own dtype
        with precision.autocast():
            outs = [o.float() for o in exit_logits(model(images))]
            if tta:
                flipped = exit_logits(model(torch.flip(images, dims=[3])))
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
        raise UserError("the test loader yielded no batches: is the data set empty?", param="test_loader")
    exit_acc = (exit_correct.double() / seen).tolist()
    return EpochStats(loss_sum / seen, exit_acc[-1], exit_acc if len(exit_acc) > 1 else [])


@dataclass
class _Run:
    """What the epochs of one ``fit`` share."""

    model: nn.Module
    trained: nn.Module  # the model, or its DDP wrapper under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    criterion: Criterion
    precision: Precision  # decided once for the run
    scaler: torch.amp.GradScaler  # one for the run (disabled unless float16): its scale carries across epochs
    device: torch.device
    group: distributed.Group | None
    channels_last: bool | str
    max_batches: int | None
    progress: bool
    seed: int
    callbacks: list[Callback]
    steps: int  # training batches per epoch (before sharding)


def _epoch(run: _Run, epoch: int, train_loader: DataLoader, test_loader: DataLoader,
           history: History) -> tuple[EpochStats, EpochStats]:
    """Train one epoch (0-based ``epoch``), step a per-epoch schedule, evaluate, and record both in ``history``."""
    seed_epoch(run.seed, epoch, train_loader, 0 if run.group is None else run.group.rank)
    t0 = time.perf_counter()
    per_batch = steps_per_batch(run.scheduler)
    train = train_one_epoch(
        run.trained, train_loader, run.criterion, run.optimizer, device=run.device, epoch=epoch,
        scheduler=run.scheduler if per_batch else None, scaler=run.scaler, amp=run.precision,
        channels_last=run.channels_last, max_batches=run.max_batches, progress=run.progress,
        on_batch_end=batch_callback(run.callbacks, epoch * run.steps), group=run.group,
    )
    if run.scheduler is not None and not per_batch:
        run.scheduler.step()
    distributed.broadcast_buffers(run.model, run.group)  # every process evaluates the model rank 0 checkpoints
    test = evaluate(run.model, test_loader, run.criterion, device=run.device, amp=run.precision,
                    channels_last=run.channels_last, max_batches=run.max_batches, group=run.group)
    history.append(epoch + 1, train, test, time.perf_counter() - t0)
    return train, test


def fit(model: nn.Module, train_loader: DataLoader, test_loader: DataLoader, epochs: int, optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, *, criterion: Criterion | None = None,
        device: str | torch.device | None = None, amp: bool | torch.dtype = True, channels_last: bool | str = True,
        seed: int = 0, checkpoint_path: str | os.PathLike | None = None, resume: str | os.PathLike | None = None,
        config: dict[str, Any] | None = None, max_batches: int | None = None, progress: bool = True,
        on_epoch_end: Callable[[int, History], None] | None = None, callbacks: Sequence[Callback] = (),
        sync_batchnorm: bool = False) -> History:
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
        amp: mixed precision on CUDA (bf16 where supported, else fp16 with a GradScaler); a dtype forces it anywhere.
        channels_last: NHWC on CUDA; ``"always"`` also on the CPU.
        seed: with the same seed, a run interrupted and resumed repeats the uninterrupted one (CPU).
        checkpoint_path: written atomically after every epoch.
        resume: a checkpoint to continue from (model, optimizer, scheduler, scaler, history).
        config: stored in the checkpoint, e.g. the command line's settings.
        max_batches: per pass, for smoke runs.
        progress: tqdm bars and a one-line summary per epoch.
        on_epoch_end: called with (epoch, history) after each epoch's checkpoint.
        callbacks: :class:`Callback` objects, called in order after ``on_epoch_end`` (e.g. a ``CamTracker``).
        sync_batchnorm: under torchrun, BatchNorm statistics over the global batch (``SyncBatchNorm``).

    Under ``torchrun`` (see :mod:`eva_utils.distributed`) the same call trains one model on every process: the loaders
    sharded, gradients averaged by DDP, metrics summed, and rank 0 alone prints, checkpoints and calls back.

    Returns:
        The history, including epochs loaded from ``resume``.
    """
    from tqdm.auto import tqdm

    check_positive("epochs", epochs)
    group = distributed.join(device)  # None in a single process
    device = group.device if group is not None else resolve_device(device)
    main = group is None or group.is_main
    callbacks = ([EpochEndFunction(on_epoch_end)] if on_epoch_end is not None else []) + list(callbacks) if main else []
    place(model, device, channels_last)
    precision = mixed_precision(device, amp)  # decided once for the run
    run = _Run(model, model, optimizer, scheduler, criterion or nn.CrossEntropyLoss(), precision,
               precision.new_scaler(), device, group, channels_last, max_batches, progress and main, seed, callbacks,
               min(max_batches, len(train_loader)) if max_batches is not None else len(train_loader))
    history, start = History(), 0
    if resume is not None:
        history, start = resume_from(resume, model, optimizer, scheduler, run.scaler, device)
        if start >= epochs and main:
            tqdm.write(f"checkpoint {resume} already holds {start} epochs (asked for {epochs}); nothing to do")
    # after resuming: DDP starts from rank 0's weights
    run.trained, train_loader, test_loader = distributed.distribute(model, train_loader, test_loader, group, seed,
                                                                    sync_batchnorm)
    for epoch in range(start, int(epochs)):
        try:
            train, test = _epoch(run, epoch, train_loader, test_loader, history)
        except torch.OutOfMemoryError as exc:
            raise out_of_memory(device, train_loader.batch_size, epoch, checkpoint_path if start < epoch else None) from exc
        if run.progress:
            tqdm.write(f"epoch {history.epoch[-1]:>3}/{epochs}  lr {train.lr:.4g}  train loss {train.loss:.4f} acc "
                       f"{100 * train.acc:.2f}%  test loss {test.loss:.4f} acc {100 * test.acc:.2f}%  "
                       f"({history.seconds[-1]:.1f}s)")
        if checkpoint_path is not None and main:
            save_checkpoint(checkpoint_path, model, optimizer, scheduler, run.scaler, history, epoch + 1, config)
        for callback in callbacks:
            callback.on_epoch_end(epoch + 1, history)
    if main and resume is not None and checkpoint_path is not None:
        keep_resumed(resume, checkpoint_path)
    return history
