"""eva_utils: train CNNs on CIFAR-10 and look inside them with Grad-CAM.

The package is split by concern into layers, each importing only the ones below it::

    apps        the command line, the Gradio app, reports, Colab helpers (the only layer that prints)
    plots       every figure
    explain     Grad-CAM (layer_cams), faithfulness, MSD-Net's exits, maps during training
    training    the engine (fit), checkpoints, torchrun, the default recipe
    evaluation  predictions, accuracy, confusion matrix
    models      ResNet18/34, MSD-Net, the shipped model, THE loader
    data        CIFAR-10, the bundled sample, loaders, the preprocessing presets, image files
    core        errors, atomic files, devices, the safe torch loader

The most used names are re-exported here, imported on first use (PEP 562) so that ``eva-utils --help`` starts
without torchvision or matplotlib; ``eva_utils.fit`` and ``from eva_utils import fit`` work as before.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# each module -> the names re-exported from it (the old module paths, e.g. ``eva_utils.cam``, still import)
_EXPORTS = {
    "eva_utils.data.cifar10": ("CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "denormalize", "get_cifar10",
                               "load_sample"),
    "eva_utils.data.loaders": ("make_loader",),
    "eva_utils.data.presets": ("test_transforms", "train_transforms"),
    "eva_utils.core.errors": ("CheckpointError", "DataNotFoundError", "UserError"),
    "eva_utils.models": ("get_model", "resnet18", "resnet34", "summary"),
    "eva_utils.evaluation.metrics": ("confusion_matrix", "misclassified", "per_class_accuracy", "predict"),
    "eva_utils.training.history": ("History",),
    # the engine's train_one_epoch and evaluate, also taking 0.1.0's argument order; find_lr with 0.1.0's .figure
    "eva_utils._compat": ("evaluate", "find_lr", "train_one_epoch"),
    "eva_utils.training.engine": ("fit",),
    "eva_utils.training.optim": ("make_optimizer", "make_scheduler", "set_seed"),
    "eva_utils.training.recipe": ("TrainConfig",),
    "eva_utils.apps.runs": ("run_training",),
    "eva_utils.explain.cam": ("layer_cams",),
    "eva_utils.explain.layers": ("resnet_layers",),
    "eva_utils.explain.faithfulness": ("cam_faithfulness",),
    "eva_utils.plots.cams": ("overlay", "show_layer_cams"),
    "eva_utils.plots.gallery": ("plot_confusion_matrix", "show_misclassified", "show_samples"),
    "eva_utils.plots.training": ("plot_history",),
}
_HOMES = {name: module for module, names in _EXPORTS.items() for name in names}  # public name -> its module
# the modules of 0.1.0, by their old paths
_MODULES = (
    "cam", "checkpoint", "data", "evaluation", "faithfulness", "inputs", "models", "multiexit", "plots", "recipe",
    "sources", "tracking", "training", "transforms",
)

__all__ = sorted([*_HOMES, *_MODULES, "__version__"])


def __getattr__(name: str) -> Any:
    """Import a re-exported name's home on first use."""
    if name in _MODULES:
        return importlib.import_module(f"eva_utils.{name}")
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'eva_utils' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
