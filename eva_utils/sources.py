"""Moved to :mod:`eva_utils.models.loading`; this path keeps working."""

from eva_utils._compat import sources_imagenet_categories as imagenet_categories
from eva_utils._compat import sources_read_labels as read_labels
from eva_utils._compat import sources_torchvision_classifier as torchvision_classifier
from eva_utils.models.loading import *  # noqa: F403
from eva_utils.models.loading import __all__  # noqa: F401

__all__ = [*__all__, "read_labels", "imagenet_categories", "torchvision_classifier"]
