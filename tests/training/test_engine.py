"""Tests for eva_utils.training.engine: one epoch, evaluation, fit (resume, precision, multi-exit models)."""

import numpy as np
import pytest
import torch
from torch import nn

import eva_utils
from eva_utils import training
from eva_utils.core.errors import UserError
from eva_utils.models import resnet18
from eva_utils.training import engine


def _run(sample_loaders, epochs, checkpoint=None, resume=None, width=4, max_batches=3):
    training.set_seed(0)
    train_loader, test_loader = sample_loaders()
    model = resnet18(width=width)
    opt = training.make_optimizer(model, "sgd", lr=0.05)
    sched = training.make_scheduler(opt, "onecycle", epochs=3, steps_per_epoch=max_batches)
    return training.fit(model, train_loader, test_loader, epochs, opt, sched, device="cpu", seed=7,
                        checkpoint_path=checkpoint, resume=resume, max_batches=max_batches, progress=False), model, sched


def test_short_training_on_the_sample_lowers_the_loss(sample_loaders):
    training.set_seed(0)
    train_loader, test_loader = sample_loaders(batch_size=32, n_train=256, augment=False)
    model = resnet18(width=8)
    opt = training.make_optimizer(model, "adam", lr=2e-3, weight_decay=0)
    history = training.fit(model, train_loader, test_loader, 4, opt, device="cpu", progress=False)
    assert history.train_loss[-1] < 0.8 * history.train_loss[0]
    assert history.train_acc[-1] > history.train_acc[0]
    assert history.epoch == [1, 2, 3, 4] and len(history.lr) == 4


def test_resume_repeats_the_uninterrupted_run(sample_loaders, tmp_path):
    full, full_model, _ = _run(sample_loaders, 3)
    _run(sample_loaders, 2, checkpoint=tmp_path / "ck.pt")
    resumed, resumed_model, sched = _run(sample_loaders, 3, checkpoint=tmp_path / "ck2.pt", resume=tmp_path / "ck.pt")
    for key in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr"):
        assert getattr(resumed, key) == getattr(full, key), key
    for a, b in zip(full_model.state_dict().values(), resumed_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert sched.last_epoch == 9  # OneCycleLR stepped once per batch: 3 epochs x 3 batches


def test_evaluate_loss_is_the_mean_over_samples():
    torch.manual_seed(0)
    images, labels = torch.randn(5, 3, 8, 8), torch.tensor([0, 1, 2, 1, 0])
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 3))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=2)
    stats = training.evaluate(model, loader, device="cpu")
    expected = nn.functional.cross_entropy(model(images), labels).item()
    assert stats.loss == pytest.approx(expected, rel=1e-6)
    assert stats.acc == pytest.approx((model(images).argmax(1) == labels).float().mean().item())


def test_multi_exit_model_trains_on_mean_loss_and_reports_exit_accuracy():
    class TwoExits(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(192, 3), nn.Linear(192, 3)

        def forward(self, x):
            x = x.flatten(1)
            return [self.a(x), self.b(x)]

    torch.manual_seed(0)
    images, labels = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 1, 0, 2])
    model = TwoExits()
    crit = nn.CrossEntropyLoss()
    outs = model(images)
    assert training.multi_exit_loss(crit, outs, labels).item() == pytest.approx(
        (crit(outs[0], labels).item() + crit(outs[1], labels).item()) / 2)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=4)
    stats = training.evaluate(model, loader, device="cpu")
    assert len(stats.exit_acc) == 2 and stats.acc == stats.exit_acc[-1]
    opt = training.make_optimizer(model, "sgd", lr=0.1)
    history = training.fit(model, loader, loader, 2, opt, device="cpu", progress=False)
    assert len(history.test_exit_acc) == 2 and len(history.test_exit_acc[0]) == 2


def test_nan_loss_stops_with_epoch_and_batch():
    class Exploding(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(192, 3)
            self.calls = 0

        def forward(self, x):
            self.calls += self.training  # count training batches only
            out = self.fc(x.flatten(1))
            return out * float("nan") if self.training and self.calls == 3 else out

    images, labels = torch.randn(8, 3, 8, 8), torch.zeros(8, dtype=torch.long)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=4)
    model = Exploding()
    opt = training.make_optimizer(model, "sgd", lr=0.1)
    with pytest.raises(training.TrainingDivergedError, match="epoch 2, batch 1"):
        training.fit(model, loader, loader, 3, opt, device="cpu", progress=False)


class _OverflowScaler:
    """Stands in for fp16's GradScaler on its first batches: gradients overflow, the step is skipped."""

    def scale(self, loss):
        return loss

    def step(self, optimizer):
        return None

    def update(self):
        return None


def test_a_skipped_fp16_step_keeps_the_schedule_and_raises_no_warning(sample_loaders):
    import warnings

    training.set_seed(0)
    train_loader, _ = sample_loaders(batch_size=16, n_train=64)
    model = resnet18(width=4)
    opt = training.make_optimizer(model, "sgd", lr=0.05)
    sched = training.make_scheduler(opt, "onecycle", epochs=1, steps_per_epoch=4)
    before = {k: v.clone() for k, v in model.state_dict().items() if "weight" in k}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "lr_scheduler.step() before optimizer.step()" would raise
        training.train_one_epoch(model, train_loader, torch.nn.CrossEntropyLoss(), opt, device="cpu",
                                 scheduler=sched, scaler=_OverflowScaler(), max_batches=4, progress=False)
    assert sched.last_epoch == 4  # the schedule moved on for every batch
    assert all(torch.equal(before[k], model.state_dict()[k]) for k in before)  # no weight was updated


# ----------------------------------------------------------------------------- the CUDA path, on the CPU


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mixed_precision_and_channels_last_run_on_the_cpu(tmp_path, dtype, sample_loaders, conv1_spy):
    # the branch fit takes on a GPU, with CPU kernels: autocast, a GradScaler for fp16, NHWC inputs and weights
    training.set_seed(0)
    train_loader, test_loader = sample_loaders(batch_size=16, n_train=64)
    model = resnet18(width=4)
    spy = conv1_spy(model)
    opt = training.make_optimizer(model, "sgd", lr=0.05)
    history = training.fit(model, train_loader, test_loader, 1, opt, device="cpu", amp=dtype, channels_last="always",
                           max_batches=2, progress=False, checkpoint_path=tmp_path / "ck.pt")
    assert all(out == dtype for out in spy.outputs)  # autocast was on, in training and evaluation
    assert all(channels_last for _, channels_last in spy.inputs)
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert np.isfinite(history.train_loss[-1]) and np.isfinite(history.test_loss[-1])
    scaler = torch.load(tmp_path / "ck.pt", weights_only=True)["scaler"]
    assert bool(scaler) == (dtype == torch.float16)  # an enabled scaler's state is saved...
    if scaler:  # ...and an enabled scaler is restored from it on resume
        from eva_utils.training import checkpoint

        ckpt = checkpoint.load_checkpoint(tmp_path / "ck.pt")
        ckpt["scaler"]["scale"] = 1234.0
        fresh = training.mixed_precision(torch.device("cpu"), dtype).new_scaler()
        checkpoint.restore_training_state(ckpt, resnet18(width=4), None, None, fresh)
        assert fresh.get_scale() == 1234.0


def test_the_old_argument_order_still_works_with_a_deprecation_warning(sample_loaders):
    training.set_seed(0)
    train_loader, test_loader = sample_loaders(batch_size=16, n_train=32)
    model = resnet18(width=4)
    opt = training.make_optimizer(model, "sgd", lr=0.05)
    # the root's names are 0.1.0's (eva_utils._compat): the engine's functions, also in the old order
    with pytest.warns(DeprecationWarning, match="order of eva_utils 0.1.0"):
        old = eva_utils.evaluate(model, test_loader, torch.device("cpu"), max_batches=1)
    assert old == training.evaluate(model, test_loader, device="cpu", max_batches=1)
    with pytest.warns(DeprecationWarning, match="order of eva_utils 0.1.0"):
        stats = eva_utils.train_one_epoch(model, torch.nn.CrossEntropyLoss(), opt, train_loader, torch.device("cpu"),
                                          max_batches=1, progress=False)
    assert np.isfinite(stats.loss)


def test_the_old_order_through_the_layers_own_names_is_refused_in_words(sample_loaders):
    # eva_utils.training.* are the engine's plain functions: a 0.1.0-order call is told what to do, not misread
    from eva_utils.core.errors import UserError

    train_loader, test_loader = sample_loaders(batch_size=16, n_train=32)
    model = resnet18(width=4)
    opt = training.make_optimizer(model, "sgd", lr=0.05)
    with pytest.raises(UserError, match="0.1.0's argument order") as caught:
        training.train_one_epoch(model, torch.nn.CrossEntropyLoss(), opt, train_loader, progress=False)
    assert caught.value.param == "criterion"
    with pytest.raises(UserError, match="0.1.0's argument order"):
        training.evaluate(model, test_loader, torch.device("cpu"), max_batches=1)


def test_train_one_epoch_and_evaluate_show_their_parameters():
    import inspect

    for name, first in (("train_one_epoch", ["model", "train_loader", "criterion", "optimizer"]),
                        ("evaluate", ["model", "test_loader", "criterion"])):
        for function in (getattr(eva_utils, name), getattr(training, name), getattr(engine, name)):
            parameters = inspect.signature(function).parameters
            assert list(parameters)[:len(first)] == first and "device" in parameters and "amp" in parameters


def test_float16_epoch_without_the_runs_scaler_is_refused(sample_loaders):
    train_loader, _ = sample_loaders(batch_size=16, n_train=32)
    model = resnet18(width=4)
    opt = training.make_optimizer(model, "sgd", lr=0.05)
    with pytest.raises(UserError, match="needs the run's GradScaler"):
        training.train_one_epoch(model, train_loader, torch.nn.CrossEntropyLoss(), opt, amp=torch.float16, progress=False)


def test_fit_decides_the_precision_once(monkeypatch, sample_loaders):
    calls = []
    real = engine.mixed_precision
    monkeypatch.setattr(engine, "mixed_precision", lambda *a: calls.append(a) or real(*a))
    train_loader, test_loader = sample_loaders(batch_size=16, n_train=32)
    model = resnet18(width=4)
    opt = training.make_optimizer(model, "sgd", lr=0.05)
    training.fit(model, train_loader, test_loader, 3, opt, device="cpu", amp=torch.bfloat16, max_batches=1, progress=False)
    assert len(calls) == 1 + 2 * 3  # fit's own decision; each epoch only passes it on (a Precision is returned as is)
    assert all(isinstance(a[1], training.Precision) for a in calls[1:])


def test_running_out_of_memory_says_lower_the_batch_size_and_keeps_the_last_checkpoint(sample_loaders, tmp_path):
    # CUDA's OutOfMemoryError, raised by a stand-in forward in the second epoch (on a GPU: tests/test_on_cuda.py)
    training.set_seed(0)
    train_loader, test_loader = sample_loaders(batch_size=16, n_train=64)
    model = resnet18(width=4)
    calls = {"n": 0}
    real_forward = model.forward

    def forward(x):
        calls["n"] += 1
        if calls["n"] > 4:  # 2 training and 2 test batches make epoch 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(x)

    model.forward = forward
    opt = training.make_optimizer(model, "sgd", lr=0.05)
    ck = tmp_path / "ck.pt"
    with pytest.raises(UserError, match=r"ran out of memory in epoch 2 at batch size 16: lower batch_size") as err:
        training.fit(model, train_loader, test_loader, 3, opt, device="cpu", max_batches=2, progress=False,
                     checkpoint_path=ck)
    assert err.value.param == "batch_size" and f"{ck} still holds epoch 1" in str(err.value)
    assert torch.load(ck, weights_only=True)["epoch"] == 1  # the last whole epoch, untouched
    assert isinstance(err.value.__cause__, torch.OutOfMemoryError)


def test_an_epoch_makes_one_iterator_of_each_loader(sample_loaders):
    # tqdm.auto's bar used to call iter() on the loader and then iterate it again: a second pass's workers were
    # started and thrown away every epoch, and the seeded batch order shifted
    training.set_seed(0)
    train_loader, test_loader = sample_loaders(batch_size=16, n_train=64)
    counts = {"train": 0, "test": 0}
    for name, loader in (("train", train_loader), ("test", test_loader)):
        real = type(loader).__iter__

        def counted(self, _real=real, _name=name):
            counts[_name] += 1
            return _real(self)

        loader.__class__ = type(f"Counted{name}", (type(loader),), {"__iter__": counted})
    model = resnet18(width=4)
    opt = training.make_optimizer(model, "sgd", lr=0.05)
    training.fit(model, train_loader, test_loader, 2, opt, device="cpu", max_batches=2, progress=True)
    assert counts == {"train": 2, "test": 2}


def test_a_ctrl_c_that_python_swallowed_stops_training_at_the_next_batch(sample_loaders):
    # a Ctrl-C that lands in a DataLoader iterator's __del__ is only printed by Python; the run used to go on
    # to the end (and the command exit 0). Under the command line's sticky_interrupts it stops at the next batch.
    import gc
    import os
    import signal

    from eva_utils.core.interrupts import sticky_interrupts

    class CtrlCWhileCollected:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass

    steps = []

    def on_batch(batch, loss, lr):
        steps.append(batch)
        if len(steps) == 2:
            CtrlCWhileCollected()
            gc.collect()

    training.set_seed(0)
    train_loader, test_loader = sample_loaders(batch_size=16, n_train=128)
    model = resnet18(width=4)
    opt = training.make_optimizer(model, "sgd", lr=0.05)
    with sticky_interrupts(), pytest.raises(KeyboardInterrupt):
        engine.train_one_epoch(model, train_loader, nn.CrossEntropyLoss(), opt, device="cpu", progress=False,
                               on_batch_end=on_batch)
    assert steps == [0, 1]  # the batch after the swallowed Ctrl-C never ran
