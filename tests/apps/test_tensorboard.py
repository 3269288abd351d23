"""Tests for eva_utils.apps.tensorboard: a run's logs, read back with TensorBoard's own event reader (``EventAccumulator``).

Run: python -m pytest tests/apps/test_tensorboard.py -q    (CPU, under a minute; skipped without tensorboard)
"""

from __future__ import annotations

import builtins
import shutil

import numpy as np
import pytest

from eva_utils.apps.cli import main
from eva_utils.apps.runs import run_training
from eva_utils.apps.tensorboard import TensorBoardLogger
from eva_utils.core.errors import UserError
from eva_utils.training.recipe import TrainConfig


def _events(log_dir):
    pytest.importorskip("tensorboard", reason='TensorBoard is an optional extra: pip install "eva-utils[tensorboard]"')
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def test_tensorboard_logs_read_back_with_tensorboards_own_reader(tmp_path):
    pytest.importorskip("tensorboard", reason='TensorBoard is an optional extra: pip install "eva-utils[tensorboard]"')
    config = TrainConfig.demo(epochs=2, max_batches=3, progress=False, track_cams=2, width=4,
                              out=str(tmp_path / "run"), tensorboard=str(tmp_path / "tb"))
    result = run_training(config)
    events = _events(tmp_path / "tb")
    h = result.history
    for tag, values in (("accuracy/test", h.test_acc), ("accuracy/train", h.train_acc), ("loss/test", h.test_loss),
                        ("loss/train", h.train_loss)):
        logged = events.Scalars(tag)
        assert [e.step for e in logged] == [3, 6]  # epoch ends at the global step
        np.testing.assert_allclose([e.value for e in logged], values, rtol=1e-6)
    lrs = events.Scalars("lr")
    assert [e.step for e in lrs] == [1, 2, 3, 4, 5, 6]  # every step
    np.testing.assert_allclose([lrs[2].value, lrs[5].value], h.lr, rtol=1e-6)  # each epoch's last rate, as History
    images = events.Images("gradcam/layer4 (4x4 map)")
    assert [e.step for e in images] == [3, 6] and images[0].width == 64 and images[0].height == 32  # 2 images, tiled


def test_a_resumed_run_does_not_fork_the_curves(tmp_path):
    """Interrupted after epoch 3 had been logged, resumed from epoch 2's checkpoint: epoch 3 is logged once, anew."""
    pytest.importorskip("tensorboard", reason='TensorBoard is an optional extra: pip install "eva-utils[tensorboard]"')
    base = dict(TrainConfig.demo(max_batches=2, scheduler="none", progress=False, width=4).to_dict(),
                out=str(tmp_path / "run"), tensorboard=str(tmp_path / "tb"))
    run_training(TrainConfig(**{**base, "epochs": 2}))
    shutil.copyfile(tmp_path / "run" / "checkpoint.pt", tmp_path / "epoch2.pt")
    run_training(TrainConfig(**{**base, "epochs": 3}), resume=tmp_path / "run" / "checkpoint.pt")
    again = run_training(TrainConfig(**{**base, "epochs": 3, "out": str(tmp_path / "again")}), resume=tmp_path / "epoch2.pt")
    logged = _events(tmp_path / "tb").Scalars("accuracy/test")
    assert [e.step for e in logged] == [2, 4, 6]
    assert logged[-1].value == pytest.approx(again.history.test_acc[-1])
    assert [e.step for e in _events(tmp_path / "tb").Scalars("lr")] == [1, 2, 3, 4, 5, 6]


def test_without_tensorboard_the_flag_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith(("torch.utils.tensorboard", "tensorboard")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(UserError, match=r'pip install "eva-utils\[tensorboard\]"'):
        TensorBoardLogger(tmp_path / "tb")
    code = main(["train", "--data", "sample", "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb"),
                 "--max-batches", "2", "--epochs", "2", "--device", "cpu", "--quiet"])
    assert code == 2 and 'eva-utils[tensorboard]' in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_the_old_path_keeps_the_logger():
    import eva_utils.tracking

    assert eva_utils.tracking.TensorBoardLogger is TensorBoardLogger
