"""The custom ResNet of David Page's "How to train your ResNet" (DAWNBench, 2018), as the course assigns it.

    prep    Conv 3x3 (w) + BN + ReLU                                          32x32
    layer1  Conv 3x3 (2w) + MaxPool 2 + BN + ReLU, plus a residual block      16x16
            (two Conv 3x3-BN-ReLU at 2w) added back
    layer2  Conv 3x3 (4w) + MaxPool 2 + BN + ReLU                              8x8
    layer3  as layer1 at 8w                                                    4x4
    pool    MaxPool 4 (global max pool: any input size)
    fc      Linear (8w -> classes, with bias)

Convolutions have no bias (BatchNorm follows each). At ``width=64`` (64-128-256-512 channels) it has
6,573,130 parameters, the count the course's repositories print. Grad-CAM explains its four stage outputs
(``prep`` .. ``layer3``; maps 32, 16, 8 and 4 pixels wide at 32x32): :func:`eva_utils.resnet_layers`
returns them, as it returns a ResNet18's ``layer0`` .. ``layer4``.

Page trains it 24 epochs (batch 512, one cycle peaking at epoch 5, flip + pad-crop + 8x8 cutout) to 94%;
the recipe is :meth:`eva_utils.TrainConfig.page24`. Reference: https://myrtle.ai/learn/how-to-train-your-resnet/
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from eva_utils.core.checks import positive_int
from eva_utils.models.resnet import MAX_WIDTH

__all__ = ["CUSTOM_RESNET_STAGES", "ConvBlock", "CustomResNet", "ResidualLayer", "custom_resnet"]

#: The stage outputs Grad-CAM explains, shallow to deep.
CUSTOM_RESNET_STAGES: tuple[str, ...] = ("prep", "layer1", "layer2", "layer3")


class ConvBlock(nn.Sequential):
    """Conv 3x3 (no bias), an optional 2x2 max pool, BatchNorm, ReLU: ``conv, [pool], bn, relu``."""

    def __init__(self, in_channels: int, out_channels: int, pool: bool = False) -> None:
        parts: list[tuple[str, nn.Module]] = [("conv", nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False))]
        if pool:
            parts.append(("pool", nn.MaxPool2d(2)))
        parts += [("bn", nn.BatchNorm2d(out_channels)), ("relu", nn.ReLU())]
        super().__init__(OrderedDict(parts))


class ResidualLayer(nn.Module):
    """``x = block(x)`` (conv, pool, BN, ReLU), then ``x + res(x)`` where ``res`` is two ConvBlocks (if any)."""

    def __init__(self, in_channels: int, out_channels: int, residual: bool) -> None:
        super().__init__()
        self.block = ConvBlock(in_channels, out_channels, pool=True)
        self.res = nn.Sequential(ConvBlock(out_channels, out_channels), ConvBlock(out_channels, out_channels)) \
            if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(x)
        return x if self.res is None else x + self.res(x)


class CustomResNet(nn.Module):
    """Page's 9-layer ResNet; ``width`` is the prep layer's channels (64 in the paper, 16 ~16x cheaper).

    Args:
        num_classes: outputs of ``fc``.
        width: channels of ``prep``; the layers have 2x, 4x and 8x.
    """

    def __init__(self, num_classes: int = 10, width: int = 64) -> None:
        super().__init__()
        positive_int(num_classes, "num_classes")
        if not isinstance(width, int) or not 1 <= width <= MAX_WIDTH:
            raise ValueError(f"width must be 1..{MAX_WIDTH}, got {width}")
        self.prep = ConvBlock(3, width)
        self.layer1 = ResidualLayer(width, 2 * width, residual=True)
        self.layer2 = ResidualLayer(2 * width, 4 * width, residual=False)
        self.layer3 = ResidualLayer(4 * width, 8 * width, residual=True)
        self.pool = nn.AdaptiveMaxPool2d(1)  # == MaxPool2d(4) at 32x32
        self.fc = nn.Linear(8 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.prep(x))))  # (N, 8w, H/8, W/8)
        return self.fc(torch.flatten(self.pool(x), 1))  # (N, num_classes)


def custom_resnet(num_classes: int = 10, width: int = 64) -> CustomResNet:
    """Page's custom ResNet for 32x32 inputs: 6,573,130 parameters at the default width."""
    return CustomResNet(num_classes=num_classes, width=width)
