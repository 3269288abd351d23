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

The most used names are re-exported here. They are imported on first use (PEP 562), so that
``eva-utils --help`` starts without torchvision or matplotlib; ``eva_utils.fit`` and
``from eva_utils import fit`` work as before.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it (the old module paths, e.g. ``eva_utils.cam``, still import)
_HOMES = {
    "CIFAR10_CLASSES": "eva_utils.data.cifar10",
    "CIFAR10_MEAN": "eva_utils.data.cifar10",
    "CIFAR10_STD": "eva_utils.data.cifar10",
    "denormalize": "eva_utils.data.cifar10",
    "get_cifar10": "eva_utils.data.cifar10",
    "load_sample": "eva_utils.data.cifar10",
    "make_loader": "eva_utils.data.loaders",
    "test_transforms": "eva_utils.data.presets",
    "train_transforms": "eva_utils.data.presets",
    "CheckpointError": "eva_utils.core.errors",
    "DataNotFoundError": "eva_utils.core.errors",
    "UserError": "eva_utils.core.errors",
    "get_model": "eva_utils.models",
    "resnet18": "eva_utils.models",
    "resnet34": "eva_utils.models",
    "summary": "eva_utils.models",
    "confusion_matrix": "eva_utils.evaluation.metrics",
    "misclassified": "eva_utils.evaluation.metrics",
    "per_class_accuracy": "eva_utils.evaluation.metrics",
    "predict": "eva_utils.evaluation.metrics",
    "History": "eva_utils.training.history",
    "evaluate": "eva_utils._compat",  # the engine's, also taking 0.1.0's argument order
    "find_lr": "eva_utils._compat",  # the lr_finder's, its result with 0.1.0's .figure
    "fit": "eva_utils.training.engine",
    "make_optimizer": "eva_utils.training.optim",
    "make_scheduler": "eva_utils.training.optim",
    "set_seed": "eva_utils.training.optim",
    "train_one_epoch": "eva_utils._compat",  # the engine's, also taking 0.1.0's argument order
    "TrainConfig": "eva_utils.training.recipe",
    "run_training": "eva_utils.apps.runs",
    "layer_cams": "eva_utils.explain.cam",
    "resnet_layers": "eva_utils.explain.layers",
    "cam_faithfulness": "eva_utils.explain.faithfulness",
    "overlay": "eva_utils.plots.cams",
    "plot_confusion_matrix": "eva_utils.plots.gallery",
    "plot_history": "eva_utils.plots.training",
    "show_layer_cams": "eva_utils.plots.cams",
    "show_misclassified": "eva_utils.plots.gallery",
    "show_samples": "eva_utils.plots.gallery",
}
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
