"""How a run computes: float32, or bfloat16/float16 autocast (with a GradScaler for float16), and NCHW or NHWC.

``fit`` decides the precision once (:func:`mixed_precision`) and hands the same :class:`Precision` to every
epoch; :func:`use_channels_last` says whether the model and its batches go NHWC.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from eva_utils.core.errors import UserError
from eva_utils.evaluation.metrics import model_device_dtype

__all__ = ["SKIPPED_STEP", "Precision", "amp_dtype", "is_channels_last", "mixed_precision", "model_device",
           "out_of_memory", "place", "to_device", "use_channels_last"]

SKIPPED_STEP = r"Detected call of `lr_scheduler.step\(\)` before `optimizer.step\(\)`"
"""torch's warning when fp16's GradScaler skipped an optimizer step on overflow and the schedule moved on anyway."""


@dataclass(frozen=True)
class Precision:
    """How a run computes: ``dtype`` None is float32; bfloat16/float16 is autocast to that type."""

    device_type: str
    dtype: torch.dtype | None = None

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of a forward pass (a no-op in float32)."""
        return torch.autocast(self.device_type, dtype=self.dtype) if self.dtype is not None else contextlib.nullcontext()

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

    ``amp=True``: on CUDA, native bf16 autocast, or fp16 autocast with a GradScaler (see ``amp_dtype``); float32 on
    the CPU, where autocast is slower. ``amp=torch.bfloat16`` or ``torch.float16``: that autocast on any device (how
    the CUDA path is exercised on a CPU-only machine). ``amp=False``: float32. A ``Precision`` is returned as is.
    """
    device = torch.device(device)
    if isinstance(amp, Precision):
        return amp
    if isinstance(amp, torch.dtype):
        if amp not in (torch.bfloat16, torch.float16):
            raise UserError(f"mixed precision runs in bfloat16 or float16, not {amp}", param="amp")
        return Precision(device.type, amp)
    if amp and device.type == "cuda":
        return Precision(device.type, amp_dtype(device))
    return Precision(device.type)


def use_channels_last(device: torch.device, channels_last: bool | str) -> bool:
    """NHWC on CUDA when ``channels_last`` is true; ``"always"`` also on the CPU (to test the CUDA path there)."""
    return channels_last == "always" or (bool(channels_last) and torch.device(device).type == "cuda")


def to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device, channels_last: bool,
              dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch on ``device``: images (N, C, H, W) in ``dtype`` (default: kept) and NHWC memory when ``channels_last``."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    images = images.to(device, dtype, non_blocking=True, memory_format=memory_format)
    return images, labels.to(device, non_blocking=True)


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's parameters."""
    return model_device_dtype(model)[0]


def is_channels_last(model: nn.Module) -> bool:
    """Whether every 4-d weight of ``model`` is NHWC already."""
    weights = [p for p in model.parameters() if p.dim() == 4]
    return bool(weights) and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)


def place(model: nn.Module, device: torch.device, channels_last: bool | str) -> None:
    """The model on ``device``, NHWC when ``channels_last`` says so; cuDNN picks its fastest kernels on CUDA."""
    model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed 32x32 shapes: let cuDNN pick its fastest kernels once
    if use_channels_last(device, channels_last):
        model.to(memory_format=torch.channels_last)


def out_of_memory(device: torch.device, batch_size: int | None, epoch: int, checkpoint: object) -> UserError:
    """What to do when the device ran out of memory in epoch ``epoch + 1``; ``checkpoint`` holds the last whole epoch."""
    if device.type == "cuda":
        torch.cuda.empty_cache()  # what this run's dead tensors held goes back, for the next try in this process
    kept = f"; {checkpoint} still holds epoch {epoch}" if checkpoint is not None else ""
    return UserError(f"{device} ran out of memory in epoch {epoch + 1} at batch size {batch_size}: lower "
                     f"batch_size (halve it, and the learning rate with it, to keep the recipe){kept}", param="batch_size")
