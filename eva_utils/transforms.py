"""Moved to :mod:`eva_utils.data.presets`; this path keeps working."""

from eva_utils.data.presets import test_transforms, train_transforms

__all__ = ["test_transforms", "train_transforms"]
