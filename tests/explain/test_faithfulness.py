"""Tests for eva_utils.faithfulness, with pytorch-grad-cam's own metric classes as the oracle.

Run: python -m pytest tests/test_faithfulness.py -q    (CPU, about a minute)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
from pytorch_grad_cam.metrics.road import ROADCombined, ROADLeastRelevantFirstAverage, ROADMostRelevantFirstAverage
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget
from torch import nn

from eva_utils import data, plots
from eva_utils.core.errors import UserError
from eva_utils.data import presets as transforms
from eva_utils.explain.cam import layer_cams, predict_targets, resnet_layers
from eva_utils.explain.faithfulness import BASELINES, METRICS, baseline_maps, cam_faithfulness
from eva_utils.models import loading as sources

ATOL = 1e-5
pytestmark = pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")  # pytorch-grad-cam's ROAD on NumPy 2


def per_image(*args, **kwargs):
    return cam_faithfulness(*args, per_image=True, **kwargs)


@pytest.fixture(scope="module")
def shipped():
    """The trained ResNet18 (width 16) that ships with the package, with 32 real test images and their maps."""
    model = sources.load_model("pretrained:resnet18_w16_cifar10").model.eval()
    test_set = data.load_sample(train=False, transform=transforms.test_transforms())
    images = torch.stack([test_set[i][0] for i in range(32)])  # (32, 3, 32, 32)
    cams = layer_cams(model, images, resnet_layers(model))
    return model, images, cams


def _softmax_targets(model, images):
    return [ClassifierOutputSoftmaxTarget(int(c)) for c in predict_targets(model, images)]


def test_confidence_change_equals_pytorch_grad_cam(shipped):
    model, images, cams = shipped
    x, maps = images[:12], {name: cams[name][:12] for name in ("layer3", "layer4")}
    ours = per_image(model, x, maps, metrics=["drop_in_confidence", "increase_in_confidence"], batch_size=5)
    targets = _softmax_targets(model, x)
    for name, m in maps.items():
        np.testing.assert_allclose(ours[name]["drop_in_confidence"], DropInConfidence()(x, m, targets, model), atol=ATOL)
        np.testing.assert_array_equal(ours[name]["increase_in_confidence"], IncreaseInConfidence()(x, m, targets, model))


@pytest.mark.parametrize("metric, oracle", [
    ("road_morf", ROADMostRelevantFirstAverage), ("road_lerf", ROADLeastRelevantFirstAverage), ("road_combined", ROADCombined),
])
def test_road_equals_pytorch_grad_cam(shipped, metric, oracle):
    """Same seed, same noise: ROAD's imputation draws in pytorch-grad-cam's order, layer after layer."""
    model, images, cams = shipped
    x, maps = images[:6], {name: cams[name][:6] for name in ("layer2", "layer4")}
    ours = per_image(model, x, maps, metrics=[metric], batch_size=4, seed=7, baselines=())
    targets = _softmax_targets(model, x)
    torch.manual_seed(7)
    for name, m in maps.items():  # one generator across layers, as ours
        np.testing.assert_allclose(ours[name][metric], oracle()(x, m, targets, model), atol=ATOL)


def test_raw_logit_targets_are_scored_as_given(shipped):
    """pytorch-grad-cam callables pass through: ClassifierOutputTarget scores the logit, not the probability."""
    model, images, cams = shipped
    x, m = images[:4], cams["layer4"][:4]
    targets = [ClassifierOutputTarget(3)] * 4
    ours = per_image(model, x, m, targets=targets, metrics=["drop_in_confidence"], baselines=())
    np.testing.assert_allclose(ours["map"]["drop_in_confidence"], DropInConfidence()(x, m, targets, model), atol=ATOL)


class OneRegion(nn.Module):
    """Class 0's logit is 4 x the mean of channel 0 over the top-left 8x8 pixels; class 1's is 0. Nothing else counts."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Conv2d(3, 1, 1)  # so the image checks know it takes RGB

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = 4.0 * x[:, 0, :8, :8].mean((1, 2))
        return torch.stack([s, torch.zeros_like(s)], 1)


def test_deletion_and_insertion_have_the_known_answer():
    """A map on the region the model reads removes all its evidence in the first of 16 steps; its complement in the last."""
    x = torch.randn(3, 3, 32, 32)
    x[:, 0, :8, :8] = 1.0  # class 0 at sigmoid(4)
    region = np.zeros((3, 32, 32), np.float32)
    region[:, :8, :8] = 1.0
    table = per_image(OneRegion(), x, {"region": region, "elsewhere": 1 - region}, targets=0,
                                   metrics=["deletion_auc", "insertion_auc"], steps=16, insertion_baseline="mean",
                                   baselines=())
    p, q = torch.sigmoid(torch.tensor(4.0)).item(), 0.5  # confidence with the region, and with it at the mean (0)
    first_step = (p + q) / 2 / 16  # trapezoid over the one step where the region changes
    np.testing.assert_allclose(table["region"]["deletion_auc"], first_step + 15 * q / 16, atol=1e-6)
    np.testing.assert_allclose(table["elsewhere"]["deletion_auc"], 15 * p / 16 + first_step, atol=1e-6)
    np.testing.assert_allclose(table["region"]["insertion_auc"], first_step + 15 * p / 16, atol=1e-6)
    np.testing.assert_allclose(table["elsewhere"]["insertion_auc"], 15 * q / 16 + first_step, atol=1e-6)


def test_gradcam_beats_the_random_baseline_on_a_trained_model(shipped):
    model, images, cams = shipped
    table = cam_faithfulness(model, images, {"layer4": cams["layer4"]}, metrics=["deletion_auc", "insertion_auc"])
    assert table["layer4"]["deletion_auc"] < table["random"]["deletion_auc"] - 0.05
    assert table["layer4"]["insertion_auc"] > table["random"]["insertion_auc"] + 0.05
    assert list(table) == ["layer4", *BASELINES]


def test_all_metrics_and_layers_in_one_table(shipped):
    model, images, cams = shipped
    table = cam_faithfulness(model, images[:4], {k: v[:4] for k, v in cams.items()}, steps=8)
    assert list(table) == [*cams, *BASELINES]
    assert all(list(row) == list(METRICS) and all(np.isfinite(v) for v in row.values()) for row in table.values())
    fig = plots.plot_faithfulness(table, row_labels={"layer4": "layer4 (4x4)"})
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[4] == "layer4 (4x4)" and labels[-1] == "centre (baseline)"


def test_the_model_and_random_state_are_left_as_found(shipped):
    _, images, cams = shipped
    model = sources.load_model("pretrained:resnet18_w16_cifar10").model.train()
    model.layer1.eval()  # a frozen part stays frozen
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    per_image(model, images[:3], cams["layer4"][:3], steps=4)
    assert torch.equal(torch.rand(3), expected)  # the caller's generator was not advanced
    assert model.training and not model.layer1.training and model.layer2.training
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # BatchNorm statistics untouched
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_a_half_precision_model_is_scored_in_its_own_dtype(shipped):
    model, images, cams = shipped
    half = sources.load_model("pretrained:resnet18_w16_cifar10").model.to(torch.bfloat16)
    ours = cam_faithfulness(half, images[:4], cams["layer4"][:4], metrics=["deletion_auc"], steps=4, baselines=())
    ref = cam_faithfulness(model, images[:4], cams["layer4"][:4], metrics=["deletion_auc"], steps=4, baselines=())
    assert abs(ours["map"]["deletion_auc"] - ref["map"]["deletion_auc"]) < 0.05


def test_baselines():
    maps = baseline_maps(5, 32, 32, seed=0)
    assert maps["random"].shape == maps["centre"].shape == (5, 32, 32)
    assert maps["random"].min() == 0 and maps["random"].max() == pytest.approx(1)
    assert not np.allclose(maps["random"][0], maps["random"][1])  # a new map per image
    assert np.array_equal(maps["random"], baseline_maps(5, 32, 32, seed=0)["random"])
    centre = maps["centre"][0]
    assert centre[15:17, 15:17].min() == centre.max() and centre[0, 0] == 0


@pytest.mark.parametrize("percentiles", [[150], [-1, 50], [], ["ten"], [float("nan")], 50, "50"])
def test_road_percentiles_outside_0_to_100_are_refused_naming_the_parameter(shipped, percentiles):
    model, images, cams = shipped
    with pytest.raises(UserError, match="road_percentiles") as exc:
        per_image(model, images[:2], cams["layer4"][:2], metrics=["road_combined"], road_percentiles=percentiles)
    assert exc.value.param == "road_percentiles"


@pytest.mark.parametrize("kwargs, message", [
    ({"metrics": ["deletion"]}, "faithfulness metric"),
    ({"metrics": []}, "metrics is empty"),
    ({"cams": np.zeros((2, 16, 16), np.float32)}, "shape"),
    ({"cams": np.full((2, 32, 32), 2.0, np.float32)}, "values in \\[0, 1\\]"),
    ({"cams": {"random": np.zeros((2, 32, 32), np.float32)}}, "like a baseline"),
    ({"targets": [10, 10]}, "class 10 does not exist"),
    ({"targets": [1]}, "1 targets for 2 images"),
    ({"baselines": ["noise"]}, "baseline"),
    ({"steps": 0}, "steps"),
    ({"deletion_baseline": "black"}, "deletion_baseline"),
])
def test_bad_input_is_explained(shipped, kwargs, message):
    model, images, cams = shipped
    args = {"cams": cams["layer4"][:2], **kwargs}
    with pytest.raises(UserError, match=message):
        per_image(model, images[:2], **args)
    with pytest.raises(UserError, match="uint8"):
        per_image(model, torch.zeros(2, 3, 32, 32, dtype=torch.uint8), cams["layer4"][:2])
