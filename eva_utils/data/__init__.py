"""The data layer: CIFAR-10 and your own arrays as data sets, seeded loaders, the preprocessing presets, image files.

Its names of eva_utils 0.1.0 are re-exported here from their modules (``eva_utils.data.X`` keeps working), with
``BatchTransform`` and ``DeviceLoader`` (the data set on the model's device, augmented there).
"""

# default_num_workers, is_npz_path and unknown_dataset are here too, for the library (not in __all__)
from eva_utils.data.arrays import DATASETS, is_npz_path, load_dataset, load_npz, unknown_dataset  # noqa: F401
from eva_utils.data.batch_transforms import BatchTransform
from eva_utils.data.cifar10 import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    ArrayDataset,
    denormalize,
    get_cifar10,
    load_sample,
    to_chw_float,
)
from eva_utils.data.device_loader import DeviceLoader
from eva_utils.data.loaders import SeededLoader, default_num_workers, make_loader  # noqa: F401

__all__ = [
    "CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "DATASETS", "ArrayDataset", "BatchTransform", "DeviceLoader",
    "SeededLoader", "denormalize", "get_cifar10", "load_dataset", "load_npz", "load_sample", "make_loader",
    "to_chw_float",
]
