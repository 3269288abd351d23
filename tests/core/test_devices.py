import subprocess
import sys
from pathlib import Path

import pytest
import torch

from eva_utils import training
from eva_utils.core.devices import resolve_device
from eva_utils.core.errors import UserError

SMALL_MSD = str(Path(__file__).parents[1] / "fixtures" / "msdnet_cifar10_3blocks_random.pth.tar")


def test_auto_and_cpu():
    assert resolve_device(None).type == resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert training.resolve_device is resolve_device  # the old home still works


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
@pytest.mark.parametrize("device, message", [
    ("cuda", "no GPU is available"),
    ("cuda:7", "no GPU is available"),
    ("mps", "'mps' is not supported"),
    ("meta", "'meta' is not supported"),
    ("gpu", "unknown device 'gpu'"),
])
def test_refused_devices_name_the_ones_that_exist(device, message):
    with pytest.raises(UserError, match=message) as exc:
        resolve_device(device)
    assert "no GPU" in str(exc.value)


def test_meta_only_where_asked_for():
    assert resolve_device("meta", allow=("cpu", "cuda", "meta")).type == "meta"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("command", [
    ["train", "--data", "sample", "--quiet"],
    ["cam", "--model", "pretrained:resnet18_w16_cifar10", "--images-path", "."],
    ["msd", "--checkpoint", SMALL_MSD],
])
@pytest.mark.parametrize("device", ["meta", "mps", "cuda:3"])
def test_every_command_refuses_a_device_it_cannot_use(tmp_path, command, device):
    out = ["--save_dir", str(tmp_path / "o")] if command[0] == "cam" else ["--out", str(tmp_path / "o")]
    result = subprocess.run([sys.executable, "-m", "eva_utils", *command, *out, "--device", device],
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert device in result.stderr
    assert not (tmp_path / "o").exists()


def test_a_missing_gpu_names_the_parameter_not_a_flag(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(UserError, match="no GPU is available: use device='cpu'") as exc:
        resolve_device("cuda")
    assert exc.value.param == "device" and "--device" not in str(exc.value)


def test_exact_float32_turns_tf32_off_inside_and_puts_both_flags_back_even_on_error():
    from eva_utils.core.devices import exact_float32

    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True  # as a user may set it for speed
    try:
        with pytest.raises(KeyError), exact_float32():
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
            raise KeyError("inside")
        assert torch.backends.cudnn.allow_tf32 == before[0] and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
