"""Tests for eva_utils.training.precision: autocast dtypes, the GradScaler, float32 on the CPU."""

import pytest
import torch

from eva_utils import training
from eva_utils.core.errors import UserError


@pytest.mark.parametrize(
    "capability, expected",
    [((7, 5), torch.float16), ((7, 0), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)],
    ids=["T4", "V100", "A100", "H100"],
)
def test_amp_uses_bf16_only_where_the_gpu_runs_it_natively(monkeypatch, capability, expected):
    # torch.cuda.is_bf16_supported() says yes on a T4 too (emulated, slow): the capability decides here.
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert training.amp_dtype(torch.device("cuda")) == expected


def test_no_autocast_and_no_scaler_on_the_cpu():
    precision = training.mixed_precision(torch.device("cpu"), amp=True)
    assert not precision.new_scaler().is_enabled()
    with precision.autocast():
        assert not torch.is_autocast_enabled("cpu")


def test_precision_refuses_a_dtype_autocast_cannot_use():
    with pytest.raises(UserError, match="bfloat16 or float16"):
        training.mixed_precision(torch.device("cpu"), torch.float64)
