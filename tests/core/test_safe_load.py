"""The one safe torch loader refuses a damaged zip-format file before anything in it is used."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from eva_utils import models, training
from eva_utils.core.errors import CheckpointError
from eva_utils.core.safe_load import safe_load
from eva_utils.training import checkpoint

REPO = Path(__file__).parents[2]


def _flip_inside_weights(path: Path) -> None:
    """Flip 8 bytes in the middle of the stored data of the checkpoint's largest tensor record."""
    with zipfile.ZipFile(path) as archive:
        record = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.compress_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[record.header_offset + 26:record.header_offset + 30])
    middle = record.header_offset + 30 + name_len + extra_len + record.compress_size // 2
    data[middle:middle + 8] = bytes(b ^ 0xFF for b in data[middle:middle + 8])
    path.write_bytes(bytes(data))


@pytest.fixture
def damaged(tmp_path):
    """A training checkpoint (``eva-utils train``'s format) with bytes flipped inside a weight tensor."""
    torch.manual_seed(0)
    model = models.resnet18(width=4)
    opt = training.make_optimizer(model, "sgd", lr=0.1)
    path = checkpoint.save_checkpoint(tmp_path / "run" / "checkpoint.pt", model, opt, training.make_scheduler(opt, "step"),
                                      None, training.History(), 1, {"model": "resnet18", "width": 4, "num_classes": 10,
                                                                     "data": "sample"})
    assert isinstance(safe_load(path)["model"], dict)  # intact, it loads
    _flip_inside_weights(path)
    return path


def test_flipped_bytes_in_the_weights_are_refused_before_use(damaged):
    before = damaged.read_bytes()
    for load in (safe_load, checkpoint.load_checkpoint, checkpoint.load_trained_model):
        with pytest.raises(CheckpointError, match=r"is damaged: its record \S+/data/\d+ does not match the checksum"
                                                  r".*not used") as exc:
            load(damaged)
        assert "\n" not in str(exc.value)
    assert damaged.read_bytes() == before


@pytest.mark.parametrize("command", ["cam", "train"])
def test_the_command_line_refuses_a_damaged_checkpoint_in_one_line(tmp_path, damaged, command):
    before = damaged.read_bytes()
    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(tmp_path / "grey.png")
    args = {"cam": ["--model_path", str(damaged), "--images_path", str(tmp_path / "grey.png"),
                    "--save_dir", str(tmp_path / "out")],
            "train": ["--resume", "--out", str(damaged.parent), "--data", "sample", "--epochs", "2"]}[command]
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "eva_utils", command, *args], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "is damaged" in result.stderr
    assert damaged.read_bytes() == before
    assert sorted(p.name for p in damaged.parent.iterdir()) == ["checkpoint.pt"]


@pytest.mark.parametrize("content", [b"not a checkpoint\n", b"<html><body>404</body></html>", os.urandom(3000)])
def test_a_file_that_is_not_a_torch_file_is_named_in_a_short_line(tmp_path, content):
    # torch's weights-only refusal of such bytes is a paragraph advising weights_only=False: wrong advice for a file
    # that is not a torch file at all, and it made resume's one line 535 characters long
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="x.pt is not a readable PyTorch file") as info:
        safe_load(path)
    message = str(info.value)
    assert len(message) < 220 and "\n" not in message and "weights_only" not in message, message
