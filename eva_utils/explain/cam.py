"""Grad-CAM for every layer of a CNN at once, on top of pytorch-grad-cam.

``layer_cams(model, images, resnet_layers(model))`` returns one heatmap per layer
(``{"layer0": (N, H, W), ..., "layer4": (N, H, W)}``, float32 in [0, 1], at input
resolution). pytorch-grad-cam, given a list of target layers, averages them into a
single map, so per-layer maps usually cost one forward and one backward per layer
(and the course notebooks loop over images too: one pass per layer per image).
Here every layer is captured in **one forward and one backward per batch**:

1. forward hooks keep each layer's output (the model in eval mode, as pytorch-grad-cam does);
2. ``torch.autograd.grad(score, activations)`` differentiates the summed target scores
   back to those activations only: no weight gradients, nothing written to ``.grad``;
3. each layer's map is then made by pytorch-grad-cam's own code for the method
   (``get_cam_image`` / ``get_cam_weights``, ``np.maximum(cam, 0)``, ``scale_cam_image``,
   ``aggregate_multi_layers``), so the maths stays theirs and the maps equal
   ``GradCAM(model, target_layers=[layer])(x, targets)`` to within 1e-5 (see tests/test_cam.py).

One-pass methods: gradcam, gradcam++, xgradcam, hirescam, layercam, eigencam (no
backward at all), eigengradcam, gradcamelementwise. ``scorecam`` and ``ablationcam``
are run through pytorch-grad-cam's own classes, once per layer: they cost one forward
per channel of the layer per image (thousands for ResNet18's ``layer4``), so keep
their batches small.

The model is left as found: train/eval mode of every module, ``requires_grad``,
``.grad``, BatchNorm running statistics and hook counts, also when a call raises.

Example::

    from eva_utils import cam, data, models, transforms
    model = models.resnet18()
    test_set = data.load_sample(train=False, transform=transforms.test_transforms())
    images = torch.stack([test_set[i][0] for i in range(8)])       # (8, 3, 32, 32)
    cams = cam.layer_cams(model, images, cam.resnet_layers(model))  # {"layer0": (8, 32, 32), ...}
    rgb = cam.overlay(data.denormalize(images), cams["layer4"])     # (8, 32, 32, 3) in [0, 1]

For any CNN, ``conv_layers(model, 224)`` lists every ``nn.Conv2d`` in the order the forward
pass uses it and ``count_from_back(convs, [1, 3])`` picks layers from the back (1 = the last conv);
``class_probs`` gives softmax probabilities and ``show_cams`` draws images beside their maps.

References: Selvaraju et al., "Grad-CAM", ICCV 2017; Zhang et al., "Top-down neural
attention by excitation backprop" (the pointing game), ECCV 2016;
https://github.com/jacobgil/pytorch-grad-cam
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from eva_utils.core.devices import eval_mode, model_device_dtype
from eva_utils.core.errors import UserError, first_line, unknown_name
from eva_utils.evaluation.metrics import as_image_batch, first_conv_channels, forward_batches, select_output

__all__ = [
    "CAM_METHODS",
    "ONE_PASS_METHODS",
    "class_probs",
    "conv_layers",
    "count_from_back",
    "layer_cams",
    "map_sizes",
    "method_key",
    "predict_targets",
    "resnet_layers",
    "resolve_layers",
]

# Methods that need one forward and (except eigencam) one backward for all layers together.
_ONE_PASS = (
    "gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam", "eigengradcam", "gradcamelementwise",
)
_NO_GRADIENTS = ("eigencam",)
# Methods delegated to pytorch-grad-cam as-is, one call per layer (many forwards each).
_DELEGATED = ("scorecam", "ablationcam")
CAM_METHODS: tuple[str, ...] = _ONE_PASS + _DELEGATED
ONE_PASS_METHODS: tuple[str, ...] = _ONE_PASS  # every layer from one forward and at most one backward pass
_ALIASES = {"gradcamplusplus": "gradcam++", "gradcampp": "gradcam++"}

Layers = Mapping[str, nn.Module | str] | Sequence[nn.Module | str] | nn.Module | str | None
Targets = str | int | Sequence[Any] | np.ndarray | torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None


# ----------------------------------------------------------------------------- layers


def resnet_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The five stage outputs of a ResNet: ``{"layer0": stem ReLU, "layer1": ..., "layer4": ...}``.

    Works for eva_utils / kuangliu ResNets and for torchvision ResNets. ``layer0`` is
    ``model.relu``, the stem's ReLU module: for eva_utils that is the stem output (H x W);
    for torchvision it is the ReLU *before* the stem's max-pool (H/2 x W/2; torchvision's
    ``relu`` is in-place, which :func:`layer_cams` handles).

    Args:
        model: a ResNet with attributes ``relu`` and ``layer1`` .. ``layer4``.

    Returns:
        An ordered dict name -> module, shallow to deep.
    """
    names = ("relu", "layer1", "layer2", "layer3", "layer4")
    missing = [n for n in names if not isinstance(getattr(model, n, None), nn.Module)]
    if missing:
        top = ", ".join(name for name, _ in model.named_children()) or "(none)"
        raise UserError(
            f"resnet_layers needs a ResNet with modules relu, layer1..layer4 (eva_utils, kuangliu or "
            f"torchvision layout); {type(model).__name__} has no {', '.join(missing)}. "
            f"Pass layer names instead, e.g. layer_cams(model, images, ['name', ...]); top-level layers: {top}"
        )
    return {"layer0": model.relu, **{f"layer{i}": getattr(model, f"layer{i}") for i in range(1, 5)}}


def _unknown_layer(model: nn.Module, name: str) -> UserError:
    """A ``UserError`` for a layer name the model lacks, listing what exists near it."""
    all_names = [n for n, _ in model.named_modules() if n]
    valid = {n for n, _ in model.named_children()}
    parent = name.rsplit(".", 1)[0] if "." in name else ""
    if parent in all_names:  # e.g. "layer4.5": list layer4's children
        valid |= {f"{parent}.{n}" for n, _ in model.get_submodule(parent).named_children()}
    valid |= set(difflib.get_close_matches(name, all_names, n=3, cutoff=0.6))
    if _has_resnet_layout(model):
        valid |= {f"layer{i}" for i in range(5)}
    return unknown_name("layer", name, valid)


def _has_resnet_layout(model: nn.Module) -> bool:
    return all(isinstance(getattr(model, n, None), nn.Module) for n in ("relu", "layer1", "layer2", "layer3", "layer4"))


def _layer_by_name(model: nn.Module, name: str) -> nn.Module:
    """``model.get_submodule(name)``; ``layer0`` means the stem ReLU of a ResNet."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        if name == "layer0" and _has_resnet_layout(model):
            return model.relu
        raise _unknown_layer(model, name) from None


def resolve_layers(model: nn.Module, layers: Layers) -> dict[str, nn.Module]:
    """Turn names, modules or a name->module dict into an ordered dict name -> module of ``model``.

    Args:
        model: the network the layers belong to.
        layers: a dict name -> module (or dotted name); a list of dotted module names
            (``"layer4.1"``; ``"layer0"`` is a ResNet's stem ReLU) or modules; a single name
            or module; ``None`` for :func:`resnet_layers`.

    Returns:
        Ordered dict display name -> module. Modules passed without a name are named by their
        dotted path in the model.
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
            raise UserError(
                f"layers must be names, modules or a dict name -> module, got {type(layers).__name__}"
            ) from None
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
                raise UserError(
                    f"layer {key or type(layer).__name__!r} is a module that is not part of this model "
                    f"(a copy, or a layer of another model?); pass its name instead, e.g. 'layer4.1'"
                )
            module = layer
            name = (path_of[id(layer)] or type(model).__name__) if key is None else str(key)
        else:
            raise UserError(f"a layer must be a name or an nn.Module, got {type(layer).__name__}")
        resolved[name] = module
    return resolved


def conv_layers(model: nn.Module, input_size: int | tuple[int, int] = 224) -> dict[str, nn.Conv2d]:
    """Every ``nn.Conv2d`` of ``model``, at any depth, in the order the forward pass first uses it.

    Registration order is not forward order (torchvision's ``downsample`` convolution is
    registered after a block's ``conv2`` but kuangliu's ``shortcut`` runs after it too, and
    custom models may define layers in any order), so the order is taken from forward hooks
    on one dummy forward pass; a convolution the forward pass never uses is left out.

    Args:
        model: the network; run once in eval mode on zeros, then left exactly as found
            (train/eval flags restored, hooks removed).
        input_size: side (or ``(H, W)``) of the dummy input, e.g. the preprocessing's crop size.

    Returns:
        Ordered dict dotted name -> module, first used first; the last entry is the deepest
        convolution, which Grad-CAM usually explains.

    Raises:
        UserError: no convolution at all, or the model cannot run at ``input_size``.
    """
    height, width = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    named = {id(m): n for n, m in reversed(list(model.named_modules())) if isinstance(m, nn.Conv2d)}  # first name wins
    if not named:
        raise UserError(
            f"{type(model).__name__} has no nn.Conv2d layer to count from the back; pick layers by name instead "
            f"(top-level layers: {', '.join(n for n, _ in model.named_children()) or '(none)'})"
        )
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
        first = first_line(exc)
        raise UserError(
            f"could not run {type(model).__name__} on a dummy input of shape {tuple(x.shape)} to find its conv "
            f"layers ({first}); give the input size the model expects"
        ) from exc
    finally:
        for handle in handles:
            handle.remove()
    return found


def map_sizes(model: nn.Module, layers: Layers, input_size: int | tuple[int, int] = 32) -> dict[str, tuple[int, int]]:
    """The (height, width) of each layer's feature map at ``input_size``: how coarse its CAM really is.

    ``layer_cams`` upsamples every map to the input's size, so a figure cannot show it: at 32x32 the
    ResNet18's layer0..layer4 maps are 32, 32, 16, 8 and 4 pixels wide. A 4x4 map can only say which
    quarter of the image mattered; courses reject CAMs from maps under 5 pixels wide.

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
    capture = _Capture(layer_map, graph=False)
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
        if not _is_int(count) or int(count) < 1:
            raise UserError(f"layers are counted from the back starting at 1 (1 = the last conv layer); got {count!r}")
        if int(count) > len(items):
            raise UserError(
                f"the model has {len(items)} conv layers, so a count from the back must be between 1 and "
                f"{len(items)} ({len(items)} = the first, {items[0][0]}); got {count}"
            )
        name, module = items[-int(count)]
        picked[name] = module
    return picked


# ----------------------------------------------------------------------------- inputs


def _float32_model(model: nn.Module, layer_map: dict[str, nn.Module]) -> tuple[nn.Module, dict[str, nn.Module]]:
    """``model`` itself when it computes in float32; else a float32 copy, with the same layers picked in the copy.

    A float16/bfloat16 model's activations and gradients are too coarse for maps (up to 0.29 away
    from float32's), so its CAMs are computed by a float32 copy; the caller's model is not touched.
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


def _as_int_array(values: Any, what: str) -> np.ndarray:
    """Class indices as a 1-D int64 array; a ``UserError`` for floats, matrices or junk."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    try:
        array = np.asarray(values)
    except Exception:  # ragged lists and the like
        raise UserError(f"{what} must be class indices, one per image") from None
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.bool_)):
        raise UserError(
            f"{what} must be a 1-D sequence of integer class indices, one per image; got "
            f"dtype {array.dtype} shape {array.shape} (one-hot or scores? use .argmax(1))"
        )
    return array.astype(np.int64)


def _is_int(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.ndim == 0 and not value.is_floating_point() and not value.is_complex()
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _normalise_targets(targets: Targets, labels: Any, n: int) -> list[Any] | None:
    """One entry per image: an int class index or a pytorch-grad-cam target callable; None = predicted."""
    if targets is None or (isinstance(targets, str) and targets.lower() in ("pred", "predicted")):
        return None
    if isinstance(targets, str):
        if targets.lower() != "true":
            raise UserError(
                f"targets={targets!r} is not understood: use None (predicted class), 'true' (with labels=), "
                f"class indices (one per image) or pytorch-grad-cam targets such as ClassifierOutputTarget(3)"
            )
        if labels is None:
            raise UserError("targets='true' needs the labels: layer_cams(..., targets='true', labels=labels)")
        array = _as_int_array(labels, "labels")
        if len(array) != n:
            raise UserError(f"got {len(array)} labels for {n} images; pass one label per image")
        return [int(c) for c in array]
    if _is_int(targets):
        return [int(targets)] * n  # one class for every image
    if callable(targets) and not isinstance(targets, (torch.Tensor, np.ndarray)):
        return [targets] * n  # one target callable for every image
    if isinstance(targets, (torch.Tensor, np.ndarray)):
        entries: list[Any] = [int(c) for c in _as_int_array(targets, "targets")]
    elif isinstance(targets, Iterable):
        entries = []
        for t in targets:
            if _is_int(t):
                entries.append(int(t))
            elif callable(t):
                entries.append(t)
            else:
                raise UserError(
                    f"each target must be a class index or a pytorch-grad-cam target callable, got {t!r}"
                )
    else:
        raise UserError(
            f"targets must be None, 'true', class indices or target callables, got {type(targets).__name__}"
        )
    if len(entries) != n:
        raise UserError(
            f"got {len(entries)} targets for {n} images; pass exactly one target per image "
            f"(pytorch-grad-cam would silently use only the first {min(len(entries), n)})"
        )
    return entries


def _check_classes(targets: list[Any] | None, num_classes: int, from_labels: bool) -> None:
    """A ``UserError`` if an int target is not in 0..num_classes-1."""
    if targets is None:
        return
    bad = [c for c in targets if isinstance(c, int) and not 0 <= c < num_classes]
    if bad:
        what = "label" if from_labels else "target class index"
        raise UserError(
            f"{what} {bad[0]} is out of range: the model has {num_classes} classes (0..{num_classes - 1})"
        )


def predict_targets(
    model: nn.Module, images: torch.Tensor | np.ndarray, batch_size: int = 64, output_index: int | str | None = None,
) -> np.ndarray:
    """The predicted class of each image (what ``layer_cams(targets=None)`` explains): int64 (N,).

    Arguments as for :func:`class_probs`.
    """
    return class_probs(model, images, batch_size, output_index).argmax(1).astype(np.int64)


def class_probs(
    model: nn.Module,
    images: torch.Tensor | np.ndarray,
    batch_size: int = 64,
    output_index: int | str | None = None,
) -> np.ndarray:
    """Softmax class probabilities of each image, in eval mode (the model is left as found).

    Args:
        model: a classifier returning logits (N, K).
        images: normalised float (N, C, H, W), or one (C, H, W) image.
        batch_size: images per forward pass.
        output_index: which output to use when the model returns a list/tuple of logits.

    Returns:
        float32 array (N, K); each row sums to 1.
    """
    images = as_image_batch(model, images)
    batches = (images[start:start + int(batch_size)] for start in range(0, len(images), int(batch_size)))
    probs = []
    for output in forward_batches(model, batches):  # the package's one prediction loop
        logits = select_output(output, output_index)  # (B, K)
        if logits.ndim != 2:
            raise UserError(f"the model returns shape {tuple(logits.shape)}, not class scores (N, K)")
        probs.append(logits.float().softmax(-1).cpu())
    return torch.cat(probs).numpy()


# ----------------------------------------------------------------------------- hooks


class _Capture:
    """Forward hooks that keep each target layer's output; ``release()`` removes them.

    With ``graph=True`` every captured activation is a node of the autograd graph (a fresh
    leaf if nothing before it requires grad, e.g. frozen parameters), and the module hands a
    *clone* on downstream, so later in-place ops (torchvision's ``ReLU(inplace=True)``) cannot
    overwrite the tensor we differentiate with respect to.
    """

    def __init__(self, layers: Mapping[str, nn.Module], graph: bool) -> None:
        self.graph = graph
        self.names: dict[int, str] = {}
        for name, module in layers.items():
            self.names.setdefault(id(module), name)
        self.outputs: dict[int, list[torch.Tensor]] = {key: [] for key in self.names}
        self.handles = [
            module.register_forward_hook(self._save)
            for module in {id(m): m for m in layers.values()}.values()
        ]

    def _save(self, module: nn.Module, inputs: Any, output: Any) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise UserError(
                f"layer {self.names[id(module)]!r} returns a {type(output).__name__}, not a feature map tensor; "
                f"pick a module that outputs (N, C, h, w)"
            )
        if not self.graph:
            self.outputs[id(module)].append(output.detach().clone())  # (N, C, h, w), safe from in-place ops
            return output
        activation = output if output.requires_grad else output.detach().requires_grad_()
        self.outputs[id(module)].append(activation)  # (N, C, h, w)
        return activation.clone()

    def activation(self, module: nn.Module) -> torch.Tensor:
        """The single output the module produced in the last forward pass."""
        saved = self.outputs[id(module)]
        name = self.names[id(module)]
        if not saved:
            raise UserError(f"layer {name!r} was not used in the model's forward pass; pick another layer")
        if len(saved) > 1:
            raise UserError(
                f"layer {name!r} ran {len(saved)} times in one forward pass (a module shared inside the model, "
                f"like torchvision's BasicBlock.relu); pick its parent block or a module used once"
            )
        if saved[0].ndim != 4:
            raise UserError(
                f"layer {name!r} outputs shape {tuple(saved[0].shape)}, not a (N, C, h, w) feature map; "
                f"pick a convolutional layer or block"
            )
        return saved[0]

    def release(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def _method_class(key: str) -> type:
    import pytorch_grad_cam as pgc

    return {
        "gradcam": pgc.GradCAM,
        "gradcam++": pgc.GradCAMPlusPlus,
        "xgradcam": pgc.XGradCAM,
        "hirescam": pgc.HiResCAM,
        "layercam": pgc.LayerCAM,
        "eigencam": pgc.EigenCAM,
        "eigengradcam": pgc.EigenGradCAM,
        "gradcamelementwise": pgc.GradCAMElementWise,
        "scorecam": pgc.ScoreCAM,
        "ablationcam": pgc.AblationCAM,
    }[key]


def _method(key: str) -> Any:
    """pytorch-grad-cam's own object for a one-pass method, built by its constructor over no layers.

    Its ``get_cam_image`` / ``get_cam_weights`` / ``aggregate_multi_layers`` then run on the activations
    and gradients captured here; with no target layers it registers no hooks, and the placeholder
    model it is given (not the user's) is the one its constructor puts in eval mode.
    """
    return _method_class(key)(model=nn.Linear(1, 1), target_layers=[])


def method_key(method: str) -> str:
    """The canonical name of a CAM method (``Grad-CAM++`` -> ``gradcam++``).

    Raises:
        UserError: not one of :data:`CAM_METHODS` (close matches are suggested).
    """
    if not isinstance(method, str):
        raise UserError(f"method must be a name, one of {', '.join(CAM_METHODS)}; got {type(method).__name__}")
    key = method.lower().replace("-", "").replace("_", "").replace(" ", "")
    key = _ALIASES.get(key, key)
    if key not in CAM_METHODS:
        raise unknown_name("CAM method", method, CAM_METHODS)
    return key


class _SelectOutput(nn.Module):
    """Wraps a model so it returns the one output to explain (for pytorch-grad-cam's own classes)."""

    def __init__(self, model: nn.Module, output_index: int | str | None) -> None:
        super().__init__()
        self.model = model
        self.output_index = output_index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return select_output(self.model(x), self.output_index)


# ----------------------------------------------------------------------------- CAMs


def _as_target_callables(targets: list[Any]) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    return [ClassifierOutputTarget(t) if isinstance(t, int) else t for t in targets]


def _target_score(output: torch.Tensor, targets: list[Any]) -> torch.Tensor:
    """Sum over the batch of each image's target score (what BaseCAM.forward backpropagates)."""
    if all(isinstance(t, int) for t in targets):
        index = torch.as_tensor(targets, device=output.device)[:, None]  # (B, 1)
        return output.gather(1, index).sum()  # same gradient as sum(output[i, c_i])
    return sum(t(o) for t, o in zip(_as_target_callables(targets), output, strict=False))


class _Job(NamedTuple):
    """What every batch of one ``layer_cams`` call shares."""

    layers: Mapping[str, nn.Module]
    key: str  # the method's canonical name
    output_index: int | str | None
    eigen_smooth: bool
    batch_size: int
    check_classes: Callable[[int], None]  # checks the targets against the model's number of classes, once


def _explained(output: torch.Tensor, targets: list[Any] | None, job: _Job) -> list[Any]:
    """The targets of a batch: the predicted classes when none were asked for, else the ones asked for, checked."""
    if targets is None:
        return [int(c) for c in output.detach().argmax(-1).cpu()]
    if output.ndim == 2:
        job.check_classes(output.shape[1])
    return targets


def _one_pass_batch(model: nn.Module, x: torch.Tensor, targets: list[Any] | None, job: _Job) -> dict[str, np.ndarray]:
    """All layers' maps for one batch ``x`` (B, C, H, W) from one forward and at most one backward."""
    from pytorch_grad_cam.utils.image import scale_cam_image

    layers, key, output_index, eigen_smooth = job.layers, job.key, job.output_index, job.eigen_smooth

    uses_gradients = key not in _NO_GRADIENTS
    capture = _Capture(layers, graph=uses_gradients)
    try:
        with torch.set_grad_enabled(uses_gradients):
            output = select_output(model(x), output_index)  # (B, num_classes)
        modules = list(dict.fromkeys(layers.values()))  # unique, in order
        activations = [capture.activation(m) for m in modules]  # each (B, C_l, h_l, w_l)
    finally:
        capture.release()
    targets = _explained(output, targets, job)
    grads: list[np.ndarray | None] = [None] * len(modules)
    if uses_gradients:
        score = _target_score(output, targets)
        found = torch.autograd.grad(score, activations, allow_unused=True)  # only back to the activations
        for module, grad in zip(modules, found, strict=True):
            if grad is None:
                name = capture.names[id(module)]
                raise UserError(f"layer {name!r} does not influence the explained output; pick a layer before it")
        grads = [g.detach().float().cpu().numpy() for g in found]
    acts = [a.detach().float().cpu().numpy() for a in activations]
    del activations, output

    method = _method(key)
    cam_targets = _as_target_callables(targets)
    size = (x.shape[-1], x.shape[-2])  # (W, H), cv2's order, as BaseCAM.get_target_width_height
    per_module = {}
    for module, act, grad in zip(modules, acts, grads, strict=True):
        # Exactly BaseCAM.compute_cam_per_layer + aggregate_multi_layers for a single target layer.
        cam = method.get_cam_image(x, module, cam_targets, act, grad, eigen_smooth)  # (B, h, w)
        cam = np.maximum(cam, 0)
        scaled = scale_cam_image(cam, size)  # (B, H, W), each map min-max scaled then resized
        per_module[id(module)] = method.aggregate_multi_layers([scaled[:, None, :]])  # (B, H, W), rescaled
    return {name: per_module[id(module)] for name, module in layers.items()}


def _delegated_batch(model: nn.Module, x: torch.Tensor, targets: list[Any] | None, job: _Job) -> dict[str, np.ndarray]:
    """Run pytorch-grad-cam's own ScoreCAM / AblationCAM once per layer on ``x`` (B, C, H, W)."""
    from pytorch_grad_cam import AblationLayer
    from pytorch_grad_cam.utils.find_layers import replace_layer_recursive

    layers, key, eigen_smooth, batch_size = job.layers, job.key, job.eigen_smooth, job.batch_size
    wrapped = _SelectOutput(model, job.output_index)
    with torch.no_grad():
        output = wrapped(x)  # (B, num_classes)
    targets = _explained(output, targets, job)
    cam_targets = _as_target_callables(targets)
    cls = _method_class(key)
    maps = {}
    for name, layer in layers.items():
        if key == "ablationcam":
            ablation_layer = AblationLayer()  # a fresh one: the class default is shared between instances
            method = cls(model=wrapped, target_layers=[layer], ablation_layer=ablation_layer, batch_size=batch_size)
        else:
            ablation_layer = None
            method = cls(model=wrapped, target_layers=[layer])
            method.batch_size = batch_size  # ScoreCAM's masked-image batch (default 16); results unchanged
        try:
            with torch.no_grad():
                maps[name] = method(input_tensor=x, targets=cam_targets, eigen_smooth=eigen_smooth)  # (B, H, W)
        finally:
            method.activations_and_grads.release()
            if ablation_layer is not None and any(m is ablation_layer for m in model.modules()):
                replace_layer_recursive(wrapped, ablation_layer, layer)  # put the layer back after an error
    return maps


def layer_cams(
    model: nn.Module,
    images: torch.Tensor | np.ndarray,
    layers: Layers,
    targets: Targets = None,
    method: str = "gradcam",
    batch_size: int = 64,
    labels: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    output_index: int | str | None = None,
    eigen_smooth: bool = False,
) -> dict[str, np.ndarray]:
    """One CAM per layer, all layers from a single forward and backward per batch.

    Args:
        model: a classifier; its device is used, and it is run in eval mode (as pytorch-grad-cam
            does) and left exactly as found.
        images: normalised float (N, C, H, W) on any device, e.g. from ``test_transforms()``;
            one (C, H, W) image is treated as a batch of 1.
        layers: see :func:`resolve_layers`: names (``"layer4.1"``, ``"layer0"``), modules, a dict
            name -> module such as ``resnet_layers(model)``, or ``None`` for ``resnet_layers``.
        targets: what to explain: ``None`` (or ``"pred"``) the predicted class; ``"true"`` the
            ``labels``; one class index per image (list, array or tensor) or one int for all;
            pytorch-grad-cam target callables (``ClassifierOutputTarget(3)``), one per image or one for all.
        method: one of :data:`CAM_METHODS` (case, ``-`` and ``_`` ignored; ``gradcamplusplus`` =
            ``gradcam++``). ``scorecam`` and ``ablationcam`` run pytorch-grad-cam once per layer
            and need many forwards per image.
        batch_size: images per forward/backward pass.
        labels: true classes (N,), for ``targets="true"``.
        output_index: for models returning a list/tuple (or dict) of logits, e.g. multi-exit
            networks: which output to explain (``-1`` = last). Required for such models: there is
            no silent default.
        eigen_smooth: pytorch-grad-cam's ``eigen_smooth`` (first principal component of the weighted activations).

    Returns:
        Dict layer name -> float32 array (N, H, W) in [0, 1] at the input resolution, equal to
        pytorch-grad-cam's single-layer output for the same method and targets.

    Raises:
        UserError: unknown method or layer, images that are not normalised float (N, C, H, W),
            the wrong number of targets, a class index outside the model's classes.
    """
    key = method_key(method)
    layer_map = resolve_layers(model, layers)
    model, layer_map = _float32_model(model, layer_map)
    x_all = as_image_batch(model, images)  # (N, C, H, W)
    n, (height, width) = len(x_all), x_all.shape[-2:]
    wanted = _normalise_targets(targets, labels, n)
    if int(batch_size) < 1:
        raise UserError(f"batch_size must be a positive integer, got {batch_size}")
    batch_size = int(batch_size)
    from_labels = isinstance(targets, str) and targets.lower() == "true"
    checked: list[int] = []

    def check_classes(num_classes: int) -> None:  # all targets, once, at the first batch
        if not checked:
            _check_classes(wanted, num_classes, from_labels)
            checked.append(num_classes)

    device, dtype = model_device_dtype(model)
    job = _Job(layer_map, key, output_index, eigen_smooth, batch_size, check_classes)
    result = {name: np.empty((n, height, width), np.float32) for name in layer_map}  # each (N, H, W)
    # autograd works even when called under inference_mode; maps in float32 even under a caller's autocast
    with eval_mode(model), torch.inference_mode(False), torch.autocast(device.type, enabled=False):
        for start in range(0, n, batch_size):
            x = x_all[start:start + batch_size].to(device, dtype)  # (B, C, H, W)
            if x.is_inference():
                x = x.clone()
            batch_targets = None if wanted is None else wanted[start:start + batch_size]
            maps = (_delegated_batch if key in _DELEGATED else _one_pass_batch)(model, x, batch_targets, job)
            for name, cam in maps.items():
                result[name][start:start + len(x)] = cam
    return result
