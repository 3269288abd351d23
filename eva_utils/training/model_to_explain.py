"""The notebooks' model to explain: torchvision's with ImageNet weights, else the shipped one, else a quick fit.

``fallback="train"`` needs the engine, hence this module's home here rather than in :mod:`eva_utils.models`.
"""

from __future__ import annotations

import torch

from eva_utils.core.errors import unknown_name
from eva_utils.data import cifar10 as data_lib
from eva_utils.data.loaders import make_loader
from eva_utils.data.presets import cifar_preset
from eva_utils.models.loading import PRETRAINED_PREFIX, Classifier, WeightsDownloadError, load_model, torchvision_names
from eva_utils.training.engine import fit
from eva_utils.training.optim import make_optimizer, make_scheduler, set_seed

__all__ = ["SHIPPED_FALLBACK", "torchvision_classifier"]

SHIPPED_FALLBACK = "resnet18_w16_cifar10"


def torchvision_classifier(name: str = "resnet18", pretrained: bool = True, fallback: str = "shipped",
                           epochs: int = 3, max_batches: int | None = None, input_size: int = 64, batch_size: int = 64,
                           lr: float = 0.05, device: str | torch.device | None = None, progress: bool = True,
                           seed: int = 0) -> Classifier:
    """A model to explain: a torchvision model with ImageNet weights if they download, else a trained CIFAR-10 one.

    With ``pretrained`` the ImageNet weights are tried first (ImageNet's preprocessing and class names). Without them,
    or when the download fails (no internet), ``fallback`` says what comes instead: ``"shipped"`` (default) the
    ResNet18 trained on all of CIFAR-10 that ships with eva_utils (``pretrained:resnet18_w16_cifar10``, 32x32 inputs);
    ``"train"`` the architecture ``name`` with 10 outputs barely trained for ``epochs`` on the bundled CIFAR-10 sample
    with :func:`~eva_utils.training.fit`, at ``input_size`` (upsampled: torchvision's ImageNet models shrink the input
    32x before their last stage, so 32x32 would leave 1x1 maps).

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
        raise unknown_name("torchvision model", name, torchvision_names())
    set_seed(seed)
    model = load_model(name.lower(), weights="none", num_classes=10, device=device).model
    preset = cifar_preset(size=input_size)
    train_loader = make_loader(data_lib.load_sample(True, preset), batch_size, shuffle=True, num_workers=0, seed=seed)
    test_loader = make_loader(data_lib.load_sample(False, preset), 256, num_workers=0)
    optimizer = make_optimizer(model, "sgd", lr=lr, weight_decay=5e-4)
    steps = min(max_batches or len(train_loader), len(train_loader))
    schedule = "onecycle" if epochs * steps >= 4 else "none"  # one-cycle needs a few steps to warm up and decay
    scheduler = make_scheduler(optimizer, schedule, epochs=epochs, steps_per_epoch=steps, max_lr=lr)
    history = fit(model, train_loader, test_loader, epochs, optimizer, scheduler, device=device,
                  max_batches=max_batches, progress=progress, seed=seed)
    description = (f"torchvision {name} with random initial weights, trained for {epochs} "
                   f"epoch{'s' if epochs != 1 else ''} on the bundled CIFAR-10 sample at {input_size}x{input_size} "
                   f"(test accuracy {100 * history.test_acc[-1]:.1f}%): {why}")
    return Classifier(model.eval(), data_lib.CIFAR10_CLASSES, preset, description)
