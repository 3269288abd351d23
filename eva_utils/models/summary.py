"""Summarise a model: layer shapes and parameter counts with torchinfo, on whatever device the model is."""

from __future__ import annotations

import torch
from torch import nn

from eva_utils.core.devices import eval_mode

__all__ = ["summary"]


def summary(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 32, 32), verbose: int = 0) -> object:
    """Layer-by-layer output shapes and parameter counts (torchinfo), on the model's own device.

    torchsummary moves inputs to CUDA by default and fails on a CPU-only machine; torchinfo takes the device from
    the model, so the same call works in Colab and on a laptop.

    Args:
        model: any ``nn.Module``.
        input_size: a batch shape, e.g. ``(1, 3, 32, 32)``; ``(3, 32, 32)`` gets a batch of 1.
        verbose: 0 returns the statistics silently; 1 also prints them.

    Returns:
        torchinfo's ``ModelStatistics``; ``print()`` it for the table.
    """
    import torchinfo

    if len(input_size) == 3:
        input_size = (1, *input_size)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with eval_mode(model):  # torchinfo runs a forward pass; batch-norm statistics stay as they were
        return torchinfo.summary(model, input_size=input_size, device=device, verbose=verbose,
                                 col_names=("output_size", "num_params"), row_settings=("var_names",))
