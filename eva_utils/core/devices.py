"""Where and how a model runs: the device asked for (one rule for every command and the library), the device and float
type a model computes in, evaluation that puts every module's train/eval flag back, and exact float32 on a GPU."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from eva_utils.core.errors import UserError

__all__ = ["COMPUTE_DEVICES", "eval_mode", "exact_float32", "kept_modes", "model_device_dtype", "resolve_device"]

COMPUTE_DEVICES = ("cpu", "cuda")
"""Device types the package computes on (``meta`` is accepted where asked for, as a GPU's stand-in in tests)."""


def _available() -> str:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return "this machine has no GPU"
    return "this machine has 1 GPU: cuda:0" if count == 1 else f"this machine has {count} GPUs: cuda:0..cuda:{count - 1}"


def resolve_device(device: str | torch.device | None = None, *, allow: tuple[str, ...] = COMPUTE_DEVICES) -> torch.device:
    """``None`` or ``"auto"``: CUDA when present, else the CPU; otherwise the device named, checked.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, a ``torch.device`` or None.
        allow: the device types accepted; add ``"meta"`` for a stand-in device in tests.

    Raises:
        UserError: an unknown name, a type not in ``allow`` (mps, xla...), CUDA on a machine without a GPU, or
            ``cuda:N`` beyond the GPUs present; the message says which devices exist.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    choices = "auto, cpu, cuda or cuda:N"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UserError(f"unknown device {str(device)!r}: use {choices} ({_available()})", param="device") from exc
    if dev.type not in allow:
        raise UserError(f"device {str(device)!r} is not supported here: use {choices} ({_available()})",
                        param="device")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {str(device)!r} asked for but no GPU is available: use device='cpu' "
                        "(in Colab: Runtime > Change runtime type > GPU)", param="device")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"device {str(device)!r} does not exist: {_available()}", param="device")
    return dev


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where ``model`` computes and in which float type: of its first floating parameter or buffer (CPU, float32 if none)."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


@contextmanager
def kept_modes(model: nn.Module) -> Iterator[nn.Module]:
    """Whatever the block does to the model's train/eval flags, every module's own flag goes back after.

    Not ``model.train(was_training)``: that would also switch on a submodule frozen in eval mode (a frozen backbone's
    batch norm) inside a model in train mode.
    """
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` for the block, then every module's own flag back as it was (see :func:`kept_modes`)."""
    with kept_modes(model):
        model.eval()
        yield model


@contextmanager
def exact_float32() -> Iterator[None]:
    """Float32 convolutions and matmuls in full float32 on CUDA while inside: no TF32, which torch allows cuDNN by
    default (10-bit mantissa inputs; measured on an H200, it moves a ResNet's shallowest Grad-CAM map by up to 1.4e-3,
    against 5e-6 without). Both flags are put back on leaving, whatever happens; on the CPU nothing changes."""
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, benchmark=torch.backends.cudnn.benchmark,
                                        deterministic=torch.backends.cudnn.deterministic, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
