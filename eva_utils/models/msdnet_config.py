"""The hyper-parameters of an MSD-Net (:class:`MSDNetConfig`), and the configuration an MSDNet-GCN state dict's keys spell.

Named after the MSDNet-GCN command-line options (https://github.com/avirambh/MSDNet-GCN); the model that
they describe is :class:`eva_utils.models.msdnet_model.MSDNet`, its checkpoints load with
:func:`eva_utils.models.loading.load_msdnet_gcn_checkpoint`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eva_utils.core.checks import positive_int
from eva_utils.core.errors import CheckpointError, UserError

__all__ = ["MSDNetConfig", "infer_msdnet_config", "layout_mismatch"]

_STEP_MODES = ("even", "lin_grow")
_PRUNE_MODES = ("max",)


@dataclass(frozen=True)
class MSDNetConfig:
    """Hyper-parameters of an MSD-Net, named after the MSDNet-GCN command-line options.

    Channel counts are expressed, as in MSDNet-GCN, in units of the finest scale: a layer adds
    ``growth * growth_factor[s]`` channels to scale ``s``, so the published ``growth=6`` with factors ``1-2-4``
    gives 6, 12 and 24 new channels per layer at the three scales (see :attr:`growth_per_scale`).

    Args:
        blocks: number of blocks, which is also the number of classifiers (exits).
        base: layers in the first block (``--msd-base``).
        step: layers in each later block for ``step_mode="even"``; for ``"lin_grow"`` block ``i >= 1`` has
            ``step * (i - 1) + 1`` layers.
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
        """The published MSDNet-GCN CIFAR-10 configuration: the defaults (``--msd-blocks 10 --msd-base 4``, ...).

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
        object.__setattr__(self, "layer_scales", tuple(self._scales_of_layer(n) for n in range(1, self.num_layers + 1)))
        self._check_transitions()

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

        The layers are cut into ``num_scales`` equal runs; each run drops one more of the finest scales.
        Layer ``n`` sees the scales layer ``n - 1`` produced.
        """
        interval = math.ceil(self.num_layers / self.num_scales)
        in_scales = self.num_scales - max(0, layer - 2) // interval
        out_scales = self.num_scales - (layer - 1) // interval
        return in_scales, out_scales

    def transition_after(self, layer: int) -> bool:
        """Whether a 1x1 transition follows 1-based ``layer`` (it dropped a scale)."""
        in_scales, out_scales = self.layer_scales[layer - 1]
        return in_scales > out_scales and bool(self.reduction)

    def _validate(self) -> None:
        for name in ("blocks", "base", "step", "num_classes", "num_scales", "stem_channels", "image_channels"):
            positive_int(getattr(self, name), name)
        if isinstance(self.growth, (list, tuple)):
            raise UserError(f"growth is the per-layer growth of the finest scale (an int, 6 in the published model), "
                            f"got {self.growth!r}; the per-scale growth is growth * growth_factor")
        positive_int(self.growth, "growth")
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
                raise UserError(f"growth * growth_factor[{s}] = {self.growth * self.growth_factor[s]} must be even: "
                                "that scale's new channels are split between a strided and a plain conv")
        if not 0.0 <= float(self.reduction) <= 1.0:
            raise UserError(f"reduction must be in [0, 1] (0 disables transitions), got {self.reduction!r}")

    def _check_transitions(self) -> None:
        layer = 0
        for block, count in enumerate(self.layers_per_block):
            transitions = [n for n in range(layer + 1, layer + count + 1) if self.transition_after(n)]
            if len(transitions) > 1:
                raise UserError(f"block {block} would need {len(transitions)} transitions (after layers {transitions}); "
                                "the MSDNet-GCN layout has room for one per block: use more, shorter blocks")
            layer += count
        channels = self.stem_channels
        for n in range(1, self.num_layers + 1):
            channels += self.growth
            if self.transition_after(n):
                channels = math.floor(channels * self.reduction)
                if channels < 1:
                    raise UserError(f"reduction {self.reduction} leaves no channels after layer {n}")


# --------------------------------------------------------------------------- the layout of a state dict

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
    per_block = [len(layers.get(i, ())) for i in range(len(heads))]
    return sorted(heads), per_block, next(iter(heads.values()), None)


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
        raise CheckpointError("not an MSDNet-GCN state dict: expected keys subnets.<block>.MSD_layer_<n>.* for blocks "
                              "0..B-1 and subnets.<B+k>.classifier.weight for classifiers 0..B-1; found classifiers at "
                              f"subnets {heads[:12]} and MSD layers per block {per_block[:12]}")
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


def layout_mismatch(config: MSDNetConfig, state_dict: Mapping[str, Any]) -> str | None:
    """How the blocks of a state dict differ from ``config``'s, in plain words; None when they agree."""
    heads, per_block, _ = _block_layout(state_dict)
    hint = " (pass config=None to read the layout from the file)"
    if len(heads) != config.blocks:
        # a different depth changes the scale-pruning schedule everywhere: key lists would be noise
        return f"checkpoint has {len(heads)} classifiers, model config has {config.blocks}{hint}"
    if per_block != list(config.layers_per_block):
        return f"checkpoint has {per_block} MSD layers per block, model config has {list(config.layers_per_block)}{hint}"
    return None
