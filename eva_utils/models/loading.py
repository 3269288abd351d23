"""THE loader: where a model comes from, from a name or a file, in one place.

``load_model(source)`` returns a :class:`Classifier` (model, class names, preprocessing preset,
a one-line description) for any of these sources:

* ``"pretrained:<name>"``: a model trained by this project that ships with the package
  (:data:`eva_utils.models.PRETRAINED`), its file checked against the sha256 recorded for it;
* a torchvision classification model name (``"vgg16"``, ``"resnet50"``): pretrained ImageNet
  weights through torchvision's weights API (downloaded once into torch.hub's cache), or random
  weights with ``weights="none"``; ``"eva_utils.resnet18"`` names an eva_utils model;
* a checkpoint written by ``eva-utils train`` (format ``eva_utils.checkpoint/1``, :func:`load_trained_model`);
* an MSDNet-GCN checkpoint (``anytime_cifar_10.pth.tar``, :func:`load_msdnet_gcn_checkpoint`);
* a state dict (``torch.save(model.state_dict(), path)``) with ``arch`` (a torchvision or eva_utils name; the
  number of classes, and an eva_utils ResNet's width, are read off the weights). Weights holding NaN are refused;
* a TorchScript file (``torch.jit.save``) with ``arch``: its weights go into the Python architecture (Grad-CAM
  needs hooks, which TorchScript modules lack), then checked to compute the same outputs;
* a fully pickled model (``torch.save(model, path)``), only with ``unsafe_pickle=True``: unpickling
  runs code stored in the file. Everything else loads with ``torch.load(weights_only=True)``.

Every other entry point (``models.pretrained``, ``checkpoint.load_trained_model``, the command
lines) calls this module; what the files hold is checked in :mod:`eva_utils.models.checkpoint_format`.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from eva_utils.core.checks import positive_int
from eva_utils.core.devices import COMPUTE_DEVICES, resolve_device
from eva_utils.core.errors import CheckpointError, DataNotFoundError, UserError, first_line
from eva_utils.core.files import sha256_of
from eva_utils.core.safe_load import RefusedPickleError, check_crcs, safe_load, state_dict_mismatch
from eva_utils.data.cifar10 import CIFAR10_CLASSES
from eva_utils.data.presets import Preset, cifar_preset, imagenet_preset
from eva_utils.models.checkpoint_format import (
    FORMAT,
    NotATrainingCheckpoint,
    check_compatible,
    describe_config,
    head_size,
    is_torchscript,
    refuse_nonfinite,
    same_outputs,
    state_dict_of,
    stored_architecture,
    structure_problem,
)
from eva_utils.models.msdnet_config import MSDNetConfig, infer_msdnet_config, layout_mismatch
from eva_utils.models.msdnet_model import MSDNet
from eva_utils.models.names import WeightsDownloadError, candidates, new_model, torchvision_model, torchvision_names
from eva_utils.models.registry import get_model, pretrained_info, read_weights, width_keys

__all__ = [
    "Classifier", "PRETRAINED_PREFIX", "WeightsDownloadError", "load_model", "load_msdnet_gcn_checkpoint",
    "load_trained_model", "load_verified", "read_trained_checkpoint", "rebuild_model", "torchvision_names",
]

PRETRAINED_PREFIX = "pretrained:"
EVA, MSDNET_GCN = "eva_utils", "msdnet-gcn"
# A source with one of these suffixes (or a folder in it) is a file, not a model name.
_FILE_SUFFIXES = (".pt", ".pth", ".tar", ".bin", ".ckpt", ".pkl", ".jit", ".ts", ".zip", ".pt2")


class Classifier(NamedTuple):
    """A model ready to explain, with what is needed to feed and read it."""

    model: nn.Module  # in eval mode, on the requested device
    classes: tuple[str, ...] | None  # class names, index = output; None when unknown
    preset: Preset  # how to preprocess images for it
    description: str  # one line: what was loaded, from where


# ----------------------------------------------------------------------------- state dicts


def _fit_state_dict(state: dict[str, torch.Tensor], arch: str, num_classes: int | None,
                    source: str) -> tuple[nn.Module, str, str]:
    """Build ``arch`` so that ``state`` loads exactly; returns (model, family, name)."""
    reasons = []
    for family, name in candidates(arch, "arch", param="arch"):
        keys = width_keys(name) if family == EVA else None
        width = int(state[keys.width].shape[0]) if keys is not None and keys.width in state else None
        try:
            model = new_model(family, name, num_classes or head_size(state), width)
        except (TypeError, ValueError) as exc:
            reasons.append(f"{family} {name} cannot be built ({first_line(exc)})")
            continue
        why = state_dict_mismatch(state, model)
        if why is None:
            refuse_nonfinite(state, source)
            model.load_state_dict(state)
            return model, family, name
        reasons.append(f"{family} {name}: {why}")
    raise CheckpointError(f"the weights in {source} do not fit arch={arch} ({' | '.join(reasons)}); "
                          f"check arch (and num_classes) against the model that saved them", param="arch")


def _describe_arch(model: nn.Module, family: str, name: str) -> str:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    keys = width_keys(name) if family == EVA else None
    extras = ([f"width {model.get_parameter(keys.width).shape[0]}"] if keys is not None else []) + \
        ([f"{linears[-1].out_features} classes"] if linears else [])
    return f"{family} {name}" + (f" ({', '.join(extras)})" if extras else "")


# ----------------------------------------------------------------------------- the shipped models


def load_verified(data: bytes, name: str) -> dict[str, torch.Tensor]:
    """The state dict in ``data`` if its sha256 is the one recorded for ``name``; else :class:`CheckpointError`."""
    entry = pretrained_info(name)
    digest = sha256_of(data)
    if digest != entry.sha256:
        raise CheckpointError(f"the weights file of {name} ({entry.file}) is damaged or was replaced: its sha256 is "
                              f"{digest[:16]}..., expected {entry.sha256[:16]}...; reinstall eva-utils")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _shipped(name: str) -> Classifier:
    """A model that ships with eva_utils (``pretrained:<name>``), float32 on the CPU."""
    entry = pretrained_info(name)
    state = load_verified(read_weights(name), name)
    model = get_model(entry.arch, entry.num_classes, entry.width)
    model.load_state_dict(state)  # float16 tensors are copied into the float32 parameters
    return Classifier(model, CIFAR10_CLASSES, cifar_preset(), f"eva_utils {name}, shipped with the package: {entry.description}")


# ----------------------------------------------------------------------------- eva_utils checkpoints


def _checked_checkpoint(ckpt: Any, path: str | os.PathLike) -> dict[str, Any]:
    """``ckpt`` if it is a whole ``eva_utils.checkpoint/1`` checkpoint, else a :class:`CheckpointError`."""
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise NotATrainingCheckpoint(f"{path} is not an eva_utils training checkpoint (no '{FORMAT}' format tag); "
                                     "to load bare weights use model.load_state_dict(torch.load(path, weights_only=True))")
    problem = structure_problem(ckpt)
    if problem:
        raise CheckpointError(f"checkpoint {path} is damaged or incomplete ({problem}); the file was left as it is. "
                              "Resume from an earlier copy or start a new run in another output folder")
    return ckpt


def read_trained_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint written by ``eva-utils train``, read safely on the CPU and checked whole.

    Raises:
        DataNotFoundError: no such file.
        CheckpointError: truncated, corrupt, not an eva_utils checkpoint, or needing unsafe unpickling.
            The file itself is never modified.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"checkpoint {path} does not exist: check the path (a training run writes <out>/checkpoint.pt)")
    ckpt = safe_load(
        path,
        refused_hint="Only load files you trust; eva-utils train never writes such objects",
        corrupt_hint="The file was left as it is. Resume from an earlier copy or start a new run in another output folder",
    )
    return _checked_checkpoint(ckpt, path)


def rebuild_model(ckpt: dict[str, Any], path: str | os.PathLike = "checkpoint") -> nn.Module:
    """The model of a checkpoint already read with :func:`read_trained_checkpoint`, in eval mode (``path`` names it in errors)."""
    config = ckpt.get("config") or {}
    if not isinstance(config, dict) or "model" not in config:
        raise CheckpointError(f"checkpoint {path} does not say which model it holds (no 'model' in its config)")
    name, num_classes, width = stored_architecture(config, ckpt.get("model"), path)
    model = get_model(name, num_classes, width)
    check_compatible(ckpt["model"], model, f"checkpoint {path}", describe_config(config))
    model.load_state_dict(ckpt["model"])
    return model.eval()


def load_trained_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model saved by ``eva-utils train`` (or ``fit`` with a config naming the model).

    Returns:
        The model with its trained weights, in eval mode, on ``map_location``.
    """
    return rebuild_model(read_trained_checkpoint(path), path).to(map_location)  # read on the CPU: works for any device


# ----------------------------------------------------------------------------- MSDNet-GCN checkpoints


def _msdnet_from_state(state: Mapping[str, torch.Tensor], path: str | os.PathLike, config: MSDNetConfig | None) -> MSDNet:
    """An :class:`MSDNet` holding ``state`` exactly (its layout read off the keys when ``config`` is None)."""
    if config is None:
        try:
            config = infer_msdnet_config(state)
        except UserError as err:
            raise CheckpointError(f"{os.fspath(path)!r}: {err}") from err
    model = MSDNet(config)
    problems = layout_mismatch(config, state) or state_dict_mismatch(state, model, 3)
    if problems:
        raise CheckpointError(f"{os.fspath(path)!r} does not fit this MSDNet configuration: {problems}")
    refuse_nonfinite(state, repr(os.fspath(path)))
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_msdnet_gcn_checkpoint(path: str | os.PathLike[str], config: MSDNetConfig | None = None,
                               map_location: str | torch.device = "cpu") -> MSDNet:
    """Load an MSDNet-GCN checkpoint (e.g. ``anytime_cifar_10.pth.tar``) into an :class:`MSDNet`.

    The file is read with ``weights_only=True``. It may be the training script's dict (``epoch``, ``model``,
    ``state_dict``, ``best_prec1``) or a bare state dict; a ``module.`` prefix from ``nn.DataParallel`` is removed.
    The weights expect un-normalised ``ToTensor()`` inputs in [0, 1]: ``expects_normalized_input = False``.

    Args:
        path: the checkpoint file.
        config: the architecture; ``None`` infers blocks, layers per block and classes from the keys.
        map_location: the device the returned model is on (the file is read on the CPU, then moved).

    Returns:
        The model in eval mode, on ``map_location``.

    Raises:
        CheckpointError: (a ``ValueError``) the file holds pickled objects, is corrupt, or does not match ``config``.
    """
    obj = safe_load(
        path,
        refused_hint="Only if you trust its source, load it yourself with torch.load(..., weights_only=False) and "
                     "pass the state dict to model.load_state_dict",
        corrupt_hint="Download the checkpoint again (download_msdnet_gcn_checkpoint fetches the published one)",
    )
    state = state_dict_of(obj)
    if not state:
        keys = list(obj)[:6] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(f"{os.fspath(path)!r} holds neither a state dict nor a dict with a 'state_dict' entry "
                              f"(found {keys})")
    return _msdnet_from_state(state, path, config).to(map_location)


# ----------------------------------------------------------------------------- other files


def _from_torchscript(path: Path, arch: str | None, num_classes: int | None) -> tuple[nn.Module, str, str]:
    check_crcs(path)  # a TorchScript file is a zip too: changed bytes are refused before torch.jit.load reads them
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.* is deprecated in favour of torch.export
            scripted = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path} looks like a TorchScript model but cannot be loaded ({first_line(exc)})") from exc
    if arch is None:
        raise UserError(f"{path} is a TorchScript model (a {getattr(scripted, 'original_name', 'model')}). PyTorch cannot "
                        "hook the layers of a TorchScript model and Grad-CAM needs hooks, so its weights are loaded into the "
                        "Python architecture: say which with arch=NAME (e.g. resnet18, vgg16, eva_utils.resnet18)", param="arch")
    model, family, name = _fit_state_dict(dict(scripted.state_dict()), arch, num_classes, str(path))
    gap = same_outputs(scripted, model, 32 if family == EVA else 224)
    if gap is not None and gap > 1e-4:
        raise CheckpointError(f"the weights in {path} fit arch={arch}, but the TorchScript model computes other outputs "
                              f"(relative difference {gap:.2g}): its forward is not {family} {name}'s, so Grad-CAM would "
                              "explain another function; save the Python model's state_dict instead", param="arch")
    return model, family, name


def _torch_load(path: Path, unsafe_pickle: bool) -> Any:
    """:func:`~eva_utils.core.safe_load.safe_load`; a pickled object only with ``unsafe_pickle``."""
    try:
        return safe_load(path, refused_hint="Only if you trust the file's origin, pass unsafe_pickle=True (torch.load "
                                            "with weights_only=False); safer, save model.state_dict() and load it with arch=NAME",
                         corrupt_hint="Expected a checkpoint, a state dict, a TorchScript model or a model saved with torch.save")
    except RefusedPickleError as exc:
        if not unsafe_pickle:
            exc.param = "unsafe_pickle"
            raise
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (AttributeError, ImportError) as exc:
        raise UserError(f"{path} pickles a model whose class cannot be imported here ({first_line(exc)}); run from the "
                        f"project that defines it, or save model.state_dict() there and load it with arch=NAME") from exc


def _from_file(path: Path, arch: str | None, num_classes: int | None, unsafe_pickle: bool) -> tuple[nn.Module, str, str]:
    """(model, family, description) for a model file."""
    if is_torchscript(path):
        model, family, name = _from_torchscript(path, arch, num_classes)
        return model, family, f"{_describe_arch(model, family, name)} with the weights of the TorchScript model {path}"
    obj = _torch_load(path, unsafe_pickle)
    if isinstance(obj, nn.Module):
        family = EVA if type(obj).__module__.startswith("eva_utils.") else "pickled"
        return obj, family, f"{type(obj).__name__} unpickled from {path} (unsafe_pickle=True)"
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        model, config = rebuild_model(_checked_checkpoint(obj, path), path), obj.get("config") or {}
        what = ", ".join(f"{k} {config[k]}" for k in ("width", "num_classes", "data") if config.get(k) is not None)
        return model, EVA, f"eva_utils {config.get('model')} ({what}) from the checkpoint {path} (epoch {obj.get('epoch')})"
    state = state_dict_of(obj)
    if state is None:
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a model, a checkpoint or a state dict")
    if arch is None and all(k.startswith("subnets.") for k in state):  # the published MSD-Net's layout (MSDNet-GCN)
        model = _msdnet_from_state(state, path, None)
        return model, MSDNET_GCN, f"MSD-Net with {model.num_exits} exits from the MSDNet-GCN checkpoint {path}"
    if arch is None:
        raise UserError(f"{path} holds weights only (a state dict of {len(state)} tensors, e.g. {next(iter(state))}); say "
                        f"which architecture they belong to with arch=NAME (e.g. resnet50, or eva_utils.resnet18) and, "
                        f"if needed, num_classes", param="arch")
    model, family, name = _fit_state_dict(state, arch, num_classes, str(path))
    return model, family, f"{_describe_arch(model, family, name)} with the weights of the state dict {path}"


# ----------------------------------------------------------------------------- any source


def _preset_for(family: str) -> Preset:
    """eva_utils models: CIFAR-10's normalisation; MSDNet-GCN's weights: ToTensor() only; others: ImageNet's."""
    if family == MSDNET_GCN:
        return cifar_preset(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    return cifar_preset() if family == EVA else imagenet_preset()


def _from_path(path: Path, arch: str | None, num_classes: int | None, unsafe_pickle: bool) -> Classifier:
    if path.is_dir():
        raise UserError(f"{path} is a folder; the model must be a file (a checkpoint, state dict, TorchScript model) or a name")
    if not os.access(path, os.R_OK):
        raise DataNotFoundError(f"model file {path} cannot be read (permission denied)")
    model, family, description = _from_file(path, arch, num_classes, unsafe_pickle)
    return Classifier(model, CIFAR10_CLASSES if family in (EVA, MSDNET_GCN) else None, _preset_for(family), description)


def _from_name(source: str, weights: str | None, num_classes: int | None) -> Classifier:
    if source.startswith(PRETRAINED_PREFIX):
        return _shipped(source[len(PRETRAINED_PREFIX):])
    if "/" in source or os.sep in source or source.lower().endswith(_FILE_SUFFIXES):
        raise DataNotFoundError(f"model file {source} does not exist: check the path, or give a model name such as resnet50")
    family, name = candidates(source)[0]  # a bare name: torchvision's first
    if family == "torchvision":
        return Classifier(*torchvision_model(name, weights, num_classes))
    return Classifier(new_model(family, name, num_classes), CIFAR10_CLASSES, cifar_preset(),
                      f"eva_utils {name} with random weights (give a checkpoint file, or pretrained:NAME for a model "
                      "that ships with eva_utils)")


def load_model(source: str | os.PathLike, arch: str | None = None, num_classes: int | None = None,
               weights: str | None = "default", unsafe_pickle: bool = False,
               device: str | torch.device | None = "cpu") -> Classifier:
    """Load a classifier from a name or a model file (see the module docstring).

    Args:
        source: a model name (``"vgg16"``, ``"eva_utils.resnet18"``, ``"pretrained:resnet18_w16_cifar10"``) or a path.
        arch: for state dicts and TorchScript files: the architecture, a torchvision name or an eva_utils one
            (``resnet18`` means whichever of the two the weights fit).
        num_classes: outputs of ``arch`` (default: read off the weights) or of a named model with random weights.
        weights: for torchvision names: ``"default"`` (the best ImageNet weights), ``"none"`` (random), or a weights
            name such as ``"IMAGENET1K_V1"``.
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
    if num_classes is not None:
        num_classes = positive_int(num_classes, "num_classes")
    if str(source).startswith(PRETRAINED_PREFIX) and (arch is not None or num_classes is not None):
        raise UserError(f"{source} is a model shipped with eva_utils, with its own architecture and classes: "
                        "leave out arch and num_classes", param="arch" if arch is not None else "num_classes")
    path = Path(source)
    if path.exists():
        classifier = _from_path(path, arch, num_classes, unsafe_pickle)
    else:
        classifier = _from_name(str(source), weights, num_classes)
    return classifier._replace(model=classifier.model.to(device).eval())
