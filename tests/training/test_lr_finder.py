"""Tests for eva_utils.training.lr_finder: the LR range test restores what it touches and runs as training does."""

import pytest
import torch

from eva_utils import training
from eva_utils.models import resnet18
from eva_utils.plots import plot_lr_finder


def test_find_lr_restores_model_and_optimizer(capsys, sample_loaders):
    training.set_seed(0)
    train_loader, _ = sample_loaders(batch_size=32, n_train=256)
    model = resnet18(width=4).eval()
    opt = training.make_optimizer(model, "sgd", lr=0.01)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt_before = opt.state_dict()["param_groups"][0]["lr"]
    result = training.find_lr(model, train_loader, optimizer=opt, num_iter=25, end_lr=1.0)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert opt.param_groups[0]["lr"] == opt_before and not model.training
    assert 1e-6 <= result.suggested_lr <= 1.0 and len(result.lrs) == 25
    assert plot_lr_finder(result).axes[0].get_xscale() == "log"
    assert ".plot()" not in capsys.readouterr().out  # torch-lr-finder's pointer to its own API is dropped


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_find_lr_runs_in_the_precision_and_memory_format_of_training(dtype, sample_loaders, conv1_spy):
    training.set_seed(0)
    train_loader, _ = sample_loaders(batch_size=16, n_train=64)
    model = resnet18(width=4)
    spy = conv1_spy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    training.find_lr(model, train_loader, num_iter=20, skip_start=2, skip_end=2, end_lr=1.0,
                     amp=dtype, channels_last="always")
    assert spy.outputs and all(out == dtype for out in spy.outputs)  # the forward passes ran under autocast
    assert all(channels_last for _, channels_last in spy.inputs)
    assert not model.conv1.weight.is_contiguous(memory_format=torch.channels_last)  # memory format put back
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_find_lr_in_float32_on_the_cpu_by_default(sample_loaders, conv1_spy):
    train_loader, _ = sample_loaders(batch_size=16, n_train=64)
    model = resnet18(width=4)
    spy = conv1_spy(model)
    training.find_lr(model, train_loader, num_iter=12, skip_start=2, skip_end=2, end_lr=1.0)
    assert {out for out in spy.outputs} == {torch.float32}
    assert not any(channels_last for _, channels_last in spy.inputs)


def test_the_result_draws_its_window_and_keeps_the_figure_of_0_1(sample_loaders):
    import eva_utils._compat  # noqa: F401  (an old module path imports it; it gives the result 0.1.0's .figure)

    train_loader, _ = sample_loaders(batch_size=16, n_train=64)
    result = training.find_lr(resnet18(width=4), train_loader, num_iter=12, skip_start=2, skip_end=3, end_lr=1.0)
    lrs, losses, best = result.window()
    assert lrs == result.lrs[2:-3] and losses == result.losses[2:-3] and lrs[best] == result.suggested_lr
    line = plot_lr_finder(result).axes[0].lines[0]
    assert list(line.get_xdata()) == lrs
    with pytest.warns(DeprecationWarning, match="plot_lr_finder"):
        figure = result.figure
    assert list(figure.axes[0].lines[0].get_xdata()) == lrs
