"""MSD-Net (Multi-Scale Dense Network) for CIFAR, in the MSDNet-GCN checkpoint layout.

MSD-Net is an anytime classifier: it keeps feature maps at several resolutions ("scales") side by side and grows
each of them DenseNet-style, so that coarse, class-level features exist early in the network. A classifier is
attached after every *block* of layers; each one reads the coarsest scale and gives a full prediction, so inference
can stop at any exit. Deeper layers drop the finest scales (they no longer feed any classifier) and 1x1 *transition*
convolutions halve the channel count where a scale is dropped.

CIFAR version: three scales (32x32, 16x16, 8x8 for a 32x32 input); the published CIFAR-10 model has 10 blocks
(4 layers in the first, 2 in each later one), 10 classifiers and 5,440,864 parameters.

Module and parameter names follow the public replication MSDNet-GCN (https://github.com/avirambh/MSDNet-GCN,
``models/msdnet.py`` and ``models/msdnet_layers.py``), so its checkpoints, e.g. ``anytime_cifar_10.pth.tar``, load
strictly with :func:`eva_utils.models.loading.load_msdnet_gcn_checkpoint`; the hyper-parameters are
:class:`~eva_utils.models.msdnet_config.MSDNetConfig`.

Inputs: the MSDNet-GCN weights were trained on ``transforms.ToTensor()`` images in [0, 1] with **no** mean/std
normalisation; feed them un-normalised tensors (``model.expects_normalized_input`` is ``False``).

Reference: Huang, Chen, Li, Wu, van der Maaten, Weinberger, "Multi-Scale Dense Networks for Resource Efficient
Image Classification", ICLR 2018, arXiv:1703.09844.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from eva_utils.core.devices import eval_mode
from eva_utils.core.errors import UserError
from eva_utils.models.msdnet_config import MSDNetConfig

__all__ = ["MSDNet", "msdnet"]

_CLASSIFIER_WIDTH = 128  # hidden channels of every CIFAR classifier head


def _conv_unit(in_channels: int, out_channels: int, stride: int, bottleneck_width: int | None) -> nn.Sequential:
    """[1x1 conv, BN, ReLU,] 3x3 conv, BN, ReLU, with MSDNet-GCN's names.

    ``stride`` 1 is ``Spatial_forward`` (same scale), 2 ``Spatial_down`` (from the finer scale);
    ``bottleneck_width`` is the 1x1 bottleneck's width as a multiple of ``out_channels`` (``None``: no bottleneck).
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    mid = in_channels
    if bottleneck_width is not None:
        mid = min(in_channels, bottleneck_width * out_channels)
        layers["Bottleneck_1x1"] = nn.Conv2d(in_channels, mid, kernel_size=1)
        layers["Bottleneck_BN"] = nn.BatchNorm2d(mid)
        layers["Bottleneck_ReLU"] = nn.ReLU()
    spatial = "Spatial_forward" if stride == 1 else "Spatial_down"
    layers[spatial] = nn.Conv2d(mid, out_channels, kernel_size=3, stride=stride, padding=1)
    layers["BN_out"] = nn.BatchNorm2d(out_channels)
    layers["ReLU_out"] = nn.ReLU()
    return nn.Sequential(layers)


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.Sequential:
    """conv (with bias), BN, ReLU as an index-named Sequential (keys ``0.*``, ``1.*``)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels), nn.ReLU())


class _Stem(nn.Module):
    """``MSD_first``: a 3x3 conv for the finest scale, then a strided 3x3 conv per coarser scale."""

    def __init__(self, config: MSDNetConfig) -> None:
        super().__init__()
        widths = [config.stem_channels * config.growth_factor[s] for s in range(config.num_scales)]
        in_widths = [config.image_channels, *widths[:-1]]
        self.subnets = nn.ModuleList(
            _conv_bn_relu(c_in, c_out, 3, stride=1 if s == 0 else 2)
            for s, (c_in, c_out) in enumerate(zip(in_widths, widths, strict=True))
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        # (N, 3, 32, 32) -> [(N, 32, 32, 32), (N, 64, 16, 16), (N, 128, 8, 8)] in the CIFAR config
        scales = []
        for scale_net in self.subnets:
            x = scale_net(x)
            scales.append(x)
        return scales


class _DenseScale(nn.Module):
    """One scale of an MSD layer (``_DynamicInputDenseBlock``): its input and the new features of 1 or 2 convs.

    With two convs the first is strided and reads the next finer scale, the second reads this scale.
    """

    def __init__(self, conv_modules: Sequence[nn.Module]) -> None:
        super().__init__()
        self.conv_modules = nn.ModuleList(conv_modules)

    def forward(self, identity: Tensor, inputs: Sequence[Tensor]) -> Tensor:
        # identity (N, C, H, W); each conv adds (N, g_i, H, W) -> (N, C + sum g_i, H, W)
        new = [conv(t) for conv, t in zip(self.conv_modules, inputs, strict=True)]
        return torch.cat([identity, *new], dim=1)


class _MSDLayer(nn.Module):
    """One MSD layer: maps ``in_scales`` feature maps to ``out_scales`` denser ones.

    Scale indices below are absolute (0 = finest). Output scale ``a`` is the input at ``a`` plus
    ``growth * growth_factor[a]`` new channels: from a stride-1 conv on scale ``a`` alone when ``a`` is the finest
    scale still computed (and was an input as the finest), otherwise half from a stride-2 conv on scale ``a - 1`` and
    half from a stride-1 conv on scale ``a``. When ``out_scales < in_scales`` the finest input scale is only read
    (by the strided conv) and not passed on.
    """

    def __init__(self, config: MSDNetConfig, channels: int, in_scales: int, out_scales: int) -> None:
        super().__init__()
        self.in_scales = in_scales
        self.out_scales = out_scales
        self.to_drop = in_scales - out_scales  # finest input scales not passed on (0 or 1)
        self.offset = config.num_scales - out_scales  # absolute index of the first output scale
        gf, bf = config.growth_factor, config.bottleneck_factor

        def width(a: int) -> int | None:
            return bf[a] if config.bottleneck else None

        subnets = []
        for s in range(out_scales):
            a = self.offset + s
            new_channels = config.growth * gf[a]
            if s == 0 and not self.to_drop:
                convs = [_conv_unit(channels * gf[a], new_channels, 1, width(a))]
            else:
                convs = [_conv_unit(channels * gf[a - 1], new_channels // 2, 2, width(a - 1)),
                         _conv_unit(channels * gf[a], new_channels // 2, 1, width(a))]
            subnets.append(_DenseScale(convs))
        self.subnets = nn.ModuleList(subnets)

    def forward(self, x: Sequence[Tensor]) -> list[Tensor]:
        # x: in_scales maps, finest first -> out_scales maps (the coarsest out_scales resolutions)
        outputs = []
        for s, scale_net in enumerate(self.subnets):
            i = self.to_drop + s  # this scale's position in x
            outputs.append(scale_net(x[i], [x[i]] if s == 0 and not self.to_drop else [x[i - 1], x[i]]))
        return outputs


class _Transition(nn.Module):
    """``Transition``: 1x1 conv + BN + ReLU per scale, shrinking channels by ``reduction``."""

    def __init__(self, config: MSDNetConfig, channels_in: int, channels_out: int, out_scales: int) -> None:
        super().__init__()
        offset = config.num_scales - out_scales
        gf = config.growth_factor
        self.scales = nn.ModuleList(
            _conv_bn_relu(channels_in * gf[offset + s], channels_out * gf[offset + s], 1, stride=1)
            for s in range(out_scales)
        )

    def forward(self, x: Sequence[Tensor]) -> list[Tensor]:
        # per scale (N, C_in, H, W) -> (N, C_out, H, W)
        return [scale_net(t) for scale_net, t in zip(self.scales, x, strict=True)]


class _CifarClassifier(nn.Module):
    """Exit head: two stride-2 3x3 convs (128 channels) with BN/ReLU, average pool, linear."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, _CLASSIFIER_WIDTH, kernel_size=3, stride=2, padding=1),
            nn.BatchNorm2d(_CLASSIFIER_WIDTH),
            nn.ReLU(),
            nn.Conv2d(_CLASSIFIER_WIDTH, _CLASSIFIER_WIDTH, kernel_size=3, stride=2, padding=1),
            nn.BatchNorm2d(_CLASSIFIER_WIDTH),
            nn.ReLU(),
            # MSDNet-GCN uses AvgPool2d(2) on the 2x2 map of a 32x32 input: the same numbers
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(_CLASSIFIER_WIDTH, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, 8, 8) -> (N, 128, 4, 4) -> (N, 128, 2, 2) -> (N, 128, 1, 1) -> (N, num_classes)
        return self.classifier(torch.flatten(self.features(x), 1))


class MSDNet(nn.Module):
    """Multi-Scale Dense Network with one classifier per block (MSDNet-GCN layout).

    ``subnets`` holds the ``blocks`` blocks followed by their ``blocks`` classifiers; classifier ``k`` reads the
    coarsest scale of block ``k``'s output.

    Args:
        config: the hyper-parameters; the published CIFAR-10 model by default.
    """

    #: True if the weights expect mean/std-normalised inputs; MSDNet-GCN's were trained on ``ToTensor()`` images.
    expects_normalized_input: bool = False

    def __init__(self, config: MSDNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or MSDNetConfig.cifar10()
        blocks: list[nn.Module] = []
        classifiers: list[nn.Module] = []
        channels = config.stem_channels  # in units of the finest scale, as in MSDNet-GCN
        layer = 0
        for b, count in enumerate(config.layers_per_block):
            block: OrderedDict[str, nn.Module] = OrderedDict()
            if b == 0:
                block["MSD_first"] = _Stem(config)
            for _ in range(count):
                layer += 1
                in_scales, out_scales = config.layer_scales[layer - 1]
                block[f"MSD_layer_{layer}"] = _MSDLayer(config, channels, in_scales, out_scales)
                channels += config.growth
                if config.transition_after(layer):
                    reduced = math.floor(channels * config.reduction)
                    block["Transition"] = _Transition(config, channels, reduced, out_scales)
                    channels = reduced
            blocks.append(nn.Sequential(block))
            coarsest = channels * config.growth_factor[config.num_scales - 1]
            classifiers.append(_CifarClassifier(coarsest, config.num_classes))
        self.subnets = nn.ModuleList(blocks + classifiers)
        # Parameter-free taps whose output is each classifier's input (the coarsest scale of block k's output): hook
        # these for Grad-CAM. They add no state-dict keys.
        self.exit_features = nn.ModuleList(nn.Identity() for _ in range(config.blocks))
        self._init_weights()

    def _init_weights(self) -> None:
        # What MSDNet-GCN's init_weights intends (its loop never reaches the convs, so the original trains from
        # PyTorch's default init): He-normal convs with fan-out, BN to identity, zero linear biases.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    @property
    def num_exits(self) -> int:
        """Number of classifiers (= blocks)."""
        return self.config.blocks

    @property
    def blocks(self) -> list[nn.Module]:
        """The blocks, shallowest first (``subnets[0 : num_exits]``)."""
        return list(self.subnets[: self.num_exits])

    @property
    def classifiers(self) -> list[nn.Module]:
        """The classifier heads, shallowest first (``subnets[num_exits :]``)."""
        return list(self.subnets[self.num_exits :])

    def exit_feature_modules(self) -> list[nn.Module]:
        """For each exit, the module whose output is that classifier's input.

        Returns:
            ``num_exits`` parameter-free ``nn.Identity`` modules; exit ``k``'s outputs the coarsest-scale map of
            block ``k``, e.g. (N, 224, 8, 8) for exit 0 of the CIFAR model.
        """
        return list(self.exit_features)

    def _check_num_exits(self, num_exits: int | None) -> int:
        if num_exits is None:
            return self.num_exits
        if isinstance(num_exits, bool) or not isinstance(num_exits, int) or not 1 <= num_exits <= self.num_exits:
            raise UserError(f"num_exits must be an int in 1..{self.num_exits}, got {num_exits!r}")
        return num_exits

    def forward(self, x: Tensor, num_exits: int | None = None) -> list[Tensor]:
        """Run the network and return every classifier's logits.

        Args:
            x: images (N, 3, 32, 32), un-normalised in [0, 1] for MSDNet-GCN weights.
            num_exits: run only the first ``num_exits`` blocks and classifiers (all by default).

        Returns:
            A list of ``num_exits`` tensors (N, num_classes), shallowest exit first.
        """
        k = self._check_num_exits(num_exits)
        logits = []
        features: Tensor | list[Tensor] = x
        for block, tap, head in zip(self.blocks[:k], self.exit_features, self.classifiers, strict=False):
            features = block(features)  # list of scales, finest first; coarsest (N, C_k, 8, 8)
            logits.append(head(tap(features[-1])))  # (N, num_classes)
        return logits

    @torch.no_grad()
    def flops_breakdown(self, input_size: tuple[int, int, int] = (3, 32, 32)) -> tuple[list[int], list[int]]:
        """Multiply-adds of every block and of every classifier, counting Conv2d and Linear layers.

        Args:
            input_size: (C, H, W) of one image.

        Returns:
            ``(block_macs, classifier_macs)``, each ``num_exits`` counts for a single image, shallowest first.
        """
        owner = {m: i for i, sub in enumerate(self.subnets) for m in sub.modules()}
        macs = [0] * len(self.subnets)

        def count(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            if isinstance(module, nn.Conv2d):
                per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
            else:
                per_output = module.in_features
            macs[owner[module]] += output[0].numel() * per_output  # first sample only

        handles = [m.register_forward_hook(count) for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        try:
            with eval_mode(self):
                param = next(self.parameters())
                self(torch.zeros(1, *input_size, dtype=param.dtype, device=param.device))
        finally:
            for h in handles:
                h.remove()
        n = self.num_exits
        return macs[:n], macs[n:]

    def exit_flops(self, input_size: tuple[int, int, int] = (3, 32, 32)) -> list[int]:
        """Multiply-adds needed to reach each exit, counting Conv2d and Linear layers.

        Exit ``k`` costs blocks ``0..k`` plus classifier ``k`` (not the earlier classifiers: that is the budget of
        running exit ``k`` alone). An anytime prediction that stops at exit ``k`` also evaluated classifiers
        ``0..k-1``; see :meth:`flops_breakdown` and :func:`eva_utils.multiexit.exit_costs`.

        Args:
            input_size: (C, H, W) of one image.

        Returns:
            ``num_exits`` cumulative multiply-add counts for a single image, increasing.
        """
        blocks, heads = self.flops_breakdown(input_size)
        return [sum(blocks[: k + 1]) + heads[k] for k in range(self.num_exits)]


def msdnet(**config_overrides: Any) -> MSDNet:
    """Build an MSD-Net; the published MSDNet-GCN CIFAR-10 model by default.

    Args:
        **config_overrides: :class:`MSDNetConfig` fields to change, e.g. ``blocks=3``.

    Returns:
        A freshly initialised model (5,440,864 parameters with the defaults).
    """
    return MSDNet(MSDNetConfig.cifar10(**config_overrides))
