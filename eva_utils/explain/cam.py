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
   ``GradCAM(model, target_layers=[layer])(x, targets)`` to within 1e-5 (see tests/explain/test_cam.py).

One-pass methods: gradcam, gradcam++, xgradcam, hirescam, layercam, eigencam (no backward at all),
eigengradcam, gradcamelementwise. ``scorecam`` and ``ablationcam`` run through pytorch-grad-cam's own
classes, once per layer: one forward per channel of the layer per image (thousands for ResNet18's
``layer4``), so keep their batches small.

A new method is its weights function, as a pytorch-grad-cam method is a ``BaseCAM`` subclass that
overrides ``get_cam_weights``: ``register_method("gradcam-max", lambda acts, grads: grads.max(axis=(2, 3)))``
and then ``layer_cams(..., method="gradcam-max")`` in the same one forward and one backward.

The model is left as found: train/eval mode of every module, ``requires_grad``,
``.grad``, BatchNorm running statistics and hook counts, also when a call raises.

Example::

    from eva_utils import cam, data, models, plots, transforms
    model = models.resnet18()
    test_set = data.load_sample(train=False, transform=transforms.test_transforms())
    images = torch.stack([test_set[i][0] for i in range(8)])       # (8, 3, 32, 32)
    cams = cam.layer_cams(model, images, cam.resnet_layers(model))  # {"layer0": (8, 32, 32), ...}
    rgb = plots.overlay(data.denormalize(images), cams["layer4"])   # (8, 32, 32, 3) in [0, 1]

Which layers (``resnet_layers``, ``conv_layers``, ``count_from_back``, ``map_sizes``) live in
:mod:`eva_utils.explain.layers`, what to explain (``targets=``, ``class_probs``, ``predict_targets``) in
:mod:`eva_utils.explain.targets`, the hooks in :mod:`eva_utils.explain.hooks`; this module re-exports them.

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

__all__ = [
    "CAM_METHODS",
    "ONE_PASS_METHODS",
    "class_probs",
    "conv_layers",
    "count_from_back",
    "is_resnet",
    "layer_cams",
    "map_sizes",
    "method_key",
    "predict_targets",
    "register_method",
    "resnet_layers",
    "resolve_layers",
]

# ----------------------------------------------------------------------------- the methods

WeightsFn = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]  # (activations, grads) (B, C, h, w) -> (B, C)


class _Method(NamedTuple):
    """How a registered method makes its maps."""

    cam_class: Callable[[], type]  # its pytorch-grad-cam class (imported on first use)
    needs_gradients: bool  # False: one forward and no backward (eigencam)
    one_pass: bool  # False: pytorch-grad-cam's own class, run once per layer (many forwards each)


def _pgc(name: str) -> Callable[[], type]:
    """A pytorch-grad-cam class by name, imported when first used (importing eva_utils.cam stays light)."""

    def cam_class() -> type:
        import pytorch_grad_cam

        return getattr(pytorch_grad_cam, name)

    return cam_class


_BUILT_IN = {  # name -> (pytorch-grad-cam class, needs gradients, every layer from one pass)
    "gradcam": ("GradCAM", True, True), "gradcam++": ("GradCAMPlusPlus", True, True),
    "xgradcam": ("XGradCAM", True, True), "hirescam": ("HiResCAM", True, True), "layercam": ("LayerCAM", True, True),
    "eigencam": ("EigenCAM", False, True), "eigengradcam": ("EigenGradCAM", True, True),
    "gradcamelementwise": ("GradCAMElementWise", True, True),
    "scorecam": ("ScoreCAM", False, False), "ablationcam": ("AblationCAM", False, False),
}
_REGISTRY: dict[str, _Method] = {key: _Method(_pgc(cls), grads, one) for key, (cls, grads, one) in _BUILT_IN.items()}
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

    The extension point of pytorch-grad-cam, where a method is a ``BaseCAM`` subclass overriding
    ``get_cam_weights``: a layer's map is ``max(0, sum_c weights[:, c] * activations[:, c])``, then scaled
    and resized by pytorch-grad-cam's own code, exactly as for the built-in methods (``eigen_smooth`` too).

    Args:
        name: the new method's name (matched as :func:`method_key` matches: case, ``-``, ``_`` ignored).
        weights_fn: ``weights_fn(activations, grads) -> weights``: the layer's output and the gradient of
            the explained score with respect to it, float32 numpy (B, C, h, w) each (``grads`` is ``None``
            when ``needs_gradients`` is False), to weights (B, C). Grad-CAM's is ``grads.mean(axis=(2, 3))``.
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


def _method(key: str) -> Any:
    """pytorch-grad-cam's own object for a one-pass method, built by its constructor over no layers.

    Its ``get_cam_image`` / ``get_cam_weights`` / ``aggregate_multi_layers`` then run on the activations
    and gradients captured here; with no target layers it registers no hooks, and the placeholder
    model it is given (not the user's) is the one its constructor puts in eval mode.
    """
    return _REGISTRY[key].cam_class()(model=nn.Linear(1, 1), target_layers=[])


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
    check_classes: Callable[[int], None]  # checks the targets against the model's number of classes, once


def _explained(output: torch.Tensor, targets: list[Any] | None, job: _Job) -> list[Any]:
    """The targets of a batch: the predicted classes when none were asked for, else the ones asked for, checked."""
    if targets is not None and output.ndim == 2:
        job.check_classes(output.shape[1])
    return fill_predicted(targets, output.detach().argmax(-1).cpu())


def _one_pass_batch(model: nn.Module, x: torch.Tensor, targets: list[Any] | None, job: _Job) -> dict[str, np.ndarray]:
    """All layers' maps for one batch ``x`` (B, C, H, W) from one forward and at most one backward."""
    from pytorch_grad_cam.utils.image import scale_cam_image

    layers, key, output_index, eigen_smooth = job.layers, job.key, job.output_index, job.eigen_smooth

    uses_gradients = _REGISTRY[key].needs_gradients
    capture = Capture(layers, graph=uses_gradients)
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
    cam_targets = target_callables(targets)
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
    cam_targets = target_callables(targets)
    cls = _REGISTRY[key].cam_class()
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
        method: one of :data:`CAM_METHODS` or a name given to :func:`register_method` (case, ``-`` and ``_``
            ignored; ``gradcamplusplus`` = ``gradcam++``). ``scorecam`` and ``ablationcam`` run pytorch-grad-cam once per layer
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
    model, layer_map = float32_model(model, layer_map)
    x_all = as_image_batch(model, images)  # (N, C, H, W)
    n, (height, width) = len(x_all), x_all.shape[-2:]
    wanted = normalise_targets(targets, labels, n)
    batch_size = positive_int(batch_size, "batch_size")
    from_labels = explains_labels(targets)
    checked: list[int] = []

    def check_once(num_classes: int) -> None:  # all targets, once, at the first batch
        if not checked:
            check_classes(wanted, num_classes, from_labels)
            checked.append(num_classes)

    device, dtype = model_device_dtype(model)
    job = _Job(layer_map, key, output_index, eigen_smooth, batch_size, check_once)
    result = {name: np.empty((n, height, width), np.float32) for name in layer_map}  # each (N, H, W)
    # autograd works even when called under inference_mode; maps in float32 even under a caller's autocast or TF32
    with eval_mode(model), exact_float32(), torch.inference_mode(False), torch.autocast(device.type, enabled=False):
        for start in range(0, n, batch_size):
            x = x_all[start:start + batch_size].to(device, dtype)  # (B, C, H, W)
            if x.is_inference():
                x = x.clone()
            batch_targets = None if wanted is None else wanted[start:start + batch_size]
            maps = (_one_pass_batch if _REGISTRY[key].one_pass else _delegated_batch)(model, x, batch_targets, job)
            for name, cam in maps.items():
                result[name][start:start + len(x)] = cam
    return result
