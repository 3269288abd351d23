"""Where a model and its class names come from: torchvision names, model files, labels files.

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

``read_labels(path)`` reads class names from a Python dict or list literal (``{0: 'cat', 1: 'dog'}``,
parsed with ``ast.literal_eval``, never run), a JSON object or list, or one name per line.
``torchvision_classifier()`` is the notebooks' model: ImageNet weights when they can be
downloaded, otherwise the ResNet18 trained on CIFAR-10 that ships with the package.
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from . import data, training
from .checkpoint import FORMAT, load_trained_model
from .data import CIFAR10_CLASSES
from .devices import COMPUTE_DEVICES, resolve_device
from .errors import CheckpointError, DataNotFoundError, UserError, first_line, unknown_name
from .inputs import Preset, cifar_preset, imagenet_preset
from .models import MODELS, get_model, model_key
from .models.shipped import PRETRAINED, pretrained
from .safe_load import RefusedPickleError, safe_load

__all__ = [
    "Classifier",
    "WeightsDownloadError",
    "imagenet_categories",
    "load_model",
    "read_labels",
    "torchvision_classifier",
    "torchvision_names",
]

# A source with one of these suffixes (or a folder in it) is a file, not a model name.
_FILE_SUFFIXES = (".pt", ".pth", ".tar", ".bin", ".ckpt", ".pkl", ".jit", ".ts", ".zip", ".pt2")
_NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "network")


class Classifier(NamedTuple):
    """A model ready to explain, with what is needed to feed and read it."""

    model: nn.Module  # in eval mode, on the requested device
    categories: tuple[str, ...] | None  # class names, index = output; None when unknown
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


def _misfit(state: Mapping[str, torch.Tensor], model: nn.Module) -> str | None:
    """Why ``state`` does not load into ``model`` exactly, or None when it does."""
    current = model.state_dict()
    missing = sorted(current.keys() - state.keys())
    unexpected = sorted(state.keys() - current.keys())
    shapes = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(current[k].shape)}"
        for k in state.keys() & current.keys()
        if state[k].shape != current[k].shape
    )
    parts = []
    if missing:
        parts.append(f"{len(missing)} of the model's tensors are missing (e.g. {', '.join(missing[:2])})")
    if unexpected:
        parts.append(f"{len(unexpected)} tensors the model does not have (e.g. {', '.join(unexpected[:2])})")
    if shapes:
        parts.append(f"{len(shapes)} of another shape (e.g. {shapes[0]})")
    return "; ".join(parts) or None


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
        why = _misfit(state, model)
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
    if arch is None:
        raise UserError(
            f"{path} holds weights only (a state dict of {len(state)} tensors, e.g. {next(iter(state))}); say which "
            f"architecture they belong to with --arch NAME (e.g. resnet50, or eva_utils.resnet18) and, if needed, --num-classes"
        )
    model, family, name = _fit_state_dict(state, arch, num_classes, str(path))
    return model, family, f"{_describe_arch(model, family, name)} with the weights of the state dict {path}"


PRETRAINED_PREFIX = "pretrained:"


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
        eva = family == "eva_utils"
        classifier = Classifier(model, CIFAR10_CLASSES if eva else None, cifar_preset() if eva else imagenet_preset(), description)
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


# ----------------------------------------------------------------------------- class names


def imagenet_categories() -> tuple[str, ...]:
    """The 1,000 ImageNet class names that ship with torchvision (no download)."""
    import torchvision

    return tuple(torchvision.models.ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def _code_error(path: Path, node: ast.AST | None) -> UserError:
    what = f" (it calls {ast.unparse(node.func)[:40]})" if isinstance(node, ast.Call) else ""
    return UserError(
        f"labels file {path} contains Python code{what}, not labels; it was not run (labels are read as data, "
        f"never executed). Write a dict such as {{0: 'cat', 1: 'dog'}}, a JSON list, or one label per line"
    )


def _parse_literal(text: str, path: Path) -> Any:
    """The dict/list literal ``text`` holds; None when it is plain lines of names."""
    if text[0] in "{[":
        try:
            return json.loads(text)
        except ValueError:
            pass
    try:
        tree = ast.parse(text, mode="exec")
    except SyntaxError:
        if text[0] in "{[":
            raise UserError(
                f"labels file {path} starts like a dict or list but is not valid Python or JSON literal syntax; "
                f"expected e.g. {{0: 'cat', 1: 'dog'}}"
            ) from None
        return None  # plain lines, e.g. "great white shark"
    if len(tree.body) == 1 and isinstance(tree.body[0], (ast.Expr, ast.Assign)):
        node = tree.body[0].value  # `{...}` or `labels = {...}`
        if isinstance(node, (ast.Dict, ast.List, ast.Tuple)):
            try:
                return ast.literal_eval(node)
            except ValueError:
                raise _code_error(path, next((n for n in ast.walk(node) if isinstance(n, ast.Call)), None)) from None
    risky = (ast.Call, ast.Attribute, ast.Subscript, ast.Lambda, ast.Import, ast.ImportFrom, ast.Assign, ast.FunctionDef)
    code = next((n for n in ast.walk(tree) if isinstance(n, risky)), None)
    if code is not None:
        raise _code_error(path, code)
    return None  # lines of single words such as "cat"


def _labels_from(value: Any, path: Path) -> list[str]:
    if isinstance(value, Mapping):
        try:
            numbered = {int(k): v for k, v in value.items()}
        except (TypeError, ValueError):
            raise UserError(f"labels file {path}: the dict's keys must be class indices 0, 1, 2, ...") from None
        missing = sorted(set(range(len(numbered))) - numbered.keys())
        if missing:
            raise UserError(
                f"labels file {path}: the keys must be 0..{len(numbered) - 1} (one per class), but {missing[0]} is missing"
            )
        labels = [numbered[i] for i in range(len(numbered))]
    elif isinstance(value, (list, tuple)):
        labels = list(value)
    else:
        raise UserError(f"labels file {path} holds a {type(value).__name__}; expected a dict, a list or one label per line")
    bad = next((i for i, label in enumerate(labels) if not isinstance(label, str) or not label.strip()), None)
    if bad is not None:
        raise UserError(f"labels file {path}: label {bad} is {labels[bad]!r}, not a name")
    return [label.strip() for label in labels]


def read_labels(path: str | os.PathLike) -> tuple[str, ...]:
    """Class names from a labels file: a dict or list literal, JSON, or one name per line.

    The file is parsed as data (``json.loads`` / ``ast.literal_eval``), never run: a file
    holding code is refused.

    Args:
        path: e.g. ``imagenet1000_labels.txt`` holding ``{0: 'tench, Tinca tinca', 1: ...}``.

    Returns:
        The names, index = class.

    Raises:
        DataNotFoundError: no such file.
        UserError: not text, empty, code, keys that are not 0..K-1, or labels that are not strings.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"labels file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig").strip()
    except (UnicodeDecodeError, OSError) as exc:
        raise UserError(f"labels file {path} is not a readable text file ({first_line(exc)})") from exc
    if not text:
        raise UserError(f"labels file {path} is empty")
    value = _parse_literal(text, path)
    if value is None:
        return tuple(line.strip() for line in text.splitlines() if line.strip())
    labels = _labels_from(value, path)
    if not labels:
        raise UserError(f"labels file {path} holds no labels")
    return tuple(labels)


# ----------------------------------------------------------------------------- notebooks


SHIPPED_FALLBACK = "resnet18_w16_cifar10"


def torchvision_classifier(
    name: str = "resnet18",
    pretrained: bool = True,
    fallback: str = "shipped",
    epochs: int = 3,
    max_batches: int | None = None,
    input_size: int = 64,
    batch_size: int = 64,
    lr: float = 0.05,
    device: str | torch.device | None = None,
    progress: bool = True,
    seed: int = 0,
) -> Classifier:
    """A model to explain: a torchvision model with ImageNet weights if they download, else a trained CIFAR-10 one.

    With ``pretrained`` the ImageNet weights are tried first (preprocessing: ImageNet's, class
    names: ImageNet's). Without them, or when the download fails (no internet), ``fallback`` says
    what comes instead: ``"shipped"`` (default) the ResNet18 trained on all of CIFAR-10 that ships
    with eva_utils (``pretrained:resnet18_w16_cifar10``, 32x32 inputs, no training needed);
    ``"train"`` the architecture ``name`` with 10 outputs trained for ``epochs`` on the bundled
    CIFAR-10 sample with :func:`eva_utils.training.fit`, at ``input_size`` (CIFAR's 32 pixels
    upsampled: torchvision's ImageNet models shrink the input 32x before their last stage, so
    32x32 would leave 1x1 maps), a barely trained model.

    Args:
        name: a torchvision classification model name.
        pretrained: try the ImageNet weights first.
        fallback: ``"shipped"`` or ``"train"``, see above.
        epochs: epochs of the fallback training.
        max_batches: batches per pass of the fallback training (smoke runs).
        input_size: side of the fallback's input.
        batch_size: the fallback's batch size.
        lr: the fallback's peak learning rate (one-cycle SGD).
        device: ``None`` picks CUDA when available.
        progress: progress bars during the fallback training.
        seed: seeds the fallback training.

    Returns:
        A :class:`Classifier`; its ``description`` says which way it was made, and why.
    """

    if fallback not in ("shipped", "train"):
        raise unknown_name("fallback", fallback, ("shipped", "train"))
    why = "ImageNet weights not requested"
    if pretrained:
        try:
            return load_model(name, weights="default", device=device)
        except WeightsDownloadError as exc:
            why = f"the ImageNet weights could not be downloaded ({exc.reason})"
    if fallback == "shipped":
        shipped = load_model(PRETRAINED_PREFIX + SHIPPED_FALLBACK, device=device)
        return shipped._replace(description=f"{shipped.description} (instead of torchvision {name}: {why})")
    if name.lower() not in torchvision_names():
        raise _unknown_model(name, "the model")
    training.set_seed(seed)
    device = resolve_device(device)
    model = _new_model("torchvision", name.lower(), num_classes=10)
    preset = cifar_preset(size=input_size)
    train_loader = data.make_loader(data.load_sample(True, preset), batch_size, shuffle=True, num_workers=0, seed=seed)
    test_loader = data.make_loader(data.load_sample(False, preset), 256, num_workers=0)
    optimizer = training.make_optimizer(model, "sgd", lr=lr, weight_decay=5e-4)
    steps = min(max_batches or len(train_loader), len(train_loader))
    schedule = "onecycle" if epochs * steps >= 4 else "none"  # one-cycle needs a few steps to warm up and decay
    scheduler = training.make_scheduler(optimizer, schedule, epochs=epochs, steps_per_epoch=steps, max_lr=lr)
    history = training.fit(model, train_loader, test_loader, epochs, optimizer, scheduler, device=device,
                           max_batches=max_batches, progress=progress, seed=seed)
    description = (f"torchvision {name} with random initial weights, trained for {epochs} epoch{'s' if epochs != 1 else ''} on the bundled "
                   f"CIFAR-10 sample at {input_size}x{input_size} (test accuracy {100 * history.test_acc[-1]:.1f}%): {why}")
    return Classifier(model.eval(), CIFAR10_CLASSES, preset, description)
