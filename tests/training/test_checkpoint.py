
import os
import re

import pytest
import torch

from eva_utils import training
from eva_utils.core.errors import CheckpointError, DataNotFoundError
from eva_utils.models import resnet18, resnet34
from eva_utils.training import checkpoint


def _save(path, model=None, config=None):
    model = model or resnet18(width=4)
    opt = training.make_optimizer(model, "sgd", lr=0.1)
    sched = training.make_scheduler(opt, "step")
    history = training.History()
    history.append(1, training.EpochStats(2.0, 0.1, lr=0.1), training.EpochStats(2.1, 0.12), 1.0)
    checkpoint.save_checkpoint(path, model, opt, sched, torch.amp.GradScaler("cuda", enabled=False), history, 1,
                               config or {"model": "resnet18", "width": 4, "num_classes": 10})
    return model, opt, sched, history


def test_roundtrip_restores_everything(tmp_path):
    model, opt, sched, history = _save(tmp_path / "ck.pt")
    ckpt = checkpoint.load_checkpoint(tmp_path / "ck.pt")
    assert ckpt["epoch"] == 1 and ckpt["config"]["width"] == 4
    fresh = resnet18(width=4)
    fresh_opt = training.make_optimizer(fresh, "sgd", lr=0.1)
    fresh_sched = training.make_scheduler(fresh_opt, "step")
    restored = checkpoint.restore_training_state(ckpt, fresh, fresh_opt, fresh_sched)
    assert training.History.from_dict(restored) == history  # plain data: checkpoint does not import training
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True))
    loaded = checkpoint.load_trained_model(tmp_path / "ck.pt")
    assert not loaded.training and isinstance(loaded, type(model))


def test_save_is_atomic_and_a_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    _save(path)
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(CheckpointError, match="disk full.*the previous checkpoint is intact.*then resume"):
        _save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left behind


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_checkpoint_is_reported_and_left_untouched(tmp_path, damage):
    path = tmp_path / "ck.pt"
    _save(path)
    raw = path.read_bytes()
    raw = {"truncate": raw[: len(raw) // 2], "garbage": b"not a checkpoint at all" * 10, "empty": b""}[damage]
    path.write_bytes(raw)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        checkpoint.load_checkpoint(path)
    assert path.read_bytes() == raw


def test_missing_checkpoint(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        checkpoint.load_checkpoint(tmp_path / "nope.pt")


class Payload:
    def __reduce__(self):
        return (print, ("this would run",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "model": Payload()}, path)
    with pytest.raises(CheckpointError, match=r"contains code \(print\) that would run"):
        checkpoint.load_checkpoint(path)


def test_bare_state_dict_is_not_mistaken_for_a_checkpoint(tmp_path):
    torch.save(resnet18(width=2).state_dict(), tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="not an eva_utils training checkpoint"):
        checkpoint.load_checkpoint(tmp_path / "w.pt")


def test_other_architecture_gets_a_readable_message(tmp_path):
    _save(tmp_path / "ck.pt")
    ckpt = checkpoint.load_checkpoint(tmp_path / "ck.pt")
    with pytest.raises(CheckpointError,
                       match=r"made for resnet18, width 4.*does not fit this ResNet.*tensors are missing from the file"):
        checkpoint.restore_training_state(ckpt, resnet34(width=4))
    with pytest.raises(CheckpointError, match="another shape"):
        checkpoint.restore_training_state(ckpt, resnet18(width=8))


def test_other_scheduler_is_refused(tmp_path):
    _save(tmp_path / "ck.pt")
    ckpt = checkpoint.load_checkpoint(tmp_path / "ck.pt")
    model = resnet18(width=4)
    opt = training.make_optimizer(model, "sgd", lr=0.1)
    with pytest.raises(CheckpointError, match="scheduler StepLR"):
        checkpoint.restore_training_state(ckpt, model, opt, training.make_scheduler(opt, "cosine"))


def test_trained_model_goes_to_the_requested_device(tmp_path):
    # "meta" stands in for a GPU: the model must end up there, not stay on the CPU.
    _save(tmp_path / "ck.pt")
    model = checkpoint.load_trained_model(tmp_path / "ck.pt", map_location="meta")
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert not model.training


# ----------------------------------------------------------------------------- one safe loader


def test_safe_load_classifies_every_failure_in_one_line(tmp_path, bad_torch_files):
    files = bad_torch_files(tmp_path)
    for name in ("hello", "q0", "j", "empty", "html", "truncated"):
        with pytest.raises(CheckpointError, match="not a readable PyTorch file: truncated or corrupt") as exc:
            checkpoint.safe_load(files[name], corrupt_hint="Try again.")
        assert "\n" not in str(exc.value) and str(files[name]) in str(exc.value) and "Try again" in str(exc.value)
    with pytest.raises(checkpoint.RefusedPickleError, match=r"contains code \(posix.system\) that would run") as exc:
        checkpoint.safe_load(files["code"], refused_hint="Pass --trust if you trust it")
    assert exc.value.global_name == "posix.system" and "--trust" not in str(exc.value)  # no advice to load code
    assert not (tmp_path / "PWNED").exists()
    with pytest.raises(checkpoint.RefusedPickleError, match=r"pickled Python object \(torch.nn.modules.linear.Linear\)"
                                                            r".*Pass --trust"):
        checkpoint.safe_load(files["object"], refused_hint="Pass --trust if you trust it")
    with pytest.raises(DataNotFoundError):
        checkpoint.safe_load(tmp_path / "absent.pt")
    assert checkpoint.safe_load(tmp_path / "good.pt")["w"].shape == (3,)


@pytest.mark.parametrize("settings, message", [
    ({"width": 10**6}, "impossible width 1000000"),
    ({"width": "abc"}, "impossible width 'abc'"),
    ({"num_classes": True}, "impossible num_classes True"),
    ({"width": 8}, "says width 8, but its weights do not fit"),
    ({"model": "resnet19"}, "unknown model 'resnet19'"),
    ({"model": ["x"]}, "unknown model"),
])
def test_crafted_settings_are_refused_before_building_a_model(tmp_path, settings, message):
    config = {"model": "resnet18", "width": 4, "num_classes": 10, **settings}
    _save(tmp_path / "ck.pt", config=config)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        checkpoint.load_trained_model(tmp_path / "ck.pt")


def test_stale_temporaries_of_a_killed_save_are_removed_on_the_next_save(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".ck.pt.tmp{int(dead.stdout)}"  # what kill -9 mid-save leaves behind
    stale.write_bytes(b"half a checkpoint")
    live = tmp_path / f".ck.pt.tmp{os.getppid()}"  # a save in progress in a running process: kept
    live.write_bytes(b"in progress")
    _save(tmp_path / "ck.pt")
    assert not stale.exists() and live.exists()
    assert checkpoint.load_checkpoint(tmp_path / "ck.pt")["epoch"] == 1


@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("model"), "no model weights"),
    (lambda c: c.pop("epoch"), "epoch None is not a count"),
    (lambda c: c.update(epoch="abc"), "epoch 'abc' is not a count"),
    (lambda c: c.update(config=[1, 2]), "its settings are not a dict"),
    (lambda c: c.update(history={"x": 1}), "its history is not a dict of lists"),
])
def test_damaged_checkpoints_are_named_not_crashed_on(tmp_path, change, message):
    _save(tmp_path / "ck.pt")
    ckpt = torch.load(tmp_path / "ck.pt", weights_only=True)
    change(ckpt)
    torch.save(ckpt, tmp_path / "ck.pt")
    with pytest.raises(CheckpointError, match="damaged or incomplete \\(" + re.escape(message)):
        checkpoint.load_checkpoint(tmp_path / "ck.pt")


def test_a_file_with_code_gets_no_advice_to_load_it_anyway(tmp_path, bad_torch_files):
    files = bad_torch_files(tmp_path)
    with pytest.raises(checkpoint.RefusedPickleError) as exc:
        checkpoint.safe_load(files["code"], refused_hint="load it with weights_only=False")
    assert "weights_only=False" not in str(exc.value) and "delete it" in str(exc.value)


def test_a_really_full_disk_keeps_the_previous_checkpoint(small_disk):
    # a real 2 MB filesystem, not a mocked OSError: torch.save's writer raises RuntimeError there
    path = small_disk / "checkpoint.pt"
    checkpoint.save_checkpoint(path, torch.nn.Linear(4, 2), None, None, None, None, epoch=1)
    before = path.read_bytes()
    big = torch.nn.Linear(1024, 1024)  # 4 MB of weights: more than the disk holds
    with pytest.raises(CheckpointError, match="previous checkpoint is intact"):
        checkpoint.save_checkpoint(path, big, None, None, None, None, epoch=2)
    assert path.read_bytes() == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["checkpoint.pt"]  # no temporary left behind


def _first_group(c):
    return c["optimizer"]["param_groups"][0]


def _first_state(c):
    return next(iter(c["optimizer"]["state"].values()))


@pytest.mark.parametrize("change, message", [
    (lambda c: _first_group(c).update(lr="abc"), "param_groups[0]['lr'] is str 'abc', not float"),
    (lambda c: _first_group(c).update(lr=float("nan")), "param_groups[0]['lr'] is float nan"),
    (lambda c: _first_group(c).update(momentum=None), "param_groups[0]['momentum'] is NoneType"),
    (lambda c: _first_group(c).update(nesterov=3), "['nesterov'] is int 3, not bool"),
    (lambda c: _first_group(c).pop("params"), "the optimizer state is for 0 parameters"),
    (lambda c: _first_state(c).update(momentum_buffer=torch.zeros(3)), "momentum_buffer of parameter 0 is not a tensor"),
    (lambda c: _first_state(c).update(momentum_buffer="x"), "momentum_buffer of parameter 0 is not a tensor"),
    (lambda c: c["optimizer"].update(state=5), "not a dict of 'state' and one 'param_groups'"),
    (lambda c: c.update(optimizer={"x": 1}), "not a dict of 'state' and one 'param_groups'"),
    (lambda c: c["scheduler"].pop("last_epoch"), "scheduler state lacks 'last_epoch'"),
    (lambda c: c["scheduler"].update(step_size="abc"), "scheduler state['step_size'] is str 'abc', not int"),
    (lambda c: c["scheduler"].update(base_lrs=[0.1, 0.1]), "scheduler state['base_lrs'] should hold 1 values"),
    (lambda c: c.update(scheduler=[1]), "scheduler state is not a dict"),
])
def test_a_malformed_training_state_is_refused_before_anything_is_loaded(tmp_path, change, message):
    model, *_ = _save(tmp_path / "ck.pt")
    (tmp_path / "ck.pt").write_bytes(_momentum_checkpoint(tmp_path / "ck.pt", model))
    ckpt = torch.load(tmp_path / "ck.pt", weights_only=True)
    change(ckpt)
    torch.save(ckpt, tmp_path / "ck.pt")
    before = (tmp_path / "ck.pt").read_bytes()
    fresh = resnet18(width=4)
    opt = training.make_optimizer(fresh, "sgd", lr=0.1)
    untouched = [p.detach().clone() for p in fresh.parameters()]
    with pytest.raises(CheckpointError, match=re.escape(message)):
        checkpoint.resume_from(tmp_path / "ck.pt", fresh, opt, training.make_scheduler(opt, "step"), None)
    assert (tmp_path / "ck.pt").read_bytes() == before
    assert all(torch.equal(a, b) for a, b in zip(untouched, fresh.parameters(), strict=True))  # nothing loaded


def _momentum_checkpoint(path, model):
    """The checkpoint at ``path`` after one optimizer step, so that SGD holds a momentum buffer per parameter."""
    opt = training.make_optimizer(model, "sgd", lr=0.1)
    training.make_scheduler(opt, "step")  # as in a run: the scheduler sets each group's initial_lr
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    ckpt = torch.load(path, weights_only=True)
    ckpt["optimizer"] = opt.state_dict()
    torch.save(ckpt, path)
    return path.read_bytes()


def test_a_checkpoint_whose_epochs_and_history_disagree_is_refused(tmp_path):
    model, opt, sched, _ = _save(tmp_path / "ck.pt")
    ckpt = torch.load(tmp_path / "ck.pt", weights_only=True)
    ckpt["epoch"] = 5  # its history holds 1 epoch: "nothing to do" would be a silent wrong answer
    torch.save(ckpt, tmp_path / "ck.pt")
    with pytest.raises(CheckpointError, match="it says 5 epochs were done, its history holds 1"):
        checkpoint.resume_from(tmp_path / "ck.pt", model, opt, sched, None)


def test_train_resume_refuses_a_malformed_optimizer_in_one_line_and_keeps_the_file(tmp_path):
    import subprocess
    import sys

    run = tmp_path / "run"
    args = [sys.executable, "-m", "eva_utils", "train", "--data", "sample", "--width", "4", "--batch-size", "16",
            "--max-batches", "2", "--scheduler", "step", "--device", "cpu", "--no-download", "--out", str(run)]
    assert subprocess.run([*args, "--epochs", "1"], capture_output=True, timeout=300).returncode == 0
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    _first_group(ckpt)["lr"] = "abc"
    torch.save(ckpt, run / "checkpoint.pt")
    before = (run / "checkpoint.pt").read_bytes()
    proc = subprocess.run([*args, "--epochs", "2", "--resume"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "training state is damaged: optimizer param_groups[0]['lr'] is str 'abc'" in proc.stderr.splitlines()[-1]
    assert (run / "checkpoint.pt").read_bytes() == before


def test_a_state_from_another_torch_release_still_resumes(tmp_path):
    # torch adds optimizer flags (foreach, fused, ...) and private scheduler attributes between releases and fills
    # them in when it loads an older state: their absence is not damage
    model, *_ = _save(tmp_path / "ck.pt")
    ckpt = torch.load(tmp_path / "ck.pt", weights_only=True)
    for key in ("foreach", "fused", "differentiable", "maximize"):
        _first_group(ckpt).pop(key, None)
    for key in [k for k in ckpt["scheduler"] if k.startswith("_") and k != "_last_lr"]:
        ckpt["scheduler"].pop(key)
    torch.save(ckpt, tmp_path / "ck.pt")
    fresh = resnet18(width=4)
    opt = training.make_optimizer(fresh, "sgd", lr=0.1)
    history, epochs = checkpoint.resume_from(tmp_path / "ck.pt", fresh, opt, training.make_scheduler(opt, "step"), None)
    assert epochs == 1 and len(history) == 1


def test_an_adam_state_resumed_into_sgd_names_the_optimizer_it_was_trained_with(tmp_path):
    model = resnet18(width=4)
    adam = training.make_optimizer(model, "adam", lr=1e-3)
    sched = training.make_scheduler(adam, "step")
    checkpoint.save_checkpoint(tmp_path / "ck.pt", model, adam, sched, None, None, 1,
                               {"model": "resnet18", "width": 4, "num_classes": 10, "optimizer": "adam",
                                "scheduler": "step"})
    sgd = training.make_optimizer(resnet18(width=4), "sgd", lr=0.1)
    with pytest.raises(CheckpointError, match=r"lacks 'momentum'.*with the optimizer and scheduler it was trained "
                                              r"with \(adam, step\)"):
        checkpoint.resume_from(tmp_path / "ck.pt", resnet18(width=4), sgd, training.make_scheduler(sgd, "step"), None)


def test_resuming_from_nan_weights_is_refused_in_one_line_and_the_file_kept(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "run"
    args = [sys.executable, "-m", "eva_utils", "train", "--data", "sample", "--width", "4", "--batch-size", "64",
            "--max-batches", "4", "--quiet", "--workers", "0", "--out", str(out)]
    assert subprocess.run([*args, "--epochs", "1"], capture_output=True).returncode == 0
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    ckpt["model"]["layer1.0.bn1.running_var"][3] = float("inf")  # a diverged run's statistics
    torch.save(ckpt, out / "checkpoint.pt")
    before = (out / "checkpoint.pt").read_bytes()
    done = subprocess.run([*args, "--epochs", "2", "--resume"], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr  # a bad file (exit 2), not a diverged training blamed on the lr (exit 1)
    assert "holds NaN or infinite weights (first in layer1.0.bn1.running_var)" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert (out / "checkpoint.pt").read_bytes() == before


def _one_cycle_checkpoint(path, epochs, steps_per_epoch, epochs_done):
    """A checkpoint of a one-cycle run planned for ``epochs x steps_per_epoch`` steps, saved after ``epochs_done``."""
    model = resnet18(width=4)
    opt = training.make_optimizer(model, "sgd", lr=0.1)
    sched = training.make_scheduler(opt, "onecycle", epochs=epochs, steps_per_epoch=steps_per_epoch)
    history = training.History()
    for epoch in range(1, epochs_done + 1):
        for _ in range(steps_per_epoch):
            opt.step()
            sched.step()
        history.append(epoch, training.EpochStats(2.0, 0.1, lr=0.1), training.EpochStats(2.1, 0.12), 1.0)
    checkpoint.save_checkpoint(path, model, opt, sched, None, history, epochs_done,
                               {"model": "resnet18", "width": 4, "num_classes": 10, "epochs": epochs})


def _resume_one_cycle(path, epochs, steps_per_epoch):
    model = resnet18(width=4)
    opt = training.make_optimizer(model, "sgd", lr=0.1)
    sched = training.make_scheduler(opt, "onecycle", epochs=epochs, steps_per_epoch=steps_per_epoch)
    return checkpoint.resume_from(path, model, opt, sched, None), sched


def test_a_one_cycle_resumes_only_with_as_many_steps_per_epoch(tmp_path):
    path = tmp_path / "ck.pt"
    _one_cycle_checkpoint(path, epochs=3, steps_per_epoch=2, epochs_done=2)  # interrupted after 2 of 3 epochs
    (history, done), sched = _resume_one_cycle(path, epochs=3, steps_per_epoch=2)
    assert done == 2 and len(history) == 2 and sched.last_epoch == 4
    _one_cycle_checkpoint(path, epochs=2, steps_per_epoch=3, epochs_done=2)  # 6 steps in all, as 3 x 2 are
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="one-cycle schedule took 3 steps per epoch, this run takes 2") as caught:
        _resume_one_cycle(path, epochs=3, steps_per_epoch=2)
    assert caught.value.param == "resume" and path.read_bytes() == before


def test_train_resume_with_another_steps_per_epoch_is_refused_in_one_line_and_changes_nothing(tmp_path):
    import shutil
    import subprocess
    import sys

    first, resumed = tmp_path / "r1", tmp_path / "rs2"
    args = [sys.executable, "-m", "eva_utils", "train", "--data", "sample", "--width", "4", "--batch-size", "64",
            "--device", "cpu", "--no-download", "--quiet", "--workers", "0"]
    done = subprocess.run([*args, "--epochs", "2", "--max-batches", "3", "--out", str(first)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    shutil.copytree(first, resumed)
    before = {p.name: p.read_bytes() for p in resumed.iterdir()}
    # 3 epochs x 2 batches plan the same 6 steps as 2 x 3, but the schedule has taken all 6 already
    done = subprocess.run([*args, "--epochs", "3", "--max-batches", "2", "--out", str(resumed), "--resume"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "took 3 steps per epoch, this run takes 2 (max_batches, batch_size or the data changed)" in done.stderr
    assert {p.name: p.read_bytes() for p in resumed.iterdir()} == before


def test_a_history_is_checked_against_the_one_its_checkpoint_holds(tmp_path):
    *_, history = _save(tmp_path / "ck.pt")
    ckpt = checkpoint.load_checkpoint(tmp_path / "ck.pt")
    checkpoint.check_history(ckpt, history, "history.json")  # the same numbers
    edited = training.History.from_dict({**history.to_dict(), "test_acc": [0.99]})
    with pytest.raises(CheckpointError, match=r"history.json does not match the history saved in the checkpoint "
                                              r"\(test_acc of epoch 1: 0.99 in history.json, 0.12 in the checkpoint\)"):
        checkpoint.check_history(ckpt, edited, "history.json")
    ckpt["history"] = None  # saved without one: held to its count of epochs
    checkpoint.check_history(ckpt, history, "history.json")
    with pytest.raises(CheckpointError, match=r"\(0 epochs in history.json, 1 in the checkpoint\)"):
        checkpoint.check_history(ckpt, training.History(), "history.json")
