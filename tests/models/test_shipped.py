"""The model that ships with the package: offline, checksummed, and as good as its description says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import eva_utils
from eva_utils import data, models
from eva_utils.core.errors import CheckpointError, UserError
from eva_utils.data import presets as transforms
from eva_utils.evaluation import metrics as evaluation
from eva_utils.models import loading, registry, shipped

NAME = "resnet18_w16_cifar10"


@pytest.fixture(scope="module")
def model():
    return models.pretrained(NAME)


def test_shipped_model_is_listed_with_a_one_line_description():
    assert NAME in models.PRETRAINED
    description = models.PRETRAINED[NAME]
    assert "\n" not in description and "%" in description
    info = shipped.pretrained_info(NAME)
    assert f"{100 * info.test_accuracy:.1f}%" in description


def test_shipped_model_is_in_eval_mode_float32_cpu(model):
    assert isinstance(model, models.ResNet) and not model.training
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert model.linear.out_features == 10 and model.conv1.out_channels == 16


def test_shipped_model_reaches_its_recorded_accuracy_on_the_bundled_test_images(model):
    test_set = data.load_sample(train=False, transform=transforms.test_transforms())
    pred = evaluation.predict(model, data.make_loader(test_set, batch_size=250, num_workers=0))
    recorded = shipped.pretrained_info(NAME).test_accuracy
    assert evaluation.accuracy(pred) == pytest.approx(recorded, abs=2e-3)  # 2 of 1,000 may flip with another BLAS
    assert recorded > 0.5  # a trained model, not chance (10%)


def test_training_history_is_the_run_that_made_it():
    history = shipped.training_history(NAME)
    assert history["epoch"] == list(range(1, len(history["epoch"]) + 1))
    assert history["test_acc"][-1] > history["test_acc"][0]


def test_unknown_name_lists_the_shipped_ones():
    with pytest.raises(UserError, match=f"valid pretrained model names: {NAME}"):
        models.pretrained("resnet18_w64_cifar10")


def test_damaged_weights_are_refused_by_their_checksum(monkeypatch):
    good = registry.read_weights(NAME)
    assert set(shipped.load_verified(good, NAME)) == set(models.resnet18(width=16).state_dict())  # the intact file loads
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF  # one flipped byte deep inside a tensor: torch would load it silently
    monkeypatch.setattr(loading, "read_weights", lambda name: bytes(damaged))  # the loader reads the file
    with pytest.raises(CheckpointError, match="damaged or was replaced.*reinstall eva-utils"):
        models.pretrained(NAME)


def test_export_writes_float16_weights_that_reload_to_the_same_outputs(tmp_path, model):
    sha = shipped.export_weights(model, tmp_path / "w.pt")
    state = torch.load(tmp_path / "w.pt", weights_only=True)
    assert shipped.sha256_of((tmp_path / "w.pt").read_bytes()) == sha
    assert state["conv1.weight"].dtype == torch.float16 and state["bn1.num_batches_tracked"].dtype == torch.int64
    again = models.resnet18(width=16)
    again.load_state_dict(state)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), model(x))  # the shipped weights are float16 already


def test_package_stays_under_20_mb():
    root = Path(eva_utils.__file__).parent
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert size < 20e6, f"the package holds {size / 1e6:.1f} MB"


def test_loads_offline_in_a_fresh_interpreter():
    code = f"from eva_utils import models; m = models.pretrained('{NAME}'); print(type(m).__name__, m.training)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "NO_PROXY": "*", "HTTPS_PROXY": "http://127.0.0.1:9"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ResNet False"
