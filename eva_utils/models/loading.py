"""Where a model comes from: the shipped model, torchvision names, model files.

``load_model(source)`` returns a :class:`Classifier` (model, class names, preprocessing preset,
a one-line description) for any of these sources:

* ``"pretrained:<name>"``: a model trained by this project that ships with the package
  (:data:`eva_utils.models.PRETRAINED`), e.g. ``"pretrained:resnet18_w16_cifar10"``;
* a torchvision classification model name (``"vgg16"``, ``"resnet50"``): pretrained ImageNet
  weights through torchvision's weights API (downloaded once into torch.hub's cache), or random
  weights with ``weights="none"``; ``"eva_utils.resnet18"`` names an eva_utils model;
* a checkpoint written by ``eva-utils train`` (:func:`eva_utils.checkpoint.load_trained_model`);
* a state dict (``torch.save(model.state_dict(), path)``) with ``arch`` (a torchvision or
  eva_utils name; the number of classes, and an eva_utils ResNet's width, are read off the weights);
* a TorchScript file (``torch.jit.save``) with ``arch``: PyTorch cannot hook the layers of a
  TorchScript module, and Grad-CAM needs hooks, so its weights are copied into the Python
  architecture, which is then checked to compute the same outputs;
* a fully pickled model (``torch.save(model, path)``), only with ``unsafe_pickle=True``: unpickling
  runs code stored in the file. Everything else loads with ``torch.load(weights_only=True)``.

Labels files are read by :mod:`eva_utils.labels`; the notebooks' model (ImageNet weights when they
download, else the shipped CIFAR-10 ResNet18) is :func:`eva_utils.recipe.torchvision_classifier`.
"""

from __future__ import annotations

import difflib
import os
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from eva_utils.core.devices import COMPUTE_DEVICES, resolve_device
from eva_utils.core.errors import CheckpointError, DataNotFoundError, UserError, first_line, unknown_name
from eva_utils.core.safe_load import RefusedPickleError, safe_load, state_dict_mismatch
from eva_utils.data.cifar10 import CIFAR10_CLASSES
from eva_utils.data.images import Preset, cifar_preset, imagenet_preset
from eva_utils.models import MODELS, get_model, model_key
from eva_utils.models.msdnet import load_msdnet_gcn_checkpoint
from eva_utils.models.shipped import PRETRAINED, pretrained
from eva_utils.training.checkpoint import FORMAT, load_trained_model

__all__ = [
    "Classifier",
    "WeightsDownloadError",
    "load_model",
    "torchvision_names",
]

# A source with one of these suffixes (or a folder in it) is a file, not a model name.
_FILE_SUFFIXES = (".pt", ".pth", ".tar", ".bin", ".ckpt", ".pkl", ".jit", ".ts", ".zip", ".pt2")
_NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "network")


class Classifier(NamedTuple):
    """A model ready to explain, with what is needed to feed and read it."""

    model: nn.Module  # in eval mode, on the requested device
    classes: tuple[str, ...] | None  # class names, index = output; None when unknown
    preset: Preset  # how to preprocess images for it
    description: str  # one line: what was loaded, from where



class WeightsDownloadError(UserError):
    """Pretrained weights could not be downloaded (no internet, a proxy, a full disk)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# ----------------------------------------------------------------------------- names


def torchvision_names() -> list[str]:
    """Names of torchvision's image classification models (``resnet50``, ``vgg16``, ``vit_b_16``, ...)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _eva_names() -> list[str]:
    return sorted(MODELS)


def _unknown_model(name: str, what: str) -> UserError:
    names = torchvision_names() + [f"eva_utils.{n}" for n in _eva_names()]
    close = difflib.get_close_matches(name.lower(), names + _eva_names(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return UserError(
        f"unknown model {name!r}{hint} ({what} is a torchvision classification model name, e.g. resnet50, vgg16, "
        f"efficientnet_b0 - all {len(names) - len(_eva_names())} in torchvision.models.list_models(module=torchvision.models) - "
        f"or {', '.join(f'eva_utils.{n}' for n in _eva_names())})"
    )


def _candidates(arch: str, what: str = "a model") -> list[tuple[str, str]]:
    """The (family, name) pairs ``arch`` can mean: ``resnet18`` is both torchvision's and eva_utils's."""
    text = str(arch).strip()
    low = text.lower()

    eva_key = model_key(low.removeprefix("eva_utils."))
    if low.startswith("eva_utils."):
        if eva_key not in _eva_names():
            raise unknown_name("eva_utils model", text.split(".", 1)[1], _eva_names())
        return [("eva_utils", eva_key)]
    if low.startswith("torchvision."):
        low = low.removeprefix("torchvision.")
        if low not in torchvision_names():
            raise _unknown_model(text, what)
        return [("torchvision", low)]
    found = [("torchvision", low)] if low in torchvision_names() else []
    if eva_key in _eva_names():
        found.append(("eva_utils", eva_key))
    if not found:
        raise _unknown_model(text, what)
    return found


def _new_model(family: str, name: str, num_classes: int | None, width: int | None = None, weights: Any = None) -> nn.Module:
    kwargs: dict[str, Any] = {} if num_classes is None else {"num_classes": int(num_classes)}
    if family == "eva_utils":

        return get_model(name, width=None if width is None else int(width), **kwargs)
    import torchvision

    with warnings.catch_warnings():  # inception_v3 / googlenet warn about their future default init
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        return torchvision.models.get_model(name, weights=weights, **kwargs)


# ----------------------------------------------------------------------------- torchvision by name


def _weights(name: str, weights: str | None) -> Any:
    """The torchvision weights enum member ``weights`` names for model ``name`` (None for random)."""
    import torchvision

    if weights is None or str(weights).lower() in ("none", "random"):
        return None
    enum = torchvision.models.get_model_weights(name)
    if str(weights).lower() == "default":
        return enum.DEFAULT
    key = str(weights).removeprefix(f"{enum.__name__}.")
    if key not in enum.__members__:
        raise unknown_name(f"weights for {name}", str(weights), ["default", "none", *enum.__members__])
    return enum[key]


def _preset_of(weights: Any) -> Preset:
    """The evaluation preprocessing that goes with torchvision ``weights`` (sizes, mean, std)."""
    transform = weights.transforms()
    size = int(transform.crop_size[0])
    resize = int(transform.resize_size[0])
    return Preset("imagenet", size, max(resize, size), tuple(transform.mean), tuple(transform.std))


def _torchvision_by_name(name: str, weights: str | None, num_classes: int | None) -> Classifier:
    chosen = _weights(name, weights)
    if chosen is None:
        model = _new_model("torchvision", name, num_classes)
        return Classifier(model, None, imagenet_preset(), f"torchvision {name} with random weights")
    categories = tuple(chosen.meta["categories"])
    if num_classes is not None and num_classes != len(categories):
        raise UserError(
            f"the pretrained {name} weights have {len(categories)} classes, not {num_classes}; "
            f"use random weights (--weights none) for a {name} with {num_classes} classes"
        )
    try:
        model = _new_model("torchvision", name, None, weights=chosen)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a bad hash or blocked socket a RuntimeError
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise WeightsDownloadError(
            f"could not download the pretrained weights of {name} ({chosen}, {chosen.url}): {first_line(exc)}. "
            f"Without internet use random weights (--weights none, weights='none'), or copy the file into {cache}",
            first_line(exc),
        ) from exc
    return Classifier(model, categories, _preset_of(chosen), f"torchvision {name} with ImageNet weights {chosen}")


# ----------------------------------------------------------------------------- state dicts


def _state_dict_of(obj: Any) -> dict[str, torch.Tensor] | None:
    """The tensors of a state dict, also when nested (``{"state_dict": ...}``) or saved from DataParallel."""
    if not isinstance(obj, Mapping):
        return None
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = dict(obj)
        for prefix in ("module.", "_orig_mod."):  # DataParallel, torch.compile
            if all(k.startswith(prefix) for k in state):
                state = {k.removeprefix(prefix): v for k, v in state.items()}
        return state
    for key in _NESTED_STATE_KEYS:
        if key in obj:
            nested = _state_dict_of(obj[key])
            if nested is not None:
                return nested
    return None


def _head_size(state: Mapping[str, torch.Tensor]) -> int | None:
    """Number of classes: rows of the last weight matrix (the classifier, registered last)."""
    weights = [v for k, v in state.items() if k.endswith("weight") and v.ndim >= 2]
    return int(weights[-1].shape[0]) if weights else None


def _fit_state_dict(
    state: dict[str, torch.Tensor], arch: str, num_classes: int | None, source: str
) -> tuple[nn.Module, str, str]:
    """Build ``arch`` so that ``state`` loads exactly; returns (model, family, name)."""
    reasons = []
    for family, name in _candidates(arch, "--arch"):
        width = None
        if family == "eva_utils" and name.startswith("resnet") and "conv1.weight" in state:
            width = int(state["conv1.weight"].shape[0])
        try:
            model = _new_model(family, name, num_classes or _head_size(state), width)
        except (TypeError, ValueError) as exc:
            reasons.append(f"{family} {name} cannot be built ({first_line(exc)})")
            continue
        why = state_dict_mismatch(state, model)
        if why is None:
            model.load_state_dict(state)
            return model, family, name
        reasons.append(f"{family} {name}: {why}")
    raise CheckpointError(
        f"the weights in {source} do not fit --arch {arch} ({' | '.join(reasons)}); "
        f"check --arch (and --num-classes) against the model that saved them"
    )


def _describe_arch(model: nn.Module, family: str, name: str) -> str:
    out = _outputs_of(model)
    extras = [f"width {model.conv1.out_channels}"] if family == "eva_utils" and name.startswith("resnet") else []
    if out is not None:
        extras.append(f"{out} classes")
    return f"{family} {name}" + (f" ({', '.join(extras)})" if extras else "")


def _outputs_of(model: nn.Module) -> int | None:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return int(linears[-1].out_features) if linears else None


# ----------------------------------------------------------------------------- files


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives hold ``code/`` and ``constants.pkl``; torch.save archives do not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def _same_outputs(scripted: Any, model: nn.Module, size: int) -> float | None:
    """Largest output difference of the two models on one random input; None when either cannot run it."""
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))  # (1, 3, S, S)
    try:
        with torch.no_grad():
            expected, got = scripted.eval()(x), model.eval()(x)
    except (RuntimeError, ValueError):
        return None
    if not (isinstance(expected, torch.Tensor) and isinstance(got, torch.Tensor)) or expected.shape != got.shape:
        return float("inf")
    return float((expected - got).abs().max() / (1.0 + expected.abs().max()))


def _from_torchscript(path: Path, arch: str | None, num_classes: int | None) -> tuple[nn.Module, str, str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.* is deprecated in favour of torch.export
            scripted = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path} looks like a TorchScript model but cannot be loaded ({first_line(exc)})") from exc
    kind = getattr(scripted, "original_name", "model")
    if arch is None:
        raise UserError(
            f"{path} is a TorchScript model (a {kind}). PyTorch cannot hook the layers of a TorchScript model and "
            f"Grad-CAM needs hooks, so its weights are loaded into the Python architecture: say which with "
            f"--arch NAME (e.g. resnet18, vgg16, eva_utils.resnet18)"
        )
    model, family, name = _fit_state_dict(dict(scripted.state_dict()), arch, num_classes, str(path))
    gap = _same_outputs(scripted, model, 32 if family == "eva_utils" else 224)
    if gap is not None and gap > 1e-4:
        raise CheckpointError(
            f"the weights in {path} fit --arch {arch}, but the TorchScript model computes other outputs "
            f"(relative difference {gap:.2g}): its forward is not {family} {name}'s, so Grad-CAM would explain "
            f"another function; save the Python model's state_dict instead"
        )
    return model, family, name


def _torch_load(path: Path, unsafe_pickle: bool) -> Any:
    """:func:`~eva_utils.safe_load.safe_load`; a pickled object only with ``unsafe_pickle``."""
    try:
        return safe_load(
            path,
            refused_hint="Only if you trust the file's origin, pass --unsafe-pickle (unsafe_pickle=True); safer, save "
                         "model.state_dict() and load it with --arch NAME",
            corrupt_hint="Expected a checkpoint, a state dict, a TorchScript model or a model saved with torch.save",
        )
    except RefusedPickleError:
        if not unsafe_pickle:
            raise
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (AttributeError, ImportError) as exc:
        raise UserError(
            f"{path} pickles a model whose class cannot be imported here ({first_line(exc)}); run from the project "
            f"that defines it, or save model.state_dict() there and load it with --arch NAME"
        ) from exc


def _from_file(path: Path, arch: str | None, num_classes: int | None, unsafe_pickle: bool) -> tuple[nn.Module, str, str]:
    """(model, family, description) for a model file."""
    if _is_torchscript(path):
        model, family, name = _from_torchscript(path, arch, num_classes)
        return model, family, f"{_describe_arch(model, family, name)} with the weights of the TorchScript model {path}"
    obj = _torch_load(path, unsafe_pickle)
    if isinstance(obj, nn.Module):
        family = "eva_utils" if type(obj).__module__.startswith("eva_utils.") else "pickled"
        return obj, family, f"{type(obj).__name__} unpickled from {path} (--unsafe-pickle)"
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        config = obj.get("config") or {}
        model = load_trained_model(path)
        what = ", ".join(f"{k} {config[k]}" for k in ("width", "num_classes", "data") if config.get(k) is not None)
        return model, "eva_utils", f"eva_utils {config.get('model')} ({what}) from the checkpoint {path} (epoch {obj.get('epoch')})"
    state = _state_dict_of(obj)
    if state is None:
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a model, a checkpoint or a state dict")
    if arch is None and all(k.removeprefix("module.").startswith("subnets.") for k in state):
        model = load_msdnet_gcn_checkpoint(path)  # the published MSD-Net's layout (MSDNet-GCN)
        return model, MSDNET_GCN, f"MSD-Net with {model.num_exits} exits from the MSDNet-GCN checkpoint {path}"
    if arch is None:
        raise UserError(
            f"{path} holds weights only (a state dict of {len(state)} tensors, e.g. {next(iter(state))}); say which "
            f"architecture they belong to with --arch NAME (e.g. resnet50, or eva_utils.resnet18) and, if needed, --num-classes"
        )
    model, family, name = _fit_state_dict(state, arch, num_classes, str(path))
    return model, family, f"{_describe_arch(model, family, name)} with the weights of the state dict {path}"


PRETRAINED_PREFIX = "pretrained:"
EVA, MSDNET_GCN = "eva_utils", "msdnet-gcn"


def _preset_for(family: str) -> Preset:
    """eva_utils models: CIFAR-10's normalisation; MSDNet-GCN's weights: ToTensor() only; others: ImageNet's."""
    if family == MSDNET_GCN:
        return cifar_preset(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    return cifar_preset() if family == EVA else imagenet_preset()


def _shipped(name: str, device: torch.device) -> Classifier:
    """A model that ships with eva_utils (``pretrained:<name>``), see :func:`eva_utils.models.pretrained`."""

    model = pretrained(name, device=device)
    return Classifier(model, CIFAR10_CLASSES, cifar_preset(), f"eva_utils {name}, shipped with the package: {PRETRAINED[name]}")


def _looks_like_path(source: str) -> bool:
    return "/" in source or os.sep in source or source.lower().endswith(_FILE_SUFFIXES)


def load_model(
    source: str | os.PathLike,
    arch: str | None = None,
    num_classes: int | None = None,
    weights: str | None = "default",
    unsafe_pickle: bool = False,
    device: str | torch.device | None = "cpu",
) -> Classifier:
    """Load a classifier from a torchvision name or a model file (see the module docstring).

    Args:
        source: a model name (``"vgg16"``, ``"eva_utils.resnet18"``) or a file path.
        arch: for state dicts and TorchScript files: the architecture, a torchvision name or an
            eva_utils one (``resnet18`` means whichever of the two the weights fit).
        num_classes: outputs of ``arch`` (default: read off the weights) or of a named model with random weights.
        weights: for torchvision names: ``"default"`` (the best ImageNet weights), ``"none"`` (random),
            or a weights name such as ``"IMAGENET1K_V1"``.
        unsafe_pickle: allow a fully pickled model; its file can run arbitrary code when loaded.
        device: where the model goes (``"auto"``/``None``: CUDA when available).

    Returns:
        A :class:`Classifier` in eval mode on ``device``.

    Raises:
        DataNotFoundError: a file that does not exist.
        CheckpointError: a file that is corrupt, refused (pickle), or does not fit ``arch``.
        WeightsDownloadError: the pretrained weights could not be downloaded.
        UserError: an unknown name, a state dict without ``arch``, and the like.
    """
    device = resolve_device(device, allow=(*COMPUTE_DEVICES, "meta"))  # meta: a stand-in GPU for tests
    if num_classes is not None and int(num_classes) < 1:
        raise UserError(f"num_classes must be a positive integer, got {num_classes}")
    if str(source).startswith(PRETRAINED_PREFIX):
        if arch is not None or num_classes is not None:
            raise UserError(f"{source} is a model shipped with eva_utils, with its own architecture and classes: "
                            "leave out --arch and --num-classes")
        return _shipped(str(source)[len(PRETRAINED_PREFIX):], device)
    path = Path(source)
    if path.is_dir():
        raise UserError(f"{path} is a folder; the model must be a file (a checkpoint, state dict, TorchScript model) or a name")
    if path.is_file():
        if not os.access(path, os.R_OK):
            raise DataNotFoundError(f"model file {path} cannot be read (permission denied)")
        model, family, description = _from_file(path, arch, num_classes, unsafe_pickle)
        classifier = Classifier(model, CIFAR10_CLASSES if family in (EVA, MSDNET_GCN) else None, _preset_for(family), description)
    elif _looks_like_path(str(source)):
        raise DataNotFoundError(f"model file {source} does not exist: check the path, or give a model name such as resnet50")
    else:
        family, name = _candidates(str(source))[0]  # a bare name: torchvision's first
        if family == "torchvision":
            classifier = _torchvision_by_name(name, weights, num_classes)
        else:
            model = _new_model(family, name, num_classes)
            classifier = Classifier(model, CIFAR10_CLASSES, cifar_preset(),
                                    f"eva_utils {name} with random weights (give a checkpoint file, or pretrained:NAME for a "
                                    "model that ships with eva_utils)")
    return classifier._replace(model=classifier.model.to(device).eval())
