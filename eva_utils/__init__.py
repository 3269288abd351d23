"""eva_utils: train CNNs on CIFAR-10 and look inside them with Grad-CAM.

Modules: ``data`` and ``transforms`` (CIFAR-10, the bundled sample, albumentations presets),
``models`` (ResNet18/34, MSD-Net), ``training`` and ``checkpoint`` (the engine), ``recipe``
(the default recipe), ``evaluation``, ``plots``, ``cam`` (Grad-CAM), ``faithfulness`` (how much a map explains),
``tracking`` (maps during training, TensorBoard), ``sources`` and ``inputs`` (any CNN
and its images), ``multiexit`` (MSD-Net's exits), ``report`` and ``cli``.
The most used names are re-exported here.
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import (
    cam,
    checkpoint,
    data,
    evaluation,
    faithfulness,
    inputs,
    models,
    multiexit,
    plots,
    recipe,
    sources,
    tracking,
    training,
    transforms,
)
from .cam import layer_cams, resnet_layers
from .data import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, denormalize, get_cifar10, load_sample, make_loader
from .errors import CheckpointError, DataNotFoundError, UserError
from .evaluation import confusion_matrix, misclassified, per_class_accuracy, predict
from .faithfulness import cam_faithfulness
from .models import get_model, resnet18, resnet34, summary
from .plots import overlay, plot_confusion_matrix, plot_history, show_layer_cams, show_misclassified, show_samples
from .recipe import TrainConfig, run_training
from .training import History, evaluate, find_lr, fit, make_optimizer, make_scheduler, set_seed, train_one_epoch
from .transforms import test_transforms, train_transforms

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CheckpointError",
    "DataNotFoundError",
    "History",
    "TrainConfig",
    "UserError",
    "__version__",
    "cam",
    "checkpoint",
    "confusion_matrix",
    "data",
    "denormalize",
    "evaluate",
    "evaluation",
    "cam_faithfulness",
    "faithfulness",
    "find_lr",
    "fit",
    "get_cifar10",
    "get_model",
    "inputs",
    "layer_cams",
    "load_sample",
    "make_loader",
    "make_optimizer",
    "make_scheduler",
    "misclassified",
    "models",
    "multiexit",
    "overlay",
    "per_class_accuracy",
    "plot_confusion_matrix",
    "plot_history",
    "plots",
    "predict",
    "recipe",
    "resnet18",
    "resnet34",
    "resnet_layers",
    "run_training",
    "set_seed",
    "show_layer_cams",
    "show_misclassified",
    "show_samples",
    "sources",
    "summary",
    "tracking",
    "test_transforms",
    "train_one_epoch",
    "train_transforms",
    "training",
    "transforms",
]
