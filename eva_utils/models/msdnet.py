"""MSD-Net (Multi-Scale Dense Network) for CIFAR, in the MSDNet-GCN checkpoint layout.

MSD-Net is an anytime classifier: it keeps feature maps at several resolutions
("scales") side by side and grows each of them DenseNet-style, so that coarse,
class-level features exist early in the network. A classifier is attached after
every *block* of layers; each one reads the coarsest scale and gives a full
prediction, so inference can stop at any exit. Deeper layers drop the finest
scales (they no longer feed any classifier) and 1x1 *transition* convolutions
halve the channel count where a scale is dropped.

CIFAR version: three scales (32x32, 16x16, 8x8 for a 32x32 input); the published
CIFAR-10 model has 10 blocks (4 layers in the first, 2 in each later one), 10
classifiers and 5,440,864 parameters.

Module and parameter names follow the public replication MSDNet-GCN
(https://github.com/avirambh/MSDNet-GCN, ``models/msdnet.py`` and
``models/msdnet_layers.py``), so its checkpoints, e.g. ``anytime_cifar_10.pth.tar``,
load strictly with :func:`load_msdnet_gcn_checkpoint`.

Inputs: the MSDNet-GCN weights were trained on ``transforms.ToTensor()`` images in
[0, 1] with **no** mean/std normalisation; feed them un-normalised tensors
(``model.expects_normalized_input`` is ``False``).

Reference: Huang, Chen, Li, Wu, van der Maaten, Weinberger, "Multi-Scale Dense
Networks for Resource Efficient Image Classification", ICLR 2018, arXiv:1703.09844.
"""

from __future__ import annotations

import math
import os
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from eva_utils.core.devices import eval_mode
from eva_utils.core.errors import CheckpointError, UserError
from eva_utils.core.files import sha256_file
from eva_utils.core.safe_load import safe_load, state_dict_mismatch

__all__ = [
    "MSDNetConfig",
    "MSDNet",
    "msdnet",
    "infer_msdnet_config",
    "load_msdnet_gcn_checkpoint",
    "download_msdnet_gcn_checkpoint",
    "verify_msdnet_gcn_download",
    "MSDNET_GCN_CIFAR10_PAGE",
    "MSDNET_GCN_CIFAR10_URL",
]

# The CIFAR-10 model published with MSDNet-GCN and used by the MSD-Net Grad-CAM visualiser: its page,
# and the direct download of the file.
MSDNET_GCN_CIFAR10_PAGE = "https://www.dropbox.com/s/kjxh1oaxkhtpbmw/anytime_cifar_10.pth.tar"
MSDNET_GCN_CIFAR10_URL = MSDNET_GCN_CIFAR10_PAGE + "?dl=1"

_STEP_MODES = ("even", "lin_grow")
_PRUNE_MODES = ("max",)
_CLASSIFIER_WIDTH = 128  # hidden channels of every CIFAR classifier head


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class MSDNetConfig:
    """Hyper-parameters of an MSD-Net, named after the MSDNet-GCN command-line options.

    Channel counts are expressed, as in MSDNet-GCN, in units of the finest scale:
    a layer adds ``growth * growth_factor[s]`` channels to scale ``s``, so the
    published ``growth=6`` with factors ``1-2-4`` gives 6, 12 and 24 new channels
    per layer at the three scales (see :attr:`growth_per_scale`).

    Args:
        blocks: number of blocks, which is also the number of classifiers (exits).
        base: layers in the first block (``--msd-base``).
        step: layers in each later block for ``step_mode="even"``; for
            ``"lin_grow"`` block ``i >= 1`` has ``step * (i - 1) + 1`` layers.
        step_mode: ``"even"`` or ``"lin_grow"`` (``--msd-stepmode``).
        growth: channels a layer adds at the finest scale (``--msd-growth``).
        growth_factor: per-scale multipliers of ``growth`` and of the stem width.
        bottleneck: put a 1x1 conv + BN + ReLU before every 3x3 conv.
        bottleneck_factor: per-scale bottleneck width, as a multiple of the 3x3 conv's outputs.
        reduction: channel fraction kept by a transition; 0 disables transitions.
        prune: how scales are dropped; only ``"max"`` (the paper's schedule) exists.
        num_classes: outputs of every classifier.
        num_scales: number of resolutions (3 for CIFAR).
        stem_channels: channels of the finest scale after the stem (32 for CIFAR).
        image_channels: input image channels.
    """

    blocks: int = 10
    base: int = 4
    step: int = 2
    step_mode: str = "even"
    growth: int = 6
    growth_factor: tuple[int, ...] = (1, 2, 4, 4)
    bottleneck: bool = True
    bottleneck_factor: tuple[int, ...] = (1, 2, 4, 4)
    reduction: float = 0.5
    prune: str = "max"
    num_classes: int = 10
    num_scales: int = 3
    stem_channels: int = 32
    image_channels: int = 3
    # derived, filled in by __post_init__: MSD layers per block, and (in, out) scales per layer
    layers_per_block: tuple[int, ...] = field(init=False, repr=False, compare=False)
    layer_scales: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)

    @classmethod
    def cifar10(cls, blocks: int = 10, **overrides: Any) -> MSDNetConfig:
        """The published MSDNet-GCN CIFAR-10 configuration.

        ``--msd-blocks 10 --msd-base 4 --msd-step 2 --msd-stepmode even``, growth 6,
        growth and bottleneck factors 1-2-4-4, bottleneck on, prune "max", reduction 0.5.

        Args:
            blocks: number of blocks/classifiers (10 in the published model).
            **overrides: any other field to change.

        Returns:
            The configuration.
        """
        return cls(blocks=blocks, **overrides)

    def __post_init__(self) -> None:
        for name in ("growth_factor", "bottleneck_factor"):
            value = getattr(self, name)
            if isinstance(value, str):  # accept the command-line form "1-2-4-4"
                value = value.split("-")
            try:
                object.__setattr__(self, name, tuple(int(v) for v in value))
            except (TypeError, ValueError):
                raise UserError(f"{name} must be a sequence of ints such as (1, 2, 4, 4), got {value!r}") from None
        self._validate()
        object.__setattr__(self, "layers_per_block", self._layers_per_block())
        layer_scales = tuple(self._scales_of_layer(n) for n in range(1, self.num_layers + 1))
        object.__setattr__(self, "layer_scales", layer_scales)
        self._check_transitions()

    # ---------------------------------------------------------------- derived sizes

    @property
    def num_layers(self) -> int:
        """Total number of MSD layers over all blocks."""
        return sum(self.layers_per_block)

    @property
    def growth_per_scale(self) -> list[int]:
        """Channels added per layer at each scale, e.g. ``[6, 12, 24]`` (the ``--growth`` option)."""
        return [self.growth * self.growth_factor[s] for s in range(self.num_scales)]

    def _layers_per_block(self) -> tuple[int, ...]:
        if self.step_mode == "even":
            later = [self.step] * (self.blocks - 1)
        else:  # lin_grow
            later = [self.step * (i - 1) + 1 for i in range(1, self.blocks)]
        return (self.base, *later)

    def _scales_of_layer(self, layer: int) -> tuple[int, int]:
        """(input scales, output scales) of 1-based ``layer``: the paper's "max" pruning.

        The layers are cut into ``num_scales`` equal runs; each run drops one more of
        the finest scales. Layer ``n`` sees the scales layer ``n - 1`` produced.
        """
        interval = math.ceil(self.num_layers / self.num_scales)
        in_scales = self.num_scales - max(0, layer - 2) // interval
        out_scales = self.num_scales - (layer - 1) // interval
        return in_scales, out_scales

    def transition_after(self, layer: int) -> bool:
        """Whether a 1x1 transition follows 1-based ``layer`` (it dropped a scale)."""
        in_scales, out_scales = self.layer_scales[layer - 1]
        return in_scales > out_scales and bool(self.reduction)

    # ------------------------------------------------------------------- validation

    def _validate(self) -> None:
        def positive_int(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{name} must be an integer >= 1, got {value!r}")

        for name in ("blocks", "base", "step", "num_classes", "num_scales", "stem_channels", "image_channels"):
            positive_int(name)
        if isinstance(self.growth, (list, tuple)):
            raise UserError(
                f"growth is the per-layer growth of the finest scale (an int, 6 in the published model), "
                f"got {self.growth!r}; the per-scale growth is growth * growth_factor"
            )
        positive_int("growth")
        if self.step_mode not in _STEP_MODES:
            raise UserError(f"unknown step_mode {self.step_mode!r}; valid step modes: {', '.join(_STEP_MODES)}")
        if self.prune not in _PRUNE_MODES:
            raise UserError(f"unknown prune {self.prune!r}; valid prune modes: {', '.join(_PRUNE_MODES)}")
        if not isinstance(self.bottleneck, bool):
            raise UserError(f"bottleneck must be True or False, got {self.bottleneck!r}")
        for name in ("growth_factor", "bottleneck_factor"):
            value = getattr(self, name)
            if len(value) < self.num_scales or any(v < 1 for v in value):
                raise UserError(f"{name} needs {self.num_scales} positive entries (one per scale), got {value!r}")
        for s in range(1, self.num_scales):
            # scales below the finest get half their new channels from each of two convs
            if self.growth * self.growth_factor[s] % 2:
                raise UserError(
                    f"growth * growth_factor[{s}] = {self.growth * self.growth_factor[s]} must be even: "
                    "that scale's new channels are split between a strided and a plain conv"
                )
        if not 0.0 <= float(self.reduction) <= 1.0:
            raise UserError(f"reduction must be in [0, 1] (0 disables transitions), got {self.reduction!r}")

    def _check_transitions(self) -> None:
        layer = 0
        for block, count in enumerate(self.layers_per_block):
            transitions = [n for n in range(layer + 1, layer + count + 1) if self.transition_after(n)]
            if len(transitions) > 1:
                raise UserError(
                    f"block {block} would need {len(transitions)} transitions (after layers {transitions}); "
                    "the MSDNet-GCN layout has room for one per block: use more, shorter blocks"
                )
            layer += count
        channels = self.stem_channels
        for n in range(1, self.num_layers + 1):
            channels += self.growth
            if self.transition_after(n):
                channels = math.floor(channels * self.reduction)
                if channels < 1:
                    raise UserError(f"reduction {self.reduction} leaves no channels after layer {n}")


# --------------------------------------------------------------------------- layers


def _conv_unit(in_channels: int, out_channels: int, stride: int, bottleneck_width: int | None) -> nn.Sequential:
    """[1x1 conv, BN, ReLU,] 3x3 conv (stride 1 or 2), BN, ReLU, with MSDNet-GCN's names.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: 1 (``Spatial_forward``, same scale) or 2 (``Spatial_down``, from the finer scale).
        bottleneck_width: 1x1 bottleneck width as a multiple of ``out_channels``; ``None`` for none.

    Returns:
        The unit.
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    mid = in_channels
    if bottleneck_width is not None:
        mid = min(in_channels, bottleneck_width * out_channels)
        layers["Bottleneck_1x1"] = nn.Conv2d(in_channels, mid, kernel_size=1)
        layers["Bottleneck_BN"] = nn.BatchNorm2d(mid)
        layers["Bottleneck_ReLU"] = nn.ReLU()
    name = "Spatial_forward" if stride == 1 else "Spatial_down"
    layers[name] = nn.Conv2d(mid, out_channels, kernel_size=3, stride=stride, padding=1)
    layers["BN_out"] = nn.BatchNorm2d(out_channels)
    layers["ReLU_out"] = nn.ReLU()
    return nn.Sequential(layers)


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.Sequential:
    """conv (with bias), BN, ReLU as an index-named Sequential (keys ``0.*``, ``1.*``)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


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
    """One scale of an MSD layer: the scale's input, concatenated with new features from 1 or 2 convs.

    (``_DynamicInputDenseBlock`` in MSDNet-GCN.) With two convs the first is strided and
    reads the next finer scale, the second reads this scale.
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

    Scale indices below are absolute (0 = finest). Output scale ``a`` is the input at
    ``a`` plus ``growth * growth_factor[a]`` new channels: from a stride-1 conv on scale
    ``a`` alone when ``a`` is the finest scale still computed (and was an input as the
    finest), otherwise half from a stride-2 conv on scale ``a - 1`` and half from a
    stride-1 conv on scale ``a``. When ``out_scales < in_scales`` the finest input scale
    is only read (by the strided conv) and not passed on.
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
                convs = [
                    _conv_unit(channels * gf[a - 1], new_channels // 2, 2, width(a - 1)),
                    _conv_unit(channels * gf[a], new_channels // 2, 1, width(a)),
                ]
            subnets.append(_DenseScale(convs))
        self.subnets = nn.ModuleList(subnets)

    def forward(self, x: Sequence[Tensor]) -> list[Tensor]:
        # x: in_scales maps, finest first -> out_scales maps (the coarsest out_scales resolutions)
        outputs = []
        for s, scale_net in enumerate(self.subnets):
            i = self.to_drop + s  # this scale's position in x
            if s == 0 and not self.to_drop:
                outputs.append(scale_net(x[i], [x[i]]))
            else:
                outputs.append(scale_net(x[i], [x[i - 1], x[i]]))
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


# --------------------------------------------------------------------------- model


class MSDNet(nn.Module):
    """Multi-Scale Dense Network with one classifier per block (MSDNet-GCN layout).

    ``subnets`` holds the ``blocks`` blocks followed by their ``blocks`` classifiers;
    classifier ``k`` reads the coarsest scale of block ``k``'s output.

    Args:
        config: the hyper-parameters; the published CIFAR-10 model by default.
    """

    #: True if the weights expect mean/std-normalised inputs. MSDNet-GCN weights were
    #: trained on ``ToTensor()`` images in [0, 1], hence False.
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
        # Parameter-free taps whose output is each classifier's input (the coarsest scale of
        # block k's output): hook these for Grad-CAM. They add no state-dict keys.
        self.exit_features = nn.ModuleList(nn.Identity() for _ in range(config.blocks))
        self._init_weights()

    def _init_weights(self) -> None:
        # What MSDNet-GCN's init_weights intends (its loop never reaches the convs, so the
        # original actually trains from PyTorch's default init): He-normal convs with
        # fan-out, BN to identity, zero linear biases.
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
            ``num_exits`` parameter-free ``nn.Identity`` modules; exit ``k``'s outputs the
            coarsest-scale map of block ``k``, e.g. (N, 224, 8, 8) for exit 0 of the CIFAR model.
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
            ``(block_macs, classifier_macs)``, each ``num_exits`` counts for a single image,
            shallowest first.
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

        Exit ``k`` costs blocks ``0..k`` plus classifier ``k`` (earlier classifiers are
        not included: that is the budget of running exit ``k`` alone). An anytime
        prediction that stops at exit ``k`` also evaluated classifiers ``0..k-1``; see
        :meth:`flops_breakdown` and :func:`eva_utils.multiexit.exit_costs`.

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


# --------------------------------------------------------------------------- checkpoints

_KEY_RE = re.compile(r"^subnets\.(\d+)\.(?:MSD_layer_(\d+)\.|classifier\.weight$)")


def _block_layout(state_dict: Mapping[str, Any]) -> tuple[list[int], list[int], int | None]:
    """(classifier subnet indices, MSD layers per block, num_classes) found in a state dict's keys."""
    heads: dict[int, int] = {}
    layers: dict[int, set[int]] = {}
    for key, value in state_dict.items():
        match = _KEY_RE.match(key)
        if not match:
            continue
        index = int(match.group(1))
        if match.group(2) is None:
            heads[index] = int(value.shape[0])
        else:
            layers.setdefault(index, set()).add(int(match.group(2)))
    num_blocks = len(heads)
    per_block = [len(layers.get(i, ())) for i in range(num_blocks)]
    classes = next(iter(heads.values())) if heads else None
    return sorted(heads), per_block, classes


def infer_msdnet_config(state_dict: Mapping[str, Any], **overrides: Any) -> MSDNetConfig:
    """Guess the configuration of an MSDNet-GCN state dict from its key names.

    Reads the number of blocks (= classifiers), the layers per block (``base``, ``step``,
    ``step_mode``) and ``num_classes``; everything else is the published CIFAR-10 setting.

    Args:
        state_dict: keys without the ``module.`` prefix.
        **overrides: fields to set explicitly instead.

    Returns:
        The configuration.

    Raises:
        CheckpointError: the keys are not those of an MSDNet-GCN model.
    """
    heads, per_block, classes = _block_layout(state_dict)
    num_blocks = len(heads)
    if not num_blocks or heads != list(range(num_blocks, 2 * num_blocks)) or 0 in per_block:
        raise CheckpointError(
            "not an MSDNet-GCN state dict: expected keys subnets.<block>.MSD_layer_<n>.* for blocks "
            f"0..B-1 and subnets.<B+k>.classifier.weight for classifiers 0..B-1; found classifiers at "
            f"subnets {heads[:12]} and MSD layers per block {per_block[:12]}"
        )
    guess: dict[str, Any] = {"blocks": num_blocks, "base": per_block[0], "num_classes": classes}
    later = per_block[1:]
    if len(set(later)) <= 1:
        guess.update(step=later[0] if later else 2, step_mode="even")
    elif later == [(later[1] - 1) * i + 1 for i in range(len(later))]:
        guess.update(step=later[1] - 1, step_mode="lin_grow")
    else:
        raise CheckpointError(f"MSD layers per block {per_block} follow neither the 'even' nor the 'lin_grow' pattern")
    guess.update(overrides)
    return MSDNetConfig(**guess)


def read_checkpoint(path: str | os.PathLike[str]) -> Any:
    """What an MSD-Net checkpoint file holds, read with :func:`eva_utils.safe_load.safe_load` (one-line errors)."""
    return safe_load(
        path,
        refused_hint="Only if you trust its source, load it yourself with torch.load(..., weights_only=False) and "
                     "pass the state dict to model.load_state_dict",
        corrupt_hint="Download the checkpoint again (eva-utils msd --download-checkpoint fetches the published one)",
    )


def _extract_state_dict(obj: Any, path: str | os.PathLike[str]) -> dict[str, Tensor]:
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        keys = list(obj)[:6] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"{os.fspath(path)!r} holds neither a state dict nor a dict with a 'state_dict' entry (found {keys})"
        )
    prefix = "module."  # added by nn.DataParallel
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in obj.items()}


def _describe_mismatch(model: MSDNet, state_dict: Mapping[str, Tensor], limit: int = 3) -> str:
    """Plain-words differences between a checkpoint's state dict and the model's."""
    heads, per_block, _ = _block_layout(state_dict)
    hint = " (pass config=None to read the layout from the file)"
    if len(heads) != model.num_exits:
        # a different depth changes the scale-pruning schedule everywhere: key lists would be noise
        return f"checkpoint has {len(heads)} classifiers, model config has {model.num_exits}{hint}"
    if per_block != list(model.config.layers_per_block):
        layout = list(model.config.layers_per_block)
        return f"checkpoint has {per_block} MSD layers per block, model config has {layout}{hint}"

    return state_dict_mismatch(state_dict, model, limit) or ""


def load_msdnet_gcn_checkpoint(
    path: str | os.PathLike[str],
    config: MSDNetConfig | None = None,
    map_location: str | torch.device = "cpu",
) -> MSDNet:
    """Load an MSDNet-GCN checkpoint (e.g. ``anytime_cifar_10.pth.tar``) into an :class:`MSDNet`.

    The file is read with ``weights_only=True``. It may be the training script's dict
    (``epoch``, ``model``, ``state_dict``, ``best_prec1``) or a bare state dict; a
    ``module.`` prefix from ``nn.DataParallel`` is removed. The weights expect
    un-normalised ``ToTensor()`` inputs in [0, 1]: the returned model has
    ``expects_normalized_input = False``.

    Args:
        path: the checkpoint file.
        config: the architecture; ``None`` infers blocks, layers per block and classes from the keys.
        map_location: the device the returned model is on (the file is read on the CPU, then the
            model is moved there).

    Returns:
        The model in eval mode, on ``map_location``.

    Raises:
        CheckpointError: (a ``ValueError``) the file holds pickled objects, is corrupt, or
            does not match ``config``; the message says what differs.
    """
    state_dict = _extract_state_dict(read_checkpoint(path), path)
    if config is None:
        try:
            config = infer_msdnet_config(state_dict)
        except UserError as err:
            raise CheckpointError(f"{os.fspath(path)!r}: {err}") from err
    model = MSDNet(config)
    problems = _describe_mismatch(model, state_dict)
    if problems:
        raise CheckpointError(f"{os.fspath(path)!r} does not fit this MSDNet configuration: {problems}")
    model.load_state_dict(state_dict, strict=True)
    model.expects_normalized_input = False
    return model.to(map_location).eval()


def _recorded(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def verify_msdnet_gcn_download(path: str | os.PathLike[str], sha256: str | None = None) -> str:
    """Check a checkpoint against ``sha256``, else against the hash recorded when it was downloaded.

    The authors of MSDNet-GCN publish no checksum, so :func:`download_msdnet_gcn_checkpoint` records
    the sha256 of the first download that loads as their architecture in ``<path>.sha256``
    (``sha256sum`` format); every later use checks the file against it, so a file replaced or damaged
    since is refused. A file with no record (saved by hand) is accepted as it is.

    Returns:
        The file's sha256.

    Raises:
        CheckpointError: the file's hash differs from ``sha256`` or from the recorded one.
    """
    path = Path(path).expanduser()
    digest = sha256_file(path)
    record = _recorded(path)
    if sha256 is None and record.is_file():
        sha256, source = record.read_text().split()[0], f"the hash recorded at download in {record}"
    else:
        source = "the expected hash"
    if sha256 is not None and digest != sha256.lower():
        raise CheckpointError(f"{path} has sha256 {digest[:16]}..., not {sha256[:16]}... ({source}): the file changed "
                              f"since; delete it (and {record.name}) to download it again")
    return digest


def download_msdnet_gcn_checkpoint(
    path: str | os.PathLike[str] = "anytime_cifar_10.pth.tar",
    url: str | None = None,
    progress: bool = True,
    sha256: str | None = None,
) -> Path:
    """Fetch the published MSDNet-GCN CIFAR-10 checkpoint into ``path``, unless a file is already there.

    The download goes to a temporary file renamed at the end (``torch.hub.download_url_to_file``), and
    is kept only if it loads as an MSDNet-GCN checkpoint (a moved link may serve a web page instead).
    Its sha256 is then recorded beside it (see :func:`verify_msdnet_gcn_download`).

    Args:
        path: where the checkpoint goes; a file already there is checked against its recorded hash
            (or ``sha256``) and returned.
        url: where it comes from (default ``MSDNET_GCN_CIFAR10_URL``, the published model).
        progress: show a progress bar.
        sha256: the hash the file must have; a download that differs is refused and deleted.

    Returns:
        ``path``.

    Raises:
        CheckpointError: the download failed, is not a checkpoint, or does not match ``sha256``
            (nothing is left at ``path``); a file already there no longer matches its hash.
    """
    path = Path(path).expanduser()
    if path.exists():
        verify_msdnet_gcn_download(path, sha256)
        return path
    url = url or MSDNET_GCN_CIFAR10_URL
    by_hand = f"download it by hand from {url.removesuffix('?dl=1')} and save it as {path}"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # hash_prefix: torch checks the hash on the temporary file and never renames a mismatch into place
        torch.hub.download_url_to_file(url, str(path), hash_prefix=sha256.lower() if sha256 else None, progress=progress)
    except RuntimeError as exc:  # "invalid hash value (expected ..., got ...)"
        raise CheckpointError(f"the file {url} served does not have the sha256 asked for ({exc}); nothing was kept") from exc
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
        raise CheckpointError(f"could not download the MSD-Net checkpoint from {url} ({exc}); {by_hand}") from exc
    try:
        load_msdnet_gcn_checkpoint(path)
    except CheckpointError as exc:
        path.unlink(missing_ok=True)
        raise CheckpointError(f"what {url} served is not an MSDNet-GCN checkpoint ({exc}); {by_hand}") from exc
    _recorded(path).write_text(f"{sha256_file(path)}  {path.name}\n")
    return path
