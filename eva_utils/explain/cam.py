"""Grad-CAM for every layer of a CNN at once, on top of pytorch-grad-cam.

``layer_cams(model, images, resnet_layers(model))`` returns one heatmap per layer (``{"layer0": (N, H, W), ...,
"layer4": (N, H, W)}``, float32 in [0, 1], at input resolution). pytorch-grad-cam averages a list of target layers
into one map, so per-layer maps usually cost a forward and a backward per layer (per image, in the course notebooks).
Here every layer comes from **one forward and one backward per batch**:

1. forward hooks keep each layer's output (the model in eval mode, as pytorch-grad-cam does);
2. ``torch.autograd.grad(score, activations)`` differentiates the summed target scores back to those activations
   only: no weight gradients, nothing written to ``.grad``;
3. pytorch-grad-cam's own code for the method (``get_cam_image``, ``np.maximum(cam, 0)``, ``scale_cam_image``,
   ``aggregate_multi_layers``) makes each map, so the maths stays theirs and the maps equal
   ``GradCAM(model, target_layers=[layer])(x, targets)`` to within 1e-5 (see tests/explain/test_cam.py).

One-pass methods: gradcam, gradcam++, xgradcam, hirescam, layercam, eigencam (no backward at all), eigengradcam,
gradcamelementwise. ``scorecam`` and ``ablationcam`` run pytorch-grad-cam's own classes once per layer: one forward
per channel of the layer per image (thousands for ResNet18's ``layer4``), so keep their batches small. A new method
is its weights function, as a pytorch-grad-cam method overrides ``get_cam_weights``:
``register_method("gradcam-max", lambda acts, grads: grads.max(axis=(2, 3)))``, then ``layer_cams(..., method="gradcam-max")``.

The model is left as found (modes, ``requires_grad``, ``.grad``, BatchNorm statistics, hooks), also when a call raises.

Example::

    from eva_utils import cam, data, models, plots, transforms
    model = models.resnet18()
    test_set = data.load_sample(train=False, transform=transforms.test_transforms())
    images = torch.stack([test_set[i][0] for i in range(8)])       # (8, 3, 32, 32)
    cams = cam.layer_cams(model, images, cam.resnet_layers(model))  # {"layer0": (8, 32, 32), ...}
    rgb = plots.overlay(data.denormalize(images), cams["layer4"])   # (8, 32, 32, 3) in [0, 1]

Which layers (``resnet_layers``, ``conv_layers``, ``count_from_back``, ``map_sizes``) live in
:mod:`eva_utils.explain.layers`, what to explain (``targets=``, ``class_probs``, ``predict_targets``) in
:mod:`eva_utils.explain.targets`; this module re-exports them.

References: Selvaraju et al., "Grad-CAM", ICCV 2017; https://github.com/jacobgil/pytorch-grad-cam
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from eva_utils.core.checks import positive_int
from eva_utils.core.devices import eval_mode, exact_float32, model_device_dtype
from eva_utils.core.errors import UserError, unknown_name
from eva_utils.evaluation.metrics import as_image_batch, select_output
from eva_utils.explain.hooks import Capture
from eva_utils.explain.layers import (
    Layers,
    conv_layers,
    count_from_back,
    float32_model,
    is_resnet,
    map_sizes,
    resnet_layers,
    resolve_layers,
)
from eva_utils.explain.targets import (
    Targets,
    check_classes,
    class_probs,
    explains_labels,
    fill_predicted,
    normalise_targets,
    predict_targets,
    target_callables,
)

__all__ = ["CAM_METHODS", "ONE_PASS_METHODS", "class_probs", "conv_layers", "count_from_back", "is_resnet", "layer_cams",
           "map_sizes", "method_key", "predict_targets", "register_method", "resnet_layers", "resolve_layers"]

# ----------------------------------------------------------------------------- the methods

WeightsFn = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]  # (activations, grads) (B, C, h, w) -> (B, C)


class _Method(NamedTuple):
    """How a registered method makes its maps."""

    cam_class: Callable[[], type]  # its pytorch-grad-cam class (imported on first use)
    needs_gradients: bool  # False: one forward and no backward (eigencam)
    one_pass: bool  # False: pytorch-grad-cam's own class, run once per layer (many forwards each)


def _pgc(name: str) -> type:
    """A pytorch-grad-cam class by name, imported when first used (importing eva_utils.cam stays light)."""
    import pytorch_grad_cam

    return getattr(pytorch_grad_cam, name)


_BUILT_IN = {  # name -> (pytorch-grad-cam class, needs gradients, every layer from one pass)
    "gradcam": ("GradCAM", True, True), "gradcam++": ("GradCAMPlusPlus", True, True),
    "xgradcam": ("XGradCAM", True, True), "hirescam": ("HiResCAM", True, True), "layercam": ("LayerCAM", True, True),
    "eigencam": ("EigenCAM", False, True), "eigengradcam": ("EigenGradCAM", True, True),
    "gradcamelementwise": ("GradCAMElementWise", True, True),
    "scorecam": ("ScoreCAM", False, False), "ablationcam": ("AblationCAM", False, False),
}
_REGISTRY: dict[str, _Method] = {
    key: _Method(functools.partial(_pgc, cls), grads, one) for key, (cls, grads, one) in _BUILT_IN.items()
}
CAM_METHODS: tuple[str, ...] = tuple(_BUILT_IN)  # the built-in methods; register_method adds more
ONE_PASS_METHODS: tuple[str, ...] = tuple(k for k, m in _REGISTRY.items() if m.one_pass)  # one forward, <= 1 backward
_ALIASES = {"gradcamplusplus": "gradcam++", "gradcampp": "gradcam++"}


def _canonical(method: str) -> str:
    key = method.lower().replace("-", "").replace("_", "").replace(" ", "")
    return _ALIASES.get(key, key)


def _weights_class(key: str, weights_fn: WeightsFn, needs_gradients: bool) -> type:
    """A pytorch-grad-cam ``BaseCAM`` subclass whose ``get_cam_weights`` is ``weights_fn``."""
    from pytorch_grad_cam.base_cam import BaseCAM

    class Registered(BaseCAM):
        def __init__(self, model: nn.Module, target_layers: list[nn.Module]) -> None:
            super().__init__(model, target_layers, uses_gradients=needs_gradients)

        def get_cam_weights(self, input_tensor: Any, target_layer: Any, targets: Any, activations: np.ndarray,
                            grads: np.ndarray | None) -> np.ndarray:
            return np.asarray(weights_fn(activations, grads), dtype=np.float32)  # (B, C)

    Registered.__name__ = Registered.__qualname__ = f"Registered_{key}"
    return Registered


def register_method(name: str, weights_fn: WeightsFn, needs_gradients: bool = True) -> str:
    """Add a CAM method given by its channel weights; :func:`layer_cams` runs it in the same one pass.

    A layer's map is ``max(0, sum_c weights[:, c] * activations[:, c])``, then scaled and resized by
    pytorch-grad-cam's own code (its ``BaseCAM.get_cam_weights`` extension point), as for the built-in methods.

    Args:
        name: the new method's name (matched as :func:`method_key` matches: case, ``-``, ``_`` ignored).
        weights_fn: ``(activations, grads) -> weights``: the layer's output and the gradient of the explained score
            with respect to it, float32 numpy (B, C, h, w) each (``grads`` is ``None`` when ``needs_gradients`` is
            False), to weights (B, C). Grad-CAM's is ``grads.mean(axis=(2, 3))``.
        needs_gradients: False for a method that needs no backward pass (as eigencam).

    Returns:
        The method's canonical name, for ``layer_cams(..., method=...)``.

    Raises:
        UserError: the name is taken, or ``weights_fn`` is not callable.
    """
    key = _canonical(name) if isinstance(name, str) else ""
    if not key:
        raise UserError(f"a CAM method needs a name, got {name!r}", param="name")
    if key in _REGISTRY or key in _ALIASES:
        raise UserError(f"CAM method {name!r} exists already: choose another name", param="name")
    if not callable(weights_fn):
        raise UserError(f"weights_fn must be a function (activations, grads) -> weights, got {weights_fn!r}",
                        param="weights_fn")
    _REGISTRY[key] = _Method(functools.partial(_weights_class, key, weights_fn, bool(needs_gradients)),
                             bool(needs_gradients), True)
    return key


def method_key(method: str) -> str:
    """The canonical name of a CAM method (``Grad-CAM++`` -> ``gradcam++``).

    Raises:
        UserError: not one of :data:`CAM_METHODS` or a registered method (close matches are suggested).
    """
    if not isinstance(method, str):
        raise UserError(f"method must be a name, one of {', '.join(_REGISTRY)}; got {type(method).__name__}")
    key = _canonical(method)
    if key not in _REGISTRY:
        raise unknown_name("CAM method", method, tuple(_REGISTRY))
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


def _target_score(output: torch.Tensor, targets: list[Any]) -> torch.Tensor:
    """Sum over the batch of each image's target score (what BaseCAM.forward backpropagates)."""
    if all(isinstance(t, int) for t in targets):
        index = torch.as_tensor(targets, device=output.device)[:, None]  # (B, 1)
        return output.gather(1, index).sum()  # same gradient as sum(output[i, c_i])
    return sum(t(o) for t, o in zip(target_callables(targets), output, strict=False))


class _Job(NamedTuple):
    """What every batch of one ``layer_cams`` call shares."""

    layers: Mapping[str, nn.Module]
    key: str  # the method's canonical name
    output_index: int | str | None
    eigen_smooth: bool
    batch_size: int
    targets: list[Any] | None  # one per image, as asked; None: the predicted classes
    from_labels: bool  # the targets are the labels (targets="true"), for the error messages


def _explained(output: torch.Tensor, start: int, job: _Job) -> list[Any]:
    """The targets of the batch from image ``start``: the ones asked for (all checked at the first batch), else predicted."""
    if job.targets is None:
        return fill_predicted(None, output.detach().argmax(-1).cpu())
    if start == 0 and output.ndim == 2:
        check_classes(job.targets, output.shape[1], job.from_labels)
    return job.targets[start:start + job.batch_size]


def _one_pass_batch(model: nn.Module, x: torch.Tensor, start: int, job: _Job) -> dict[str, np.ndarray]:
    """All layers' maps for one batch ``x`` (B, C, H, W) from one forward and at most one backward."""
    from pytorch_grad_cam.utils.image import scale_cam_image

    uses_gradients = _REGISTRY[job.key].needs_gradients
    capture = Capture(job.layers, graph=uses_gradients)
    try:
        with torch.set_grad_enabled(uses_gradients):
            output = select_output(model(x), job.output_index)  # (B, num_classes)
        modules = list(dict.fromkeys(job.layers.values()))  # unique, in order
        activations = [capture.activation(m) for m in modules]  # each (B, C_l, h_l, w_l)
    finally:
        capture.release()
    targets = _explained(output, start, job)
    grads: list[np.ndarray | None] = [None] * len(modules)
    if uses_gradients:
        found = torch.autograd.grad(_target_score(output, targets), activations, allow_unused=True)  # only to the activations
        for module, grad in zip(modules, found, strict=True):
            if grad is None:
                raise UserError(f"layer {capture.names[id(module)]!r} does not influence the explained output; "
                                "pick a layer before it")
        grads = [g.detach().float().cpu().numpy() for g in found]
    acts = [a.detach().float().cpu().numpy() for a in activations]
    del activations, output

    method = _REGISTRY[job.key].cam_class()(model=nn.Linear(1, 1), target_layers=[])  # no layers: no hooks on the model
    cam_targets = target_callables(targets)
    size = (x.shape[-1], x.shape[-2])  # (W, H), cv2's order, as BaseCAM.get_target_width_height
    per_module = {}
    for module, act, grad in zip(modules, acts, grads, strict=True):
        # Exactly BaseCAM.compute_cam_per_layer + aggregate_multi_layers for a single target layer.
        cam = np.maximum(method.get_cam_image(x, module, cam_targets, act, grad, job.eigen_smooth), 0)  # (B, h, w)
        scaled = scale_cam_image(cam, size)  # (B, H, W), each map min-max scaled then resized
        per_module[id(module)] = method.aggregate_multi_layers([scaled[:, None, :]])  # (B, H, W), rescaled
    return {name: per_module[id(module)] for name, module in job.layers.items()}


def _delegated_batch(model: nn.Module, x: torch.Tensor, start: int, job: _Job) -> dict[str, np.ndarray]:
    """Run pytorch-grad-cam's own ScoreCAM / AblationCAM once per layer on ``x`` (B, C, H, W)."""
    from pytorch_grad_cam import AblationLayer
    from pytorch_grad_cam.utils.find_layers import replace_layer_recursive

    wrapped = _SelectOutput(model, job.output_index)
    with torch.no_grad():
        output = wrapped(x)  # (B, num_classes)
    targets = _explained(output, start, job)
    cam_targets = target_callables(targets)
    cls = _REGISTRY[job.key].cam_class()
    maps = {}
    for name, layer in job.layers.items():
        if job.key == "ablationcam":
            ablation_layer = AblationLayer()  # a fresh one: the class default is shared between instances
            method = cls(model=wrapped, target_layers=[layer], ablation_layer=ablation_layer, batch_size=job.batch_size)
        else:
            ablation_layer = None
            method = cls(model=wrapped, target_layers=[layer])
            method.batch_size = job.batch_size  # ScoreCAM's masked-image batch (default 16); results unchanged
        try:
            with torch.no_grad():
                maps[name] = method(input_tensor=x, targets=cam_targets, eigen_smooth=job.eigen_smooth)  # (B, H, W)
        finally:
            method.activations_and_grads.release()
            if ablation_layer is not None and any(m is ablation_layer for m in model.modules()):
                replace_layer_recursive(wrapped, ablation_layer, layer)  # put the layer back after an error
    return maps


def layer_cams(
    model: nn.Module, images: torch.Tensor | np.ndarray, layers: Layers, targets: Targets = None, method: str = "gradcam",
    batch_size: int = 64, labels: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    output_index: int | str | None = None, eigen_smooth: bool = False,
) -> dict[str, np.ndarray]:
    """One CAM per layer, all layers from a single forward and backward per batch.

    Args:
        model: a classifier on its own device, run in eval mode (as pytorch-grad-cam does) and left exactly as found.
        images: normalised float (N, C, H, W) on any device, e.g. from ``test_transforms()``; one (C, H, W) image too.
        layers: see :func:`resolve_layers`: names (``"layer4.1"``, ``"layer0"``), modules, a dict name -> module such
            as ``resnet_layers(model)``, or ``None`` for ``resnet_layers``.
        targets: what to explain: ``None`` (or ``"pred"``) the predicted class; ``"true"`` the ``labels``; one class
            index per image (list, array or tensor) or one int for all; pytorch-grad-cam target callables
            (``ClassifierOutputTarget(3)``), one per image or one for all.
        method: one of :data:`CAM_METHODS` or a name given to :func:`register_method` (case, ``-`` and ``_`` ignored;
            ``gradcamplusplus`` = ``gradcam++``). ``scorecam`` and ``ablationcam`` need many forwards per image.
        batch_size: images per forward/backward pass.
        labels: true classes (N,), for ``targets="true"``.
        output_index: which output to explain (``-1`` = last) of a model returning a list/tuple (or dict) of logits,
            e.g. a multi-exit network; required for such models (there is no silent default).
        eigen_smooth: pytorch-grad-cam's ``eigen_smooth`` (first principal component of the weighted activations).

    Returns:
        Dict layer name -> float32 (N, H, W) in [0, 1] at the input resolution, equal to pytorch-grad-cam's
        single-layer output for the same method and targets.

    Raises:
        UserError: unknown method or layer, images that are not normalised float (N, C, H, W), the wrong number of
            targets, a class index outside the model's classes.
    """
    key = method_key(method)
    layer_map = resolve_layers(model, layers)
    model, layer_map = float32_model(model, layer_map)
    x_all = as_image_batch(model, images)  # (N, C, H, W)
    n, (height, width) = len(x_all), x_all.shape[-2:]
    wanted = normalise_targets(targets, labels, n)
    batch_size = positive_int(batch_size, "batch_size")
    device, dtype = model_device_dtype(model)
    job = _Job(layer_map, key, output_index, eigen_smooth, batch_size, wanted, explains_labels(targets))
    result = {name: np.empty((n, height, width), np.float32) for name in layer_map}  # each (N, H, W)
    # autograd works even when called under inference_mode; maps in float32 even under a caller's autocast or TF32
    with eval_mode(model), exact_float32(), torch.inference_mode(False), torch.autocast(device.type, enabled=False):
        for start in range(0, n, batch_size):
            x = x_all[start:start + batch_size].to(device, dtype)  # (B, C, H, W)
            if x.is_inference():
                x = x.clone()
            maps = (_one_pass_batch if _REGISTRY[key].one_pass else _delegated_batch)(model, x, start, job)
            for name, cam in maps.items():
                result[name][start:start + len(x)] = cam
    return result
