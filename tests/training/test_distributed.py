"""Tests for eva_utils.distributed: DDP under torchrun on the CPU (gloo), 2 processes, the bundled sample.

Every run is a subprocess bounded by a timeout, so a hang fails the test instead of stopping the suite.

Run: python -m pytest tests/test_distributed.py -q    (CPU, a few minutes)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import eva_utils
from eva_utils import data, training
from eva_utils.core.errors import UserError
from eva_utils.data import presets as transforms
from eva_utils.training import checkpoint, distributed

HERE = Path(__file__).parent
TIMEOUT = 300


def _run(*args: str, timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout)


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    return _run("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args)


@pytest.fixture(scope="module")
def small_npz(tmp_path_factory):
    """256 training and 101 test images of the sample (an odd test set: a padded shard would count one twice)."""
    sample = np.load(Path(eva_utils.__file__).parent / "sample_data" / "cifar10_sample.npz")
    path = tmp_path_factory.mktemp("data") / "small.npz"
    rows = np.random.default_rng(0).permutation(len(sample["train_labels"]))[:256]
    np.savez(path, train_images=sample["train_images"][rows], train_labels=sample["train_labels"][rows],
             test_images=sample["test_images"][::9][:101], test_labels=sample["test_labels"][::9][:101],
             classes=sample["classes"])
    return path


def _train(npz: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return _run("-m", "eva_utils", "train", "--nproc", "2", "--device", "cpu", "--data", str(npz), "--width", "4",
                "--batch-size", "64", "--lr", "0.05", "--workers", "0", "--quiet", "--out", str(out), *extra)


def _state(path: Path) -> dict[str, torch.Tensor]:
    return checkpoint.safe_load(path)["model"]


def test_two_processes_write_one_run_whose_accuracy_is_the_whole_test_set(small_npz, tmp_path):
    done = _train(small_npz, tmp_path / "run", "--epochs", "2", "--scheduler", "step")
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.pt", "curves.png", "history.json"]
    assert done.stdout.count("done: 2 epochs") == 1  # rank 0 alone reports
    assert not any(key.startswith("module.") for key in _state(tmp_path / "run" / "checkpoint.pt"))  # loads anywhere
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    model = checkpoint.load_trained_model(tmp_path / "run" / "checkpoint.pt")
    test_set = data.load_npz(small_npz, train=False, transform=transforms.test_transforms())
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)  # the recipe's, which its test loss uses too
    single = training.evaluate(model, data.make_loader(test_set, 256, num_workers=0), criterion, device="cpu")
    assert len(test_set) == 101
    assert history["test_acc"][-1] == pytest.approx(single.acc, abs=1e-9)  # each image once, the checkpointed model
    assert history["test_loss"][-1] == pytest.approx(single.loss, rel=1e-5)


def test_two_processes_augmenting_on_the_device_each_take_their_share(small_npz, tmp_path):
    # the device loader under torchrun: each process holds the data set and takes its DistributedSampler share
    done = _train(small_npz, tmp_path / "run", "--epochs", "1", "--augment-on", "device")
    assert done.returncode == 0, done.stderr[-3000:]
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    model = checkpoint.load_trained_model(tmp_path / "run" / "checkpoint.pt")
    test_set = data.load_npz(small_npz, train=False, transform=transforms.test_transforms())
    single = training.evaluate(model, data.make_loader(test_set, 256, num_workers=0), torch.nn.CrossEntropyLoss(),
                               device="cpu")
    assert history["test_acc"][-1] == pytest.approx(single.acc, abs=1e-9)  # evaluated once per image, sharded


def test_two_processes_take_the_single_process_steps(tmp_path):
    """No BatchNorm, same global batches: the weights after one epoch (8 steps) agree to float rounding (atol 1e-5)."""
    two = _torchrun(str(HERE / "ddp_worker.py"), str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    one = _run(str(HERE / "ddp_worker.py"), str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = _state(tmp_path / "two" / "checkpoint.pt"), _state(tmp_path / "one" / "checkpoint.pt")
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].is_floating_point())
    assert worst < 1e-5, worst
    init = ddp_small_cnn_init()
    assert max((a[k] - init[k]).abs().max().item() for k in a) > 1e-3  # training moved the weights


def ddp_small_cnn_init() -> dict[str, torch.Tensor]:
    sys.path.insert(0, str(HERE))
    from ddp_worker import small_cnn

    training.set_seed(0)
    return {f"{k}": v for k, v in small_cnn().state_dict().items()}


def test_sync_batchnorm_on_the_cpu_is_refused_in_one_line(small_npz, tmp_path):
    done = _train(small_npz, tmp_path / "run", "--sync-bn")
    assert done.returncode == 2 and "sync_batchnorm needs GPUs" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # said once for the two processes
    assert "(on the command line: --sync-bn)" in done.stderr  # the library names the parameter, the CLI its flag


def test_resume_under_torchrun_continues_exactly_and_on_one_process_too(small_npz, tmp_path):
    plan = ("--epochs", "2", "--scheduler", "step")
    whole = _train(small_npz, tmp_path / "whole", *plan)
    first = _train(small_npz, tmp_path / "parts", "--epochs", "1", "--scheduler", "step")
    assert whole.returncode == first.returncode == 0, whole.stderr[-2000:] + first.stderr[-2000:]
    resumed = _train(small_npz, tmp_path / "parts", *plan, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = _state(tmp_path / "whole" / "checkpoint.pt"), _state(tmp_path / "parts" / "checkpoint.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    h_whole = json.loads((tmp_path / "whole" / "history.json").read_text())
    h_parts = json.loads((tmp_path / "parts" / "history.json").read_text())
    assert h_whole["test_acc"] == h_parts["test_acc"] and h_whole["train_loss"] == h_parts["train_loss"]
    alone = _run("-m", "eva_utils", "train", "--device", "cpu", "--data", str(small_npz), "--width", "4", "--batch-size",
                 "64", "--lr", "0.05", "--workers", "0", "--quiet", "--out", str(tmp_path / "parts"), "--epochs", "3",
                 "--scheduler", "step", "--resume")
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert json.loads((tmp_path / "parts" / "history.json").read_text())["epoch"] == [1, 2, 3]


def test_a_batch_that_does_not_divide_is_refused_before_any_process_starts(small_npz, tmp_path):
    done = _train(small_npz, tmp_path / "run", "--batch-size", "63")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "batch_size 63 does not divide among 2 processes" in done.stderr and "62 or 64" in done.stderr
    assert "(on the command line: --batch-size)" in done.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    direct = _torchrun("-m", "eva_utils", "train", "--device", "cpu", "--data", str(small_npz), "--batch-size", "63",
                       "--out", str(tmp_path / "direct"), "--quiet")
    assert direct.returncode != 0 and "does not divide among 2 processes" in direct.stderr


def test_a_user_error_in_the_processes_ends_in_one_line_and_exit_2(tmp_path):
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip file")
    done = _train(broken, tmp_path / "run")
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "eva-utils train: error:" in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]  # (torch elastic's W/E lines held back)
    assert len(lines) == 1 and lines[0].startswith("eva-utils train: error:"), done.stderr  # once, not once per process
    assert "broken.npz: is not a readable .npz file" in lines[0]


def test_a_process_that_raises_stops_the_run_with_its_message(tmp_path):
    done = _torchrun(str(HERE / "ddp_worker.py"), str(tmp_path / "run"), "fail")
    assert done.returncode != 0
    assert "rank 1 broke while loading an image" in done.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_shards_cover_every_image_once():
    shards = [list(distributed.Shard(101, rank, 4)) for rank in range(4)]
    assert sorted(sum(shards, [])) == list(range(101)) and [len(s) for s in shards] == [26, 25, 25, 25]
    assert distributed.per_process_batch(512, 2) == 256
    with pytest.raises(UserError, match="use 510 or 512"):
        distributed.per_process_batch(511, 2)
    assert distributed.join() is None and distributed.current() is None  # a plain process: nothing changes


@pytest.mark.parametrize("how", ["launcher", "process"])
def test_ctrl_c_under_nproc_is_an_interrupt_not_a_crash(monkeypatch, how):
    import signal

    from torch.distributed import launcher
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    def interrupted(config, entrypoint):
        def run(*args):
            if how == "launcher":  # what torchrun's agent raises when the SIGINT reaches it
                raise SignalException("got signal: 2", sigval=signal.SIGINT)
            raise ChildFailedError("eva_utils", {0: ProcessFailure(0, 0, 130, "")})  # a process said "interrupted"
        return run

    monkeypatch.setattr(launcher.api, "elastic_launch", interrupted)
    with pytest.raises(KeyboardInterrupt):  # the command line turns it into "interrupted", exit 130
        distributed.launch(2, ["train"])


@pytest.mark.parametrize("codes, named", [
    ({0: -15, 1: -6}, "process 1 of 2 was killed by signal 6 (SIGABRT)"),  # the launcher stopped 0 after 1 crashed
    ({0: 1, 1: -15}, "process 0 of 2 failed with exit code 1"),
    ({0: -15, 1: -15}, "process 0 of 2 was killed by signal 15 (SIGTERM)"),  # stopped from outside: the first rank
])
def test_a_crashed_process_is_named_not_the_one_the_launcher_stopped(monkeypatch, tmp_path, codes, named):
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure
    from torch.distributed.launcher import api

    failures = {rank: ProcessFailure(rank, 1000 + rank, code, str(tmp_path / "none.json")) for rank, code in codes.items()}

    def crashing_launch(config, entrypoint):
        def run(*args):
            raise ChildFailedError("eva_utils", failures)
        return run

    monkeypatch.setattr(api, "elastic_launch", crashing_launch)
    with pytest.raises(distributed.ProcessFailedError, match=r"^" + named.replace("(", r"\(").replace(")", r"\)")):
        distributed.launch(2, ["train"])  # not the user's mistake: the command line exits 1, not 2
