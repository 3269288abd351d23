"""Models: CIFAR ResNets (kuangliu layout), Page's custom ResNet, MSD-Net, a registry, THE loader, a CPU/CUDA-safe summary.

``get_model("resnet18", num_classes=10, width=64)`` builds by name; ``pretrained(name)`` loads a model trained by
this project that ships with the package (see :data:`PRETRAINED`); ``loading.load_model(source)`` turns any name or
model file into a model; ``summary(model)`` prints layer shapes and parameter counts.
"""

# the module eva_utils.models.msdnet first: the function msdnet below then keeps its name here, as in 0.1.0
import eva_utils.models.msdnet  # noqa: F401  (isort: skip)
from eva_utils.models.custom_resnet import CustomResNet, custom_resnet
from eva_utils.models.loading import load_msdnet_gcn_checkpoint
from eva_utils.models.msdnet_config import MSDNetConfig
from eva_utils.models.msdnet_gcn import download_msdnet_gcn_checkpoint
from eva_utils.models.msdnet_model import MSDNet, msdnet
from eva_utils.models.registry import MODELS, PRETRAINED, get_model, model_key
from eva_utils.models.resnet import BasicBlock, ResNet, resnet18, resnet34
from eva_utils.models.shipped import pretrained
from eva_utils.models.summary import summary

__all__ = [
    "MODELS", "PRETRAINED", "BasicBlock", "CustomResNet", "MSDNet", "MSDNetConfig", "ResNet", "custom_resnet",
    "download_msdnet_gcn_checkpoint", "get_model", "model_key", "load_msdnet_gcn_checkpoint", "msdnet", "pretrained",
    "resnet18", "resnet34", "summary",
]
