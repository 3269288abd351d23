"""ResNet18/34 for CIFAR-10 in the kuangliu/pytorch-cifar layout.

Layer names follow kuangliu (``conv1, bn1, layer1..layer4, linear``) so that checkpoints and Grad-CAM recipes
written for that repository (``model.layer4[-1]``) work unchanged. Differences from ImageNet ResNets: a 3x3 stride-1
stem and no max-pool, so a 32x32 input reaches ``layer4`` at 4x4.

``width`` scales every stage (64 by default, as in the paper); ``width=16`` gives a model about 16x cheaper.

Reference: He et al., "Deep Residual Learning for Image Recognition", 2015;
https://github.com/kuangliu/pytorch-cifar/blob/master/models/resnet.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eva_utils.core.checks import positive_int

__all__ = ["BasicBlock", "ResNet", "resnet18", "resnet34"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet: stem, four residual stages, global average pool, linear head.

    Args:
        num_blocks: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet18.
        num_classes: size of the output layer.
        width: channels of the first stage; later stages use 2x, 4x, 8x.
    """

    def __init__(self, num_blocks: tuple[int, int, int, int], num_classes: int = 10, width: int = 64) -> None:
        super().__init__()
        positive_int(num_classes, "num_classes")  # a UserError, which is a ValueError
        if not 1 <= width <= MAX_WIDTH:
            raise ValueError(f"width must be 1..{MAX_WIDTH}, got {width}")
        self.in_planes = width
        self.conv1 = nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        # The stem's own ReLU module: Grad-CAM hooks it as "layer0". No parameters, no state-dict keys.
        self.relu = nn.ReLU()
        self.layer1 = self._make_layer(width, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(2 * width, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(4 * width, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(8 * width, num_blocks[3], stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)  # == F.avg_pool2d(out, 4) at 32x32, works at any size
        self.linear = nn.Linear(8 * width * BasicBlock.expansion, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes * BasicBlock.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # (N, w, H, W)
        out = self.layer1(out)  # (N, w, H, W)
        out = self.layer2(out)  # (N, 2w, H/2, W/2)
        out = self.layer3(out)  # (N, 4w, H/4, W/4)
        out = self.layer4(out)  # (N, 8w, H/8, W/8)
        out = torch.flatten(self.pool(out), 1)  # (N, 8w)
        return self.linear(out)  # (N, num_classes)


MAX_WIDTH = 4096  # beyond this a ResNet18 holds billions of parameters: a typo or a crafted file, not a model


def resnet18(num_classes: int = 10, width: int = 64) -> ResNet:
    """ResNet18 for 32x32 inputs: 11,173,962 parameters at the default width."""
    return ResNet((2, 2, 2, 2), num_classes=num_classes, width=width)


def resnet34(num_classes: int = 10, width: int = 64) -> ResNet:
    """ResNet34 for 32x32 inputs: 21,282,122 parameters at the default width."""
    return ResNet((3, 4, 6, 3), num_classes=num_classes, width=width)
