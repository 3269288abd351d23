import pytest
import torch
import torchvision

from eva_utils import models
from eva_utils.core.errors import UserError


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_resnet18_has_the_kuangliu_parameter_count():
    assert n_params(models.resnet18()) == 11_173_962


def test_resnet34_matches_torchvision_blocks_with_a_cifar_stem():
    # Same residual stages as torchvision's resnet34; only the stem (3x3 conv, no max-pool) and the head differ.
    ours = models.resnet34()
    ref = torchvision.models.resnet34(weights=None, num_classes=10)
    stages = lambda m: sum(n_params(getattr(m, f"layer{i}")) for i in range(1, 5))
    assert stages(ours) == stages(ref)
    assert n_params(ours) == 21_282_122


def test_state_dict_uses_kuangliu_names_and_stem_relu_adds_no_keys():
    keys = list(models.resnet18().state_dict())
    assert keys[:2] == ["conv1.weight", "bn1.weight"]
    assert "layer4.1.conv2.weight" in keys and "layer2.0.shortcut.0.weight" in keys
    assert keys[-2:] == ["linear.weight", "linear.bias"]
    assert not any(k.startswith("relu") for k in keys)


def test_stage_shapes_at_32x32():
    model = models.resnet18(width=8).eval()
    shapes = {}
    for name in ["relu", "layer1", "layer2", "layer3", "layer4"]:
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape)))
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert shapes == {"relu": (2, 8, 32, 32), "layer1": (2, 8, 32, 32), "layer2": (2, 16, 16, 16),
                      "layer3": (2, 32, 8, 8), "layer4": (2, 64, 4, 4)}


def test_width_and_num_classes():
    small = models.resnet18(num_classes=7, width=16)
    assert small(torch.randn(1, 3, 32, 32)).shape == (1, 7)
    assert n_params(small) < n_params(models.resnet18()) / 10


def test_get_model_by_name_and_unknown_name_lists_known_ones():
    assert isinstance(models.get_model("ResNet-18", width=4), models.ResNet)
    with pytest.raises(UserError, match="resnet18, resnet34"):
        models.get_model("vgg11")


def test_summary_runs_on_cpu_and_counts_parameters():
    stats = models.summary(models.resnet18(), (3, 32, 32))
    assert stats.total_params == 11_173_962
    assert "layer4" in str(stats)


def test_summary_leaves_training_mode():
    model = models.resnet18(width=4).train()
    models.summary(model)
    assert model.training
