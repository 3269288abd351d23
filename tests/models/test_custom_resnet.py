"""Tests for eva_utils.models.custom_resnet: Page's 9-layer ResNet as the course assigns it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from eva_utils import models
from eva_utils.explain.cam import layer_cams, map_sizes, resnet_layers
from eva_utils.models import loading
from eva_utils.models.custom_resnet import CUSTOM_RESNET_STAGES, CustomResNet, custom_resnet
from eva_utils.models.registry import get_model, model_key, width_keys
from eva_utils.models.summary import summary


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_full_width_has_the_course_repositories_parameter_count():
    model = custom_resnet()
    assert _count(model) == 6_573_130  # FC with bias, as the course's repositories print it
    assert _count(model) - model.fc.bias.numel() == 6_573_120  # without the FC's bias
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))  # BatchNorm follows every conv
    assert summary(model).total_params == 6_573_130  # torchinfo agrees


def test_the_layers_are_pages():
    model = custom_resnet(width=8)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 16, 16, 32, 64, 64, 64]  # prep, layer1 (+2), layer2, layer3 (+2)
    assert model.layer2.res is None and model.layer1.res is not None and model.layer3.res is not None
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert model.eval()(x).shape == (2, 10)
        mid = model.layer1.block(model.prep(x))
        torch.testing.assert_close(model.layer1(model.prep(x)), mid + model.layer1.res(mid))  # added back


def test_the_stages_grad_cam_explains_and_their_map_sizes():
    model = custom_resnet(width=8).eval()
    layers = resnet_layers(model)
    assert tuple(layers) == CUSTOM_RESNET_STAGES == ("prep", "layer1", "layer2", "layer3")
    assert map_sizes(model, layers, 32) == {"prep": (32, 32), "layer1": (16, 16), "layer2": (8, 8), "layer3": (4, 4)}
    maps = layer_cams(model, torch.randn(3, 3, 32, 32), layers)
    assert all(m.shape == (3, 32, 32) for m in maps.values())


def test_registry_names_and_width():
    assert model_key("CustomResNet") == model_key("custom-resnet") == "custom_resnet"
    model = get_model("custom_resnet", num_classes=7, width=16)
    assert isinstance(model, CustomResNet) and model.prep.conv.out_channels == 16 and model.fc.out_features == 7
    assert width_keys("custom_resnet").width == "prep.conv.weight"
    assert width_keys("msdnet") is None
    assert "custom_resnet" in models.MODELS


def test_a_state_dict_file_loads_back_with_its_width_read_from_the_weights(tmp_path):
    torch.manual_seed(0)
    model = custom_resnet(width=16).eval()
    torch.save(model.state_dict(), tmp_path / "custom.pt")
    loaded = loading.load_model(tmp_path / "custom.pt", arch="custom_resnet").model
    assert loaded.prep.conv.out_channels == 16
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


@pytest.mark.parametrize("width", [0, -1, 10**6, 2.5])
def test_a_width_that_cannot_be_is_refused(width):
    with pytest.raises(ValueError, match="width must be"):
        custom_resnet(width=width)
