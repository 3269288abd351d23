"""MSD-Net, in the MSDNet-GCN checkpoint layout: the names of ``eva_utils.models.msdnet`` in one place.

The model is :mod:`eva_utils.models.msdnet_model` (its hyper-parameters :mod:`~eva_utils.models.msdnet_config`),
the published checkpoint's download :mod:`~eva_utils.models.msdnet_gcn`; its file loads, like every model
file, through :mod:`eva_utils.models.loading`.
"""

from eva_utils.models.msdnet_config import MSDNetConfig, infer_msdnet_config
from eva_utils.models.msdnet_gcn import (
    MSDNET_GCN_CIFAR10_PAGE,
    MSDNET_GCN_CIFAR10_URL,
    download_msdnet_gcn_checkpoint,
    load_msdnet_gcn_checkpoint,
    verify_msdnet_gcn_download,
)
from eva_utils.models.msdnet_model import MSDNet, msdnet

__all__ = [
    "MSDNetConfig", "MSDNet", "msdnet", "infer_msdnet_config", "load_msdnet_gcn_checkpoint",
    "download_msdnet_gcn_checkpoint", "verify_msdnet_gcn_download", "MSDNET_GCN_CIFAR10_PAGE", "MSDNET_GCN_CIFAR10_URL",
]
