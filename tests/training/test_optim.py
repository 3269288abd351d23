"""Tests for eva_utils.training.optim: optimizers and schedules by name."""

import numpy as np
import pytest

from eva_utils import training
from eva_utils.core.errors import UserError
from eva_utils.models import resnet18


@pytest.mark.parametrize("name,error", [("sgdd", "adam, sgd"), ("rmsprop", "adam, sgd")])
def test_unknown_optimizer(name, error):
    with pytest.raises(UserError, match=error):
        training.make_optimizer(resnet18(width=2), name)


def test_unknown_scheduler_and_bad_numbers():
    opt = training.make_optimizer(resnet18(width=2), "sgd", lr=0.1)
    with pytest.raises(UserError, match="cosine, none, onecycle, step"):
        training.make_scheduler(opt, "warmup")
    with pytest.raises(UserError, match="lr"):
        training.make_optimizer(resnet18(width=2), "sgd", lr=0)
    with pytest.raises(UserError, match="lr"):
        training.make_optimizer(resnet18(width=2), "adam", lr=-1e-3)
    with pytest.raises(UserError, match="epochs"):
        training.make_scheduler(opt, "onecycle", epochs=0, steps_per_epoch=3)


def test_onecycle_warms_up_then_decays_linearly():
    opt = training.make_optimizer(resnet18(width=2), "sgd", lr=0.4)
    sched = training.make_scheduler(opt, "onecycle", epochs=4, steps_per_epoch=10, pct_start=0.25)
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = int(np.argmax(lrs))
    assert lrs[peak] == pytest.approx(0.4) and 8 <= peak <= 10
    assert lrs[0] == pytest.approx(0.4 / 25) and lrs[-1] < 0.02


def test_lr_schedule_is_the_lr_of_every_step_as_fit_steps_it():
    from eva_utils.training.optim import lr_schedule

    cycle = lr_schedule("onecycle", 0.4, epochs=24, steps_per_epoch=10, pct_start=5 / 24)
    assert len(cycle) == 240 and max(cycle) == pytest.approx(0.4)
    assert cycle.index(max(cycle)) == 49  # the peak at the end of epoch 5 (step 50 of 240)
    assert cycle[0] == pytest.approx(0.4 / 25) and cycle[-1] < 1e-4  # torch's div_factor 25, then down to ~0
    steps = lr_schedule("step", 0.01, epochs=20, steps_per_epoch=3, step_size=6, gamma=0.1)
    assert steps == pytest.approx([0.01 * 0.1 ** (i // 3 // 6) for i in range(60)])  # per epoch, constant within one
    assert lr_schedule("none", 0.05, epochs=2, steps_per_epoch=2) == [0.05] * 4
