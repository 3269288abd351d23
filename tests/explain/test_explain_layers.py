"""Tests for eva_utils.explain.layers: the one ResNet test (``is_resnet``) and where it is used.

(Named test_explain_layers.py because tests/test_layers.py, the package's layer rules, holds the plain name.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import torch
from torch import nn

import eva_utils
from eva_utils import models
from eva_utils.explain.layers import RESNET_MODULES, is_resnet, resnet_layers

PACKAGE = Path(eva_utils.__file__).parent
HOME = PACKAGE / "explain" / "layers.py"


def test_is_resnet_knows_the_eva_kuangliu_and_torchvision_layouts():
    import torchvision

    assert is_resnet(models.resnet18(width=4)) and is_resnet(torchvision.models.resnet18())
    assert not is_resnet(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()))
    assert list(resnet_layers(models.resnet18(width=4))) == [f"layer{i}" for i in range(5)]


def _asks_for_a_stage(node: ast.AST) -> bool:
    """``hasattr(x, "layer4")``, ``getattr(x, "layer1", ...)`` and the like: a ResNet test of its own."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr")
            and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in RESNET_MODULES[1:])


def test_only_explain_layers_tests_for_a_resnet():
    # one home per job: the CLI, the app, the report and layer_cams ask is_resnet(model)
    found = [f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
             for path in sorted(PACKAGE.rglob("*.py")) if path != HOME
             for node in ast.walk(ast.parse(path.read_text())) if _asks_for_a_stage(node)]
    assert not found, "use eva_utils.explain.layers.is_resnet:\n" + "\n".join(found)
    assert _asks_for_a_stage(ast.parse('hasattr(model, "layer4")').body[0].value)


def test_a_model_without_stages_is_no_resnet_even_with_a_relu():
    model = nn.Sequential()
    model.relu = nn.ReLU()
    model.layer1 = nn.Identity()
    assert not is_resnet(model)
    assert is_resnet(models.resnet18(width=4).to(torch.float64))
