"""Tests for eva_utils.cam, with pytorch-grad-cam (single target layer) as the oracle.

Run: python -m pytest tests/test_cam.py -q    (CPU, well under two minutes)
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_grad_cam import (
    AblationCAM,
    EigenCAM,
    EigenGradCAM,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from eva_utils import data, models, plots
from eva_utils.core.errors import UserError
from eva_utils.data import presets as transforms
from eva_utils.evaluation.localisation import pointing_game
from eva_utils.explain.cam import (
    CAM_METHODS,
    layer_cams,
    predict_targets,
    resnet_layers,
    resolve_layers,
)

ONE_PASS = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "hirescam": HiResCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
    "eigengradcam": EigenGradCAM,
    "gradcamelementwise": GradCAMElementWise,
}
ATOL = 1e-5


def reference(method_cls: type, model: nn.Module, layer: nn.Module, x: torch.Tensor, classes=None) -> np.ndarray:
    """pytorch-grad-cam's own map for one target layer: (N, H, W)."""
    targets = None if classes is None else [ClassifierOutputTarget(int(c)) for c in classes]
    with method_cls(model=model, target_layers=[layer]) as cam:
        return cam(input_tensor=x, targets=targets)


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max())


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    """The ResNet18 (width 16) that ships with the package, trained on all of CIFAR-10: real maps, loaded in ~0.1 s."""
    return models.pretrained("resnet18_w16_cifar10")


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Eight test images, one from each of eight classes: (8, 3, 32, 32) normalised, and labels (8,)."""
    test_set = data.load_sample(train=False, transform=transforms.test_transforms())
    items = [test_set[100 * c + 7] for c in range(8)]
    images = torch.stack([image for image, _ in items])
    labels = torch.tensor([label for _, label in items])
    return images, labels


def small_resnet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return models.resnet18(num_classes=10, width=4)


# ----------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("method", list(ONE_PASS))
def test_matches_pytorch_grad_cam_every_layer(trained, batch, method):
    images, labels = batch
    if method.startswith("eigen"):  # pytorch-grad-cam's full SVD costs ~0.05 s per image at 32x32
        images, labels = images[:2], labels[:2]
    layers = resnet_layers(trained)
    preds = predict_targets(trained, images)
    other = (labels + 3) % 10  # mostly not the predicted class
    modes = [(None, preds), ("true", labels), (other, other)]
    if method.startswith("eigen"):  # eigencam ignores the target; eigengradcam: two modes are enough
        modes = modes[:1] if method == "eigencam" else modes[::2]
    for targets, classes in modes:
        ours = layer_cams(trained, images, layers, targets=targets, labels=labels, method=method)
        assert set(ours) == set(layers)
        for name, layer in layers.items():
            ref = reference(ONE_PASS[method], trained, layer, images, classes if targets is not None else None)
            assert ours[name].dtype == np.float32 and ours[name].shape == (len(images), 32, 32)
            assert max_diff(ours[name], ref) <= ATOL, (method, name, targets)


def test_maps_are_in_unit_range_and_not_trivial(trained, batch):
    cams = layer_cams(trained, batch[0], resnet_layers(trained))
    for name, cam in cams.items():
        assert cam.min() >= 0.0 and cam.max() <= 1.0, name
        peaks = cam.reshape(len(cam), -1).max(1)
        # each map is scaled to peak at 1, or is all zero where no location speaks for the class
        # (pytorch-grad-cam gives the same zero map); such maps are the exception, not the rule
        assert ((peaks > 0.99) | (peaks == 0)).all(), name
        assert (peaks > 0.99).mean() >= 0.75, name


def test_batching_and_single_image(trained, batch):
    images, labels = batch
    whole = layer_cams(trained, images, ["layer2", "layer4"], targets=labels, batch_size=64)
    chunked = layer_cams(trained, images, ["layer2", "layer4"], targets=labels, batch_size=3)
    single = layer_cams(trained, images[5], ["layer2", "layer4"], targets=[int(labels[5])])  # (C, H, W)
    for name in whole:
        assert max_diff(whole[name], chunked[name]) <= ATOL
        assert single[name].shape == (1, 32, 32)
        assert max_diff(single[name][0], whole[name][5]) <= ATOL


def test_target_forms_agree(trained, batch):
    images, labels = batch
    ref = layer_cams(trained, images, ["layer3"], targets=labels)["layer3"]
    forms = [
        labels.tolist(),
        labels.numpy(),
        "true",
        [ClassifierOutputTarget(int(c)) for c in labels],
        [int(c) if i % 2 else ClassifierOutputTarget(int(c)) for i, c in enumerate(labels)],
    ]
    for targets in forms:
        got = layer_cams(trained, images, ["layer3"], targets=targets, labels=labels)["layer3"]
        assert max_diff(got, ref) <= ATOL
    one_class = layer_cams(trained, images, ["layer3"], targets=4)["layer3"]
    assert max_diff(one_class, layer_cams(trained, images, ["layer3"], targets=[4] * 8)["layer3"]) <= ATOL
    preds = predict_targets(trained, images)
    assert max_diff(layer_cams(trained, images, ["layer3"])["layer3"],
                    layer_cams(trained, images, ["layer3"], targets=preds)["layer3"]) <= ATOL


@pytest.mark.parametrize("method, method_cls", [("scorecam", ScoreCAM), ("ablationcam", AblationCAM)])
def test_delegated_methods_match(trained, batch, method, method_cls):
    images, labels = batch[0][:2], batch[1][:2]
    layers = {"layer3": trained.layer3, "layer4": trained.layer4}
    before = hook_counts(trained)
    ours = layer_cams(trained, images, layers, targets=labels, method=method)
    assert hook_counts(trained) == before
    assert not any(type(m).__name__ == "AblationLayer" for m in trained.modules())
    for name, layer in layers.items():
        ref = reference(method_cls, trained, layer, images, labels)
        assert max_diff(ours[name], ref) <= 1e-4, (method, name)


# ----------------------------------------------------------------------------- model left untouched


def hook_counts(model: nn.Module) -> list[int]:
    counts = []
    for m in model.modules():
        counts += [len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks),
                   len(m._backward_pre_hooks), len(getattr(m, "_forward_hooks_with_kwargs", {}))]
    counts += [len(p._backward_hooks or {}) for p in model.parameters()]
    return counts


def snapshot(model: nn.Module) -> dict:
    return {
        "modes": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "params": [p.detach().clone() for p in model.parameters()],
        "buffers": [b.clone() for b in model.buffers()],  # BN running stats and num_batches_tracked
        "hooks": hook_counts(model),
    }


def assert_same(before: dict, after: dict) -> None:
    assert before["modes"] == after["modes"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["hooks"] == after["hooks"]
    for a, b in zip(before["grads"], after["grads"], strict=True):
        assert (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))
    for key in ("params", "buffers"):
        assert all(torch.equal(a, b) for a, b in zip(before[key], after[key], strict=True)), key


def prepare(mode: str) -> nn.Module:
    model = small_resnet()
    model.train(mode != "eval")
    if mode == "mixed":
        model.layer2.eval()
    model.layer1[0].conv1.weight.requires_grad_(False)
    for i, p in enumerate(model.parameters()):  # some grads set, some None
        if i % 3 == 0:
            p.grad = torch.randn_like(p)
    return model


@pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
@pytest.mark.parametrize("method", ["gradcam", "eigencam", "scorecam"])
def test_model_left_as_found(mode, method):
    model = prepare(mode)
    images = torch.randn(3, 3, 16, 16)
    layers = ["layer0", "layer2", "layer4"] if method != "scorecam" else ["layer4"]
    before = snapshot(model)
    layer_cams(model, images, layers, method=method)
    assert_same(before, snapshot(model))
    with pytest.raises(UserError, match="10 classes"):
        layer_cams(model, images, layers, targets=[1, 2, 99], method=method)
    assert_same(before, snapshot(model))


def test_model_left_as_found_when_forward_raises():
    model = prepare("train")
    model.linear.register_forward_hook(lambda *_: (_ for _ in ()).throw(RuntimeError("boom")))
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        layer_cams(model, torch.randn(2, 3, 16, 16), resnet_layers(model))
    assert_same(before, snapshot(model))


def test_grad_mode_contexts(trained, batch):
    images, labels = batch
    ref = layer_cams(trained, images, ["layer1", "layer4"], targets=labels)
    with torch.no_grad():
        in_no_grad = layer_cams(trained, images, ["layer1", "layer4"], targets=labels)
    with torch.inference_mode():
        frozen_images = images.clone()  # an inference tensor
        in_inference = layer_cams(trained, frozen_images, ["layer1", "layer4"], targets=labels)
    for name in ref:
        assert max_diff(in_no_grad[name], ref[name]) <= ATOL
        assert max_diff(in_inference[name], ref[name]) <= ATOL


def test_frozen_parameters(trained, batch):
    images, labels = batch
    layers = list(resnet_layers(trained))  # names: each copy resolves them to its own modules
    ref = layer_cams(trained, images, layers, targets=labels, method="gradcam++")
    frozen = copy.deepcopy(trained)
    frozen.requires_grad_(False)
    partly = copy.deepcopy(trained)
    partly.requires_grad_(False)
    partly.layer3.requires_grad_(True)  # gradients start mid-network
    for model in (frozen, partly):
        flags = [p.requires_grad for p in model.parameters()]
        got = layer_cams(model, images, layers, targets=labels, method="gradcam++")
        assert [p.requires_grad for p in model.parameters()] == flags
        assert all(p.grad is None for p in model.parameters())
        for name in layers:
            assert max_diff(got[name], ref[name]) <= ATOL, name


# ----------------------------------------------------------------------------- other models


@pytest.fixture(scope="module")
def torchvision_resnet() -> nn.Module:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    with torch.no_grad():  # give BN non-trivial statistics, as after training
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model


def test_torchvision_resnet_inplace_relu(torchvision_resnet):
    model = torchvision_resnet
    assert model.relu.inplace
    images = torch.randn(3, 3, 64, 64)
    layers = resnet_layers(model)
    assert layers["layer0"] is model.relu
    for method in ("gradcam", "layercam"):
        ours = layer_cams(model, images, layers, method=method)
        for name, layer in layers.items():
            assert max_diff(ours[name], reference(ONE_PASS[method], model, layer, images)) <= ATOL, (method, name)


def out_of_place_block(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """torchvision's BasicBlock.forward without ``out += identity`` and in-place ReLUs."""
    identity = x if self.downsample is None else self.downsample(x)
    out = F.relu(self.bn1(self.conv1(x)))
    return F.relu(self.bn2(self.conv2(out)) + identity)


def test_output_overwritten_in_place_later(torchvision_resnet):
    """Outputs later overwritten in place (by ReLU(inplace=True), by ``out += identity``) are
    captured as the layer produced them: compared with pytorch-grad-cam on an out-of-place copy."""
    import types

    images = torch.randn(2, 3, 64, 64)
    names = ["bn1", "layer1.0.bn1", "layer4.1.bn2"]
    ours = layer_cams(torchvision_resnet, images, names, targets=[1, 2])
    out_of_place = copy.deepcopy(torchvision_resnet)
    out_of_place.relu.inplace = False
    for block in out_of_place.modules():
        if type(block).__name__ == "BasicBlock":
            block.forward = types.MethodType(out_of_place_block, block)
    for name in names:
        ref = reference(GradCAM, out_of_place, out_of_place.get_submodule(name), images, [1, 2])
        assert max_diff(ours[name], ref) <= ATOL, name


def test_shared_module_is_refused(torchvision_resnet):
    with pytest.raises(UserError, match="ran 2 times"):
        layer_cams(torchvision_resnet, torch.randn(1, 3, 64, 64), ["layer1.0.relu"])


class TwoExits(nn.Module):
    """A multi-exit network: an early classifier after layer2 and the final one; returns both."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base
        self.early = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.base
        out = b.layer2(b.layer1(b.relu(b.bn1(b.conv1(x)))))
        early = self.early(out.mean((2, 3)))
        final = b.linear(torch.flatten(b.pool(b.layer4(b.layer3(out))), 1))
        return early, final


class FirstOutput(nn.Module):
    """The early exit alone, as a single-output model pytorch-grad-cam can take."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[0]


def test_tuple_outputs():
    base = small_resnet().eval()
    model = TwoExits(base).eval()
    images = torch.randn(3, 3, 16, 16)
    names = ["base.layer1", "base.layer2", "base.layer4"]
    final = layer_cams(model, images, names, output_index=-1)
    plain = layer_cams(base, images, ["layer1", "layer2", "layer4"])
    for ours, theirs in zip(names, ["layer1", "layer2", "layer4"], strict=True):
        assert max_diff(final[ours], plain[theirs]) <= ATOL
    early = layer_cams(model, images, names[:2], output_index=0, targets=[0, 1, 2])
    ref = reference(GradCAM, FirstOutput(model), base.layer2, images, [0, 1, 2])
    assert max_diff(early["base.layer2"], ref) <= ATOL
    with pytest.raises(UserError, match="output_index"):
        layer_cams(model, images, names)
    with pytest.raises(UserError, match="does not influence"):
        layer_cams(model, images, ["base.layer4"], output_index=0)
    with pytest.raises(UserError, match="single tensor"):
        layer_cams(base, images, ["layer4"], output_index=1)
    with pytest.raises(UserError, match="does not exist"):
        layer_cams(model, images, ["base.layer4"], output_index=2)


# ----------------------------------------------------------------------------- layers and bad input


def test_resolve_layers_forms():
    model = small_resnet()
    by_name = resolve_layers(model, ["layer0", "layer4.1", "layer3"])
    assert by_name == {"layer0": model.relu, "layer4.1": model.layer4[1], "layer3": model.layer3}
    assert resolve_layers(model, [model.layer4[-1]]) == {"layer4.1": model.layer4[1]}
    assert resolve_layers(model, {"last": model.layer4}) == {"last": model.layer4}
    assert resolve_layers(model, "layer2") == {"layer2": model.layer2}
    assert resolve_layers(model, None) == resnet_layers(model)
    assert list(resnet_layers(model)) == ["layer0", "layer1", "layer2", "layer3", "layer4"]


def test_layer_errors():
    model = small_resnet()
    with pytest.raises(UserError, match="did you mean layer4") as err:
        resolve_layers(model, ["layer5"])
    assert "layer1" in str(err.value) and "linear" in str(err.value)
    with pytest.raises(UserError, match="layer4.0, layer4.1"):
        resolve_layers(model, ["layer4.7"])
    with pytest.raises(UserError, match="not part of this model"):
        resolve_layers(model, [small_resnet(1).layer4])
    with pytest.raises(UserError, match="relu, layer1"):
        resnet_layers(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()))
    with pytest.raises(UserError, match="not a \\(N, C, h, w\\) feature map"):
        layer_cams(model, torch.randn(1, 3, 16, 16), ["linear"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"images": torch.randn(2, 16, 16, 3)}, "channels-last.*permute"),
        ({"images": np.zeros((2, 16, 16, 3), np.uint8)}, "uint8.*test_transforms"),
        ({"images": torch.zeros(2, 3, 16, 16, dtype=torch.uint8)}, "uint8.*test_transforms"),
        ({"images": torch.randn(2, 5, 16, 16)}, "5 channels"),
        ({"targets": [1]}, "1 targets for 2 images.*silently"),
        ({"targets": [1, 2, 3]}, "3 targets for 2 images"),
        ({"targets": [1, 10]}, "10 is out of range.*10 classes"),
        ({"targets": [-1, 0]}, "-1 is out of range"),
        ({"targets": np.eye(10)[:2]}, "one-hot"),
        ({"targets": "true"}, "needs the labels"),
        ({"targets": "true", "labels": [3, 12]}, "label 12 is out of range"),
        ({"targets": "true", "labels": [3]}, "1 labels for 2 images"),
        ({"targets": "best"}, "not understood"),
        ({"method": "gradcamm"}, "did you mean gradcam"),
        ({"method": "fullgrad"}, "valid CAM method names"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_inputs(kwargs, match):
    model = small_resnet()
    args = {"images": torch.randn(2, 3, 16, 16), "layers": ["layer4"], **kwargs}
    with pytest.raises(UserError, match=match):
        layer_cams(model, **args)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_pixels_are_refused_not_explained_as_nan_maps(bad):
    model, images = small_resnet(), torch.randn(2, 3, 16, 16)
    images[1, 2, 5, 7] = bad
    with pytest.raises(UserError, match=r"not finite.*image 1") as exc:
        layer_cams(model, images, ["layer4"])
    assert exc.value.param == "images"
    with pytest.raises(UserError, match="not finite"):
        layer_cams(model, images.numpy(), ["layer4"], method="eigencam")


def test_method_names():
    model, images = small_resnet(), torch.randn(2, 3, 16, 16)
    assert {"gradcam", "gradcam++", "layercam", "eigencam", "scorecam"} <= set(CAM_METHODS)
    a = layer_cams(model, images, ["layer3"], method="GradCAMPlusPlus")["layer3"]
    b = layer_cams(model, images, ["layer3"], method="gradcam++")["layer3"]
    assert np.array_equal(a, b)


SIZE, SHAPE = 32, 9  # image and shape sizes in pixels


def shape_mask(kind: int) -> np.ndarray:
    """A SHAPE x SHAPE boolean stencil: 0 filled square, 1 plus sign, 2 ring."""
    yy, xx = np.mgrid[:SHAPE, :SHAPE]
    c = (SHAPE - 1) / 2
    if kind == 0:
        return np.ones((SHAPE, SHAPE), bool)
    if kind == 1:
        return (np.abs(yy - c) <= 1) | (np.abs(xx - c) <= 1)
    r = np.hypot(yy - c, xx - c)
    return (r <= c + 0.5) & (r >= c - 1.5)


def synthetic_shapes(n: int, seed: int, empty: bool) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Noisy (n, 3, 32, 32) images with one randomly coloured shape at a random place; labels; shape masks.

    Label 3 ("empty", only when ``empty``) is noise alone: it makes every shape class need evidence
    of its own, instead of being learned as "none of the others" (whose Grad-CAM is all zero).
    """
    rng = np.random.default_rng(seed)
    images = rng.normal(0.0, 0.3, (n, 3, SIZE, SIZE)).astype(np.float32)
    labels = rng.integers(0, 4 if empty else 3, n)
    masks = np.zeros((n, SIZE, SIZE), bool)
    for i, kind in enumerate(labels):
        if kind == 3:
            continue
        y, x = rng.integers(0, SIZE - SHAPE + 1, 2)
        stencil = shape_mask(kind)
        colour = rng.uniform(0.8, 1.6, 3).astype(np.float32)
        images[i][:, y:y + SHAPE, x:x + SHAPE][:, stencil] += colour[:, None]
        masks[i, y:y + SHAPE, x:x + SHAPE] = stencil
    return torch.from_numpy(images), torch.from_numpy(labels), masks


def test_pointing_game_on_synthetic_shapes():
    """Grad-CAM of a small trained CNN points at the shape for >= 90% of held-out images.

    Hit = the map's maximum within 1 pixel of the shape's bounding box (the last stage is
    16x16, upsampled to 32x32). Typical runs score 0.99-1.0; masks of other images score far lower.
    """
    torch.manual_seed(0)
    train_images, train_labels, _ = synthetic_shapes(1600, seed=0, empty=True)
    test_images, test_labels, test_masks = synthetic_shapes(300, seed=100, empty=False)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),  # last stage: (N, 32, 16, 16)
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 3),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(4):
        order = torch.randperm(len(train_images), generator=generator)
        for start in range(0, len(order), 64):
            idx = order[start:start + 64]
            # one-vs-rest: an empty image is all zeros, so each class logit must be driven by its shape
            target = F.one_hot(train_labels[idx], 4)[:, :3].float()
            loss = F.binary_cross_entropy_with_logits(model(train_images[idx]), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    assert (predict_targets(model, test_images) == test_labels.numpy()).mean() >= 0.95

    boxes = np.zeros_like(test_masks)
    for box, mask in zip(boxes, test_masks, strict=True):
        ys, xs = np.nonzero(mask)
        box[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
    cams = layer_cams(model, test_images, {"last": model[8]}, targets="true", labels=test_labels)["last"]
    score = pointing_game(cams, boxes, tolerance=1)
    shuffled = pointing_game(cams, np.roll(boxes, 1, axis=0), tolerance=1)
    assert score >= 0.9, score
    assert shuffled < 0.5, shuffled


# ----------------------------------------------------------------------------- precision


def _small_images(n=4):
    ds = data.load_sample(train=False, transform=transforms.test_transforms())
    return torch.stack([ds[i * 100][0] for i in range(n)])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_model_gets_float32_maps_and_is_left_as_it_was(dtype):
    torch.manual_seed(0)
    half = models.resnet18(width=8).to(dtype).eval()
    before = {k: v.clone() for k, v in half.state_dict().items()}
    reference = copy.deepcopy(half).float()  # the same weights, computed in float32
    x = _small_images()
    maps = layer_cams(half, x, resnet_layers(half))
    expected = layer_cams(reference, x, resnet_layers(reference))
    for name in expected:
        assert maps[name].dtype == np.float32
        np.testing.assert_allclose(maps[name], expected[name], atol=1e-5)
    assert all(p.dtype == dtype for p in half.parameters())
    assert all(torch.equal(before[k], v) for k, v in half.state_dict().items())


def test_maps_under_a_callers_autocast_equal_float32_maps():
    torch.manual_seed(0)
    model = models.resnet18(width=8).eval()
    x = _small_images()
    expected = layer_cams(model, x, resnet_layers(model))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        maps = layer_cams(model, x, resnet_layers(model))
    for name in expected:
        np.testing.assert_allclose(maps[name], expected[name], atol=1e-6)


def test_map_sizes_are_the_layers_own_resolutions():
    """What a figure writes under each layer: the feature map's size before layer_cams upsamples it."""
    import torchvision

    from eva_utils.explain.cam import map_sizes

    model = models.resnet18(width=8).train()
    sizes = map_sizes(model, resnet_layers(model), 32)
    assert sizes == {"layer0": (32, 32), "layer1": (32, 32), "layer2": (16, 16), "layer3": (8, 8), "layer4": (4, 4)}
    assert model.training and not any(m._forward_hooks for m in model.modules())
    tv = torchvision.models.resnet18()
    assert map_sizes(tv, resnet_layers(tv), (224, 160)) == {
        "layer0": (112, 80), "layer1": (56, 40), "layer2": (28, 20), "layer3": (14, 10), "layer4": (7, 5)}
    fig = plots.show_layer_cams(torch.zeros(1, 3, 32, 32), {"layer4": np.zeros((1, 32, 32), np.float32)}, [0], [0],
                                sizes={"layer4": (4, 4)})
    assert fig.axes[1].get_title() == "layer4\n4x4 map (coarse)"


# ----------------------------------------------------------------------------- registering a method


def test_a_registered_method_runs_in_the_same_pass(monkeypatch):
    """A method given by its weights function (pytorch-grad-cam's get_cam_weights) equals the built-in it copies."""
    from eva_utils.explain import cam

    monkeypatch.setattr(cam, "_REGISTRY", dict(cam._REGISTRY))  # the registration ends with the test
    key = cam.register_method("My-GradCAM", lambda acts, grads: grads.mean(axis=(2, 3)))
    eigen = cam.register_method("my eigen", lambda acts, grads: np.ones(acts.shape[:2], np.float32) * (grads is None),
                                needs_gradients=False)
    assert key == "mygradcam" and cam.method_key("my_gradcam") == key and eigen == "myeigen"
    model = small_resnet()
    x = torch.randn(3, 3, 16, 16)
    layers = resnet_layers(model)
    ours = layer_cams(model, x, layers, targets=[1, 2, 3], method="my-gradcam")
    theirs = layer_cams(model, x, layers, targets=[1, 2, 3], method="gradcam")
    for name in layers:
        assert max_diff(ours[name], theirs[name]) <= 1e-6, name
    summed = layer_cams(model, x, ["layer4"], method="myeigen")["layer4"]  # no backward: grads is None, weights 1
    assert summed.shape == (3, 16, 16) and summed.max() == pytest.approx(1.0)
    with pytest.raises(UserError, match="exists already"):
        cam.register_method("gradcam", lambda acts, grads: grads.mean(axis=(2, 3)))
    with pytest.raises(UserError, match="weights_fn must be a function"):
        cam.register_method("other", "not a function")


def test_maps_are_computed_without_tf32_and_the_callers_setting_is_kept():
    # on an H200 TF32 moved layer0's map by 1.4e-3 from pytorch-grad-cam's (5e-6 without): layer_cams turns it off
    model = models.resnet18(width=8).eval()
    seen = []
    model.conv1.register_forward_hook(lambda *_: seen.append(torch.backends.cudnn.allow_tf32))
    assert torch.backends.cudnn.allow_tf32  # torch's default
    layer_cams(model, _small_images(), resnet_layers(model))
    assert seen and not any(seen)
    assert torch.backends.cudnn.allow_tf32
