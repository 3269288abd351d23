"""Which layers to explain: a ResNet's stages, names and modules, every conv layer in forward order, map sizes.

``resnet_layers(model)`` gives a ResNet's five stage outputs (``layer0`` = the stem's ReLU .. ``layer4``);
``resolve_layers(model, ["layer4.1", model.layer3])`` turns names or modules into an ordered dict;
``conv_layers(model, 224)`` lists every ``nn.Conv2d`` in the order the forward pass uses it and
``count_from_back(convs, [1, 3])`` picks from the back (1 = the last conv); ``map_sizes`` says how coarse each
layer's map really is. :func:`is_resnet` is the package's one test of "has a ResNet's stages".
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from eva_utils.core.checks import positive_int
from eva_utils.core.devices import eval_mode, model_device_dtype
from eva_utils.core.errors import UserError, first_line, unknown_name
from eva_utils.evaluation.metrics import first_conv_channels
from eva_utils.explain.hooks import Capture
from eva_utils.models.custom_resnet import CUSTOM_RESNET_STAGES

__all__ = ["RESNET_MODULES", "Layers", "conv_layers", "count_from_back", "float32_model", "is_resnet", "map_sizes",
           "resnet_layers", "resolve_layers"]

#: The modules a ResNet (eva_utils, kuangliu or torchvision layout) has: the stem's ReLU and its four stages.
RESNET_MODULES: tuple[str, ...] = ("relu", "layer1", "layer2", "layer3", "layer4")

Layers = Mapping[str, nn.Module | str] | Sequence[nn.Module | str] | nn.Module | str | None


def _stage_modules(model: nn.Module) -> dict[str, str] | None:
    """stage name -> module name for a ResNet (``layer0`` is ``relu``) or Page's custom ResNet; ``None`` otherwise."""
    def has(names: Iterable[str]) -> bool:
        return all(isinstance(getattr(model, n, None), nn.Module) for n in names)

    if has(RESNET_MODULES):
        return {"layer0": "relu", **{f"layer{i}": f"layer{i}" for i in range(1, 5)}}
    if has(CUSTOM_RESNET_STAGES):
        return {n: n for n in CUSTOM_RESNET_STAGES}
    return None


def is_resnet(model: nn.Module) -> bool:
    """Whether ``model`` has a ResNet's stages (``relu``, ``layer1`` .. ``layer4``, or the custom ResNet's ``prep``,
    ``layer1`` .. ``layer3``), as :func:`resnet_layers` needs: the package's one ResNet test."""
    return _stage_modules(model) is not None


def resnet_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The stage outputs of a ResNet: ``{"layer0": stem ReLU, "layer1": ..., "layer4": ...}``.

    For eva_utils, kuangliu and torchvision ResNets ``layer0`` is ``model.relu``, the stem's ReLU: the stem output
    (H x W) for eva_utils, the (in-place) ReLU *before* the stem's max-pool (H/2 x W/2) for torchvision. For Page's
    custom ResNet (:func:`eva_utils.models.custom_resnet`) the four stages ``prep``, ``layer1``, ``layer2``, ``layer3``.

    Args:
        model: a ResNet with attributes ``relu`` and ``layer1`` .. ``layer4`` (or ``prep``, ``layer1`` .. ``layer3``).

    Returns:
        An ordered dict name -> module, shallow to deep.
    """
    stages = _stage_modules(model)
    if stages is None:
        top = ", ".join(name for name, _ in model.named_children()) or "(none)"
        missing = [n for n in RESNET_MODULES if not isinstance(getattr(model, n, None), nn.Module)]
        raise UserError(f"resnet_layers needs a ResNet with modules relu, layer1..layer4 (eva_utils, kuangliu or "
                        f"torchvision layout) or the custom ResNet's prep, layer1..layer3; {type(model).__name__} has no "
                        f"{', '.join(missing)}. Pass layer names instead, e.g. layer_cams(model, images, ['name', ...]); "
                        f"top-level layers: {top}")
    return {stage: getattr(model, module) for stage, module in stages.items()}


def _unknown_layer(model: nn.Module, name: str) -> UserError:
    """A ``UserError`` for a layer name the model lacks, listing what exists near it."""
    all_names = [n for n, _ in model.named_modules() if n]
    valid = {n for n, _ in model.named_children()}
    parent = name.rsplit(".", 1)[0] if "." in name else ""
    if parent in all_names:  # e.g. "layer4.5": list layer4's children
        valid |= {f"{parent}.{n}" for n, _ in model.get_submodule(parent).named_children()}
    valid |= set(difflib.get_close_matches(name, all_names, n=3, cutoff=0.6))
    valid |= set(_stage_modules(model) or ())
    return unknown_name("layer", name, valid)


def _layer_by_name(model: nn.Module, name: str) -> nn.Module:
    """``model.get_submodule(name)``; ``layer0`` means the stem ReLU of a ResNet."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        if name == "layer0" and is_resnet(model):
            return model.relu
        raise _unknown_layer(model, name) from None


def resolve_layers(model: nn.Module, layers: Layers) -> dict[str, nn.Module]:
    """Turn names, modules or a name->module dict into an ordered dict name -> module of ``model``.

    Args:
        model: the network the layers belong to.
        layers: a dict name -> module (or dotted name); a list of dotted module names (``"layer4.1"``; ``"layer0"`` is
            a ResNet's stem ReLU) or modules; a single name or module; ``None`` for :func:`resnet_layers`.

    Returns:
        Ordered dict display name -> module; a module passed without a name is named by its dotted path in the model.
    """
    if layers is None:
        return resnet_layers(model)
    if isinstance(layers, (str, nn.Module)):
        layers = [layers]
    if isinstance(layers, Mapping):
        items = list(layers.items())
    else:
        try:
            items = [(None, layer) for layer in layers]
        except TypeError:
            raise UserError(f"layers must be names, modules or a dict name -> module, got {type(layers).__name__}") from None
    if not items:
        raise UserError("layers is empty: pass at least one layer, e.g. resnet_layers(model)")
    path_of = {id(m): n for n, m in reversed(list(model.named_modules()))}  # first name wins
    resolved: dict[str, nn.Module] = {}
    for key, layer in items:
        if isinstance(layer, str):
            module = _layer_by_name(model, layer)
            name = layer if key is None else str(key)
        elif isinstance(layer, nn.Module):
            if id(layer) not in path_of:
                raise UserError(f"layer {key or type(layer).__name__!r} is a module that is not part of this model "
                                f"(a copy, or a layer of another model?); pass its name instead, e.g. 'layer4.1'")
            module = layer
            name = (path_of[id(layer)] or type(model).__name__) if key is None else str(key)
        else:
            raise UserError(f"a layer must be a name or an nn.Module, got {type(layer).__name__}")
        resolved[name] = module
    return resolved


def conv_layers(model: nn.Module, input_size: int | tuple[int, int] = 224) -> dict[str, nn.Conv2d]:
    """Every ``nn.Conv2d`` of ``model``, at any depth, in the order the forward pass first uses it.

    Registration order is not forward order (custom models may define layers in any order), so the order is taken
    from forward hooks on one dummy forward pass; a convolution the forward pass never uses is left out.

    Args:
        model: the network; run once in eval mode on zeros, then left exactly as found (flags restored, hooks removed).
        input_size: side (or ``(H, W)``) of the dummy input, e.g. the preprocessing's crop size.

    Returns:
        Ordered dict dotted name -> module, first used first; the last is the deepest, which Grad-CAM usually explains.

    Raises:
        UserError: no convolution at all, or the model cannot run at ``input_size``.
    """
    height, width = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    named = {id(m): n for n, m in reversed(list(model.named_modules())) if isinstance(m, nn.Conv2d)}  # first name wins
    if not named:
        raise UserError(f"{type(model).__name__} has no nn.Conv2d layer to count from the back; pick layers by name "
                        f"instead (top-level layers: {', '.join(n for n, _ in model.named_children()) or '(none)'})")
    found: dict[str, nn.Conv2d] = {}

    def remember(module: nn.Module, inputs: Any, output: Any) -> None:
        found.setdefault(named[id(module)], module)

    modules = {id(m): m for m in model.modules() if id(m) in named}.values()
    device, dtype = model_device_dtype(model)
    channels = 3 if any(m.in_channels == 3 for m in modules) else first_conv_channels(model)  # RGB unless no conv takes it
    x = torch.zeros(1, channels, height, width, device=device, dtype=dtype)  # (1, C, H, W)
    handles = []
    try:
        handles = [m.register_forward_hook(remember) for m in modules]
        with eval_mode(model), torch.no_grad():
            model(x)
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"could not run {type(model).__name__} on a dummy input of shape {tuple(x.shape)} to find its "
                        f"conv layers ({first_line(exc)}); give the input size the model expects") from exc
    finally:
        for handle in handles:
            handle.remove()
    return found


def map_sizes(model: nn.Module, layers: Layers, input_size: int | tuple[int, int] = 32) -> dict[str, tuple[int, int]]:
    """The (height, width) of each layer's feature map at ``input_size``: how coarse its CAM really is.

    ``layer_cams`` upsamples every map to the input's size, so a figure cannot show it: at 32x32 the ResNet18's
    layer0..layer4 maps are 32, 32, 16, 8 and 4 pixels wide, and a 4x4 map can only say which quarter mattered.

    Args:
        model: run once on zeros in eval mode, then left as found (flags restored, hooks removed).
        layers: as for :func:`resolve_layers`.
        input_size: side (or ``(H, W)``) of the input.

    Returns:
        Ordered dict name -> (h, w).
    """
    height, width = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    layer_map = resolve_layers(model, layers)
    device, dtype = model_device_dtype(model)
    x = torch.zeros(1, first_conv_channels(model) or 3, height, width, device=device, dtype=dtype)  # (1, C, H, W)
    capture = Capture(layer_map, graph=False)
    try:
        with eval_mode(model), torch.no_grad():
            model(x)
        return {name: tuple(capture.activation(module).shape[-2:]) for name, module in layer_map.items()}
    finally:
        capture.release()


def count_from_back(layers: Mapping[str, nn.Module], counts: Iterable[int]) -> dict[str, nn.Module]:
    """Pick layers by their position from the back: 1 is the last, ``len(layers)`` the first.

    Args:
        layers: ordered dict name -> module, e.g. from :func:`conv_layers`.
        counts: positions from the back, each in ``1 .. len(layers)``, in the order wanted.

    Returns:
        Ordered dict name -> module, in the order of ``counts`` (a layer asked twice appears once).

    Raises:
        UserError: a count below 1 or above the number of layers.
    """
    items = list(layers.items())
    picked: dict[str, nn.Module] = {}
    for count in counts:
        try:
            count = positive_int(count, "counts")
        except UserError:
            raise UserError(f"layers are counted from the back starting at 1 (1 = the last conv layer); got {count!r}",
                            param="counts") from None
        if count > len(items):
            raise UserError(f"the model has {len(items)} conv layers, so a count from the back must be between 1 and "
                            f"{len(items)} ({len(items)} = the first, {items[0][0]}); got {count}")
        name, module = items[-count]
        picked[name] = module
    return picked


def float32_model(model: nn.Module, layer_map: dict[str, nn.Module]) -> tuple[nn.Module, dict[str, nn.Module]]:
    """``model`` itself when it computes in float32; else a float32 copy, with the same layers picked in the copy.

    A float16/bfloat16 model's activations and gradients are too coarse for maps (up to 0.29 away from float32's).
    """
    _, dtype = model_device_dtype(model)
    if dtype == torch.float32:
        return model, layer_map
    names = {id(module): name for name, module in model.named_modules()}
    if not all(id(module) in names for module in layer_map.values()):
        raise UserError("the layers to explain must be modules of the model itself (not of a copy)")
    work = copy.deepcopy(model).float()
    modules = dict(work.named_modules())
    return work, {label: modules[names[id(module)]] for label, module in layer_map.items()}
