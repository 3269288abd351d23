"""Tests for eva_utils.models.loading (THE loader): models from names and files, and that it is the only one.

Nothing here downloads: pretrained weights are only requested with torchvision's download
function replaced by one that fails as it does offline.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import eva_utils
from eva_utils import models
from eva_utils.core.errors import CheckpointError, DataNotFoundError, UserError
from eva_utils.data.cifar10 import CIFAR10_CLASSES
from eva_utils.models import loading as sources
from eva_utils.training import checkpoint


@pytest.fixture(scope="module")
def eva_model():
    torch.manual_seed(0)
    return models.resnet18(width=8).eval()


def _same_function(a: nn.Module, b: nn.Module, size: int) -> None:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x))


def _script(model: nn.Module, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(model), str(path))
    return path


# ----------------------------------------------------------------------------- names


def test_torchvision_name_with_random_weights():
    classifier = sources.load_model("resnet18", weights="none")
    assert isinstance(classifier.model, torchvision.models.ResNet) and not classifier.model.training
    assert classifier.classes is None
    assert (classifier.preset.name, classifier.preset.size) == ("imagenet", 224)
    assert sources.load_model("resnet18", weights="none", num_classes=7).model.fc.out_features == 7


def test_eva_utils_name():
    classifier = sources.load_model("eva_utils.resnet18", num_classes=10)
    assert isinstance(classifier.model, models.ResNet)
    assert classifier.classes == CIFAR10_CLASSES and classifier.preset.name == "cifar"


def test_unknown_name_lists_close_matches():
    with pytest.raises(UserError, match=r"unknown model 'vgg61'; did you mean vgg16|vgg19"):
        sources.load_model("vgg61")
    with pytest.raises(UserError, match="did you mean resnet18"):
        sources.load_model("eva_utils.resnet19")


def test_unknown_weights_name():
    with pytest.raises(UserError, match="IMAGENET1K_V1"):
        sources.load_model("resnet18", weights="IMAGENET_V9")


def test_download_failure_says_so_and_suggests_random_weights(offline):
    with pytest.raises(sources.WeightsDownloadError, match=r'could not download .*weights="none"') as info:
        sources.load_model("resnet18")
    assert "name resolution" in info.value.reason


def test_pretrained_weights_cannot_have_another_number_of_classes():
    with pytest.raises(UserError, match="have 1000 classes, not 10"):
        sources.load_model("resnet18", num_classes=10)


# ----------------------------------------------------------------------------- files


def test_eva_utils_training_checkpoint(tmp_path, eva_model):
    path = checkpoint.save_checkpoint(tmp_path / "checkpoint.pt", eva_model, None, None, None, None, 3,
                                      config={"model": "resnet18", "width": 8, "num_classes": 10, "data": "sample"})
    classifier = sources.load_model(path)
    assert classifier.classes == CIFAR10_CLASSES and classifier.preset.name == "cifar"
    assert "checkpoint" in classifier.description and "epoch 3" in classifier.description
    _same_function(classifier.model, eva_model, 32)


def test_state_dict_picks_the_architecture_it_fits(tmp_path, eva_model):
    torch.save(eva_model.state_dict(), tmp_path / "eva.pth")
    classifier = sources.load_model(tmp_path / "eva.pth", arch="resnet18")  # width 8 and 10 classes read off the weights
    assert isinstance(classifier.model, models.ResNet) and classifier.preset.name == "cifar"
    _same_function(classifier.model, eva_model, 32)
    tv = torchvision.models.resnet18(num_classes=3)
    torch.save({"epoch": 7, "state_dict": {f"module.{k}": v for k, v in tv.state_dict().items()}}, tmp_path / "tv.pth")
    classifier = sources.load_model(tmp_path / "tv.pth", arch="resnet18")  # nested, saved from DataParallel
    assert isinstance(classifier.model, torchvision.models.ResNet) and classifier.preset.name == "imagenet"
    assert "3 classes" in classifier.description
    _same_function(classifier.model, tv, 64)


def test_state_dict_needs_an_architecture_that_fits(tmp_path, eva_model):
    torch.save(eva_model.state_dict(), tmp_path / "eva.pth")
    with pytest.raises(UserError, match="holds weights only .*arch=NAME"):
        sources.load_model(tmp_path / "eva.pth")
    with pytest.raises(CheckpointError, match="do not fit arch=resnet34"):
        sources.load_model(tmp_path / "eva.pth", arch="resnet34")
    with pytest.raises(CheckpointError, match="another shape"):
        sources.load_model(tmp_path / "eva.pth", arch="resnet18", num_classes=100)
    with pytest.raises(UserError, match="did you mean resnet18"):
        sources.load_model(tmp_path / "eva.pth", arch="resnet19")


def test_torchscript_weights_go_into_the_python_architecture(tmp_path):
    tv = torchvision.models.resnet18(num_classes=5).eval()
    path = _script(tv, tmp_path / "model.ts")
    with pytest.raises(UserError, match="TorchScript model .*cannot hook .*arch=NAME"):
        sources.load_model(path)
    classifier = sources.load_model(path, arch="resnet18")
    assert isinstance(classifier.model, torchvision.models.ResNet)  # a Python module: hooks work
    _same_function(classifier.model, tv, 64)


class _Doubled(torchvision.models.ResNet):
    """Same weights as a ResNet18, another forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * self._forward_impl(x)


def test_torchscript_with_another_forward_is_refused(tmp_path):
    model = _Doubled(torchvision.models.resnet.BasicBlock, [2, 2, 2, 2], num_classes=5).eval()
    path = _script(model, tmp_path / "doubled.ts")
    with pytest.raises(CheckpointError, match="computes other outputs"):
        sources.load_model(path, arch="resnet18")


def test_pickled_model_only_with_unsafe_pickle(tmp_path, eva_model):
    torch.save(eva_model, tmp_path / "whole.pt")
    with pytest.raises(CheckpointError, match=r"pickled Python object \(eva_utils.models.resnet.ResNet\).*unsafe_pickle=True"):
        sources.load_model(tmp_path / "whole.pt")
    classifier = sources.load_model(tmp_path / "whole.pt", unsafe_pickle=True)
    assert classifier.preset.name == "cifar"
    _same_function(classifier.model, eva_model, 32)


@pytest.mark.parametrize("content", [b"", b"hello, not a model", b"PK\x03\x04 truncated zip"])
def test_unreadable_files(tmp_path, content):
    (tmp_path / "model.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match="is not a readable PyTorch file"):
        sources.load_model(tmp_path / "model.pt")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        sources.load_model(tmp_path / "model.pth")
    with pytest.raises(DataNotFoundError, match="does not exist"):
        sources.load_model("runs/nothing/checkpoint.pt")
    with pytest.raises(UserError, match="is a folder"):
        sources.load_model(tmp_path)


# ----------------------------------------------------------------------------- labels


def test_shipped_model_by_source_name_on_the_requested_device():
    classifier = sources.load_model("pretrained:resnet18_w16_cifar10", device="meta")  # meta stands in for a GPU
    assert {p.device.type for p in classifier.model.parameters()} == {"meta"}
    assert classifier.classes == CIFAR10_CLASSES and classifier.preset.name == "cifar"
    with pytest.raises(UserError, match="unknown pretrained model 'resnet18_w64'"):
        sources.load_model("pretrained:resnet18_w64")


def test_every_loader_puts_the_model_on_the_requested_device(tmp_path, eva_model):
    path = checkpoint.save_checkpoint(tmp_path / "checkpoint.pt", eva_model, None, None, None, None, 1,
                                      config={"model": "resnet18", "width": 8, "num_classes": 10})
    torch.save(eva_model.state_dict(), tmp_path / "weights.pt")
    for source, arch in [(path, None), (tmp_path / "weights.pt", "eva_utils.resnet18"), ("eva_utils.resnet18", None)]:
        model = sources.load_model(source, arch=arch, device="meta").model
        assert {p.device.type for p in model.parameters()} == {"meta"}, source


# ----------------------------------------------------------------------------- one home


PACKAGE = Path(eva_utils.__file__).parent
LOADER = "models/loading.py"
READERS = {"safe_load", "torch.load", "torch.jit.load", "jit.load"}  # what turns a file's bytes into tensors or a module
BUILDERS = {"get_model", "new_model", "MSDNet", "msdnet", "resnet18", "resnet34", "ResNet"}


def _called(node: ast.AST) -> str:
    """The dotted name a call calls (``torch.jit.load``, ``safe_load``, ``model.load_state_dict``)."""
    parts, func = [], node.func
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text())


def test_only_the_loader_reads_model_files():
    readers = []
    for name, tree in _modules():
        if name in (LOADER, "core/safe_load.py"):  # the loader, and the one safe torch.load that it calls
            continue
        readers += [f"{name}:{n.lineno} {_called(n)}" for n in ast.walk(tree)
                    if isinstance(n, ast.Call) and _called(n) in READERS]
    assert not readers, "model files are read only by eva_utils/models/loading.py:\n" + "\n".join(readers)


def test_only_the_loader_builds_a_model_and_loads_weights_into_it():
    builders = []
    for name, tree in _modules():
        if name == LOADER:
            continue
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            calls = {_called(n).split(".")[-1] for n in ast.walk(fn) if isinstance(n, ast.Call)}
            if "load_state_dict" in calls and calls & BUILDERS:
                builders.append(f"{name}:{fn.lineno} {fn.name}")
    assert not builders, "a model is built from weights only in eva_utils/models/loading.py:\n" + "\n".join(builders)


def _calls_in(module: str, function: str) -> set[str]:
    tree = ast.parse((PACKAGE / module).read_text())
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
    return {_called(n).split(".")[-1] for n in ast.walk(fn) if isinstance(n, ast.Call)}


def test_every_other_entry_point_is_the_loader_or_calls_it():
    import importlib

    import eva_utils.checkpoint
    import eva_utils.sources
    from eva_utils.models import msdnet_gcn

    msdnet = importlib.import_module("eva_utils.models.msdnet")  # the module (eva_utils.models.msdnet is the function)
    from eva_utils.training import checkpoint as training_checkpoint

    same = [(eva_utils.sources.load_model, sources.load_model),
            (eva_utils.checkpoint.load_trained_model, sources.load_trained_model),
            (training_checkpoint.rebuild_model, sources.rebuild_model),
            (msdnet.load_msdnet_gcn_checkpoint, sources.load_msdnet_gcn_checkpoint),
            (msdnet_gcn.load_msdnet_gcn_checkpoint, sources.load_msdnet_gcn_checkpoint),
            (models.load_msdnet_gcn_checkpoint, sources.load_msdnet_gcn_checkpoint)]
    assert all(old is new for old, new in same)
    assert "load_model" in _calls_in("models/shipped.py", "pretrained")
    assert "load_model" in _calls_in("apps/cli_msd.py", "_load")
    assert "read_trained_checkpoint" in _calls_in("training/checkpoint.py", "load_checkpoint")
    assert "load_msdnet_gcn_checkpoint" in _calls_in("models/msdnet_gcn.py", "download_msdnet_gcn_checkpoint")


def test_library_errors_name_the_parameter(tmp_path, eva_model):
    torch.save(eva_model.state_dict(), tmp_path / "eva.pth")
    with pytest.raises(UserError, match="arch=NAME") as info:
        sources.load_model(tmp_path / "eva.pth")
    assert info.value.param == "arch" and "--" not in str(info.value)
    with pytest.raises(UserError, match="leave out arch and num_classes") as info:
        sources.load_model("pretrained:resnet18_w16_cifar10", num_classes=10)
    assert info.value.param == "num_classes"
    with pytest.raises(UserError, match='random weights \\(weights="none"\\)') as info:
        sources.load_model("resnet18", num_classes=10)
    assert info.value.param == "weights"


def test_weights_with_nan_are_refused_by_the_loader(tmp_path, eva_model):
    state = {k: v.clone() for k, v in eva_model.state_dict().items()}
    state["linear.bias"][0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=r"nan.pt holds NaN or infinite weights \(first in linear.bias\)"):
        sources.load_model(tmp_path / "nan.pt", arch="resnet18")
    torch.save({k: v for k, v in eva_model.state_dict().items()}, tmp_path / "fine.pt")
    assert sources.load_model(tmp_path / "fine.pt", arch="resnet18").model is not None


def test_a_damaged_torchscript_file_is_refused_before_it_is_used(tmp_path):
    import struct
    import zipfile

    path = _script(models.resnet18(width=4).eval(), tmp_path / "model.ts")
    with zipfile.ZipFile(path) as archive:
        record = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.compress_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[record.header_offset + 26:record.header_offset + 30])
    middle = record.header_offset + 30 + name_len + extra_len + record.compress_size // 2
    data[middle:middle + 8] = bytes(b ^ 0xFF for b in data[middle:middle + 8])  # flipped bits inside a weight
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model.ts is damaged: its record .* does not match the checksum"):
        sources.load_model(path, arch="eva_utils.resnet18")
