"""Leslie Smith's learning-rate range test (torch-lr-finder), in the precision and memory format ``fit`` trains in.

:func:`find_lr` returns numbers (:class:`LRFinderResult`); ``eva_utils.plots.plot_lr_finder(result)`` draws them.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from eva_utils.core.devices import kept_modes, resolve_device
from eva_utils.core.errors import UserError
from eva_utils.training.engine import multi_exit_loss
from eva_utils.training.optim import check_positive, make_optimizer
from eva_utils.training.precision import (
    SKIPPED_STEP,
    Precision,
    is_channels_last,
    mixed_precision,
    model_device,
    use_channels_last,
)

__all__ = ["LRFinderResult", "find_lr"]


class LRFinderResult(NamedTuple):
    """What :func:`find_lr` found: the steepest-descent LR and the curve it was chosen from.

    ``eva_utils.plots.plot_lr_finder(result)`` draws it. (0.1.0's ``result.figure`` still works, with a
    DeprecationWarning, through ``eva_utils._compat``.)
    """

    suggested_lr: float
    lrs: list[float]  # every rate tried
    losses: list[float]  # the smoothed loss at each
    skip_start: int = 0  # points left out at the start when choosing the suggestion
    skip_end: int = 0  # ... and at the end

    def window(self) -> tuple[list[float], list[float], int]:
        """The rates and losses the suggestion was chosen from (the skipped ends left out), and its index there."""
        end = len(self.lrs) - self.skip_end
        xs, ys = self.lrs[self.skip_start:end], self.losses[self.skip_start:end]
        return xs, ys, xs.index(self.suggested_lr)


def find_lr(model: nn.Module, train_loader: DataLoader, optimizer: torch.optim.Optimizer | None = None,
            criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
            device: str | torch.device | None = None, start_lr: float = 1e-6, end_lr: float = 10.0, num_iter: int = 100,
            skip_start: int = 10, skip_end: int = 5, amp: bool | torch.dtype = True,
            channels_last: bool | str = True) -> LRFinderResult:
    """Leslie Smith's LR range test with torch-lr-finder; the model and optimizer are restored after.

    The test runs in the precision and memory format ``fit`` trains in, so its losses are those training will see.

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
        The suggested LR (steepest loss descent), the LRs and smoothed losses, and the ends skipped.
    """
    check_positive("start_lr", start_lr)
    check_positive("end_lr", end_lr)
    if num_iter < skip_start + skip_end + 2:
        raise UserError(f"num_iter must be at least skip_start + skip_end + 2 = {skip_start + skip_end + 2}, "
                        f"got {num_iter}", param="num_iter")
    dev = resolve_device(device) if device is not None else model_device(model)
    lrs, losses = _range_test(model, train_loader, optimizer or make_optimizer(model, "sgd", lr=start_lr),
                              criterion or nn.CrossEntropyLoss(), dev, mixed_precision(dev, amp),
                              use_channels_last(dev, channels_last), (start_lr, end_lr, num_iter))
    end = len(lrs) - skip_end
    xs, ys = lrs[skip_start:end], losses[skip_start:end]
    if len(xs) < 2:
        raise UserError(f"the LR test stopped after {len(lrs)} batches (the loss diverged): lower end_lr", param="end_lr")
    best = int(np.gradient(np.asarray(ys)).argmin())
    return LRFinderResult(float(xs[best]), list(lrs), list(losses), skip_start, skip_end)


def _range_test(model: nn.Module, train_loader: DataLoader, optimizer: torch.optim.Optimizer,
                base: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], dev: torch.device, precision: Precision,
                nhwc: bool, span: tuple[float, float, int]) -> tuple[list[float], list[float]]:
    """torch-lr-finder's test over ``span`` (start_lr, end_lr, num_iter); model and optimizer restored after."""
    from torch_lr_finder import LRFinder, TrainDataLoaderIter

    class _ChannelsLast(TrainDataLoaderIter):  # NHWC batches, as fit feeds them
        def inputs_labels_from_batch(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
            inputs, labels = super().inputs_labels_from_batch(batch)
            return inputs.contiguous(memory_format=torch.channels_last), labels

    to_nhwc = nhwc and not is_channels_last(model)
    if to_nhwc:
        model.to(memory_format=torch.channels_last)
    autocast = {} if precision.dtype is None else {"amp_backend": "torch", "grad_scaler": precision.new_scaler(),
                                                   "amp_config": {"device_type": dev.type, "dtype": precision.dtype}}
    finder = LRFinder(model, optimizer, lambda out, y: multi_exit_loss(base, out, y), device=dev, **autocast)
    said = io.StringIO()  # torch-lr-finder prints "See the graph with {finder_name}.plot()": not our API
    try:
        with kept_modes(model), contextlib.redirect_stdout(said), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=SKIPPED_STEP)  # fp16: a skipped step on overflow, as in training
            batches = _ChannelsLast(train_loader) if nhwc else train_loader
            finder.range_test(batches, start_lr=span[0], end_lr=span[1], num_iter=span[2])
    finally:
        for line in said.getvalue().splitlines():
            if "finder_name" not in line:
                warnings.warn(line, RuntimeWarning, stacklevel=3)  # e.g. "Stopping early, the loss has diverged"
        finder.reset()  # model and optimizer back to their states before the test
        if to_nhwc:
            model.to(memory_format=torch.contiguous_format)
    return finder.history["lr"], finder.history["loss"]
