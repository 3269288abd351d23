import argparse

import pytest

from eva_utils.apps.argtypes import finite_float, non_negative_int, positive_float, positive_int


@pytest.mark.parametrize(
    "kind, text, expected",
    [(positive_int, "3", 3), (non_negative_int, "0", 0), (positive_float, "1e-3", 1e-3), (positive_float, "2", 2.0),
     (finite_float, "-0.5", -0.5)],
)
def test_accepted(kind, text, expected):
    assert kind(text) == expected and type(kind(text)) is type(expected)


@pytest.mark.parametrize(
    "kind, text, message",
    [
        (positive_int, "0", "must be a positive integer, got 0"),
        (positive_int, "2.5", "expected a positive integer, got '2.5'"),
        (non_negative_int, "-1", "must be 0 or more, got -1"),
        (non_negative_int, "one", "expected a whole number"),
        (positive_float, "0", "must be a positive number"),
        (positive_float, "nan", "must be a positive number"),
        (positive_float, "fast", "expected a positive number, got 'fast'"),
        (positive_float, "inf", "must be a positive number, got inf"),
        (finite_float, "nan", "must be a finite number, got nan"),
        (finite_float, "-inf", "must be a finite number"),
    ],
)
def test_refused_with_what_was_wrong(kind, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        kind(text)


def test_train_on_a_full_disk_says_so_in_one_line_and_keeps_the_checkpoint(small_disk, fill_disk):
    import subprocess
    import sys

    from eva_utils.training import checkpoint

    fill_disk(small_disk, leave_kb=450)  # the checkpoint (about 410 kB at width 4) fits, its curves.png does not
    proc = subprocess.run([sys.executable, "-m", "eva_utils", "train", "--data", "sample", "--epochs", "1", "--width",
                           "4", "--batch-size", "16", "--max-batches", "3", "--scheduler", "none", "--device", "cpu",
                           "--no-download", "--out", str(small_disk / "run")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("eva-utils train: error: could not write ") and "No space left on device" in last
    assert checkpoint.load_checkpoint(small_disk / "run" / "checkpoint.pt")["epoch"] == 1  # whole, and loads


_CTRL_C_IN_SAVE = """
import os, signal, sys, torch
real_save = torch.save
class Interrupting:  # a real SIGINT on the second write of the first checkpoint, inside torch's C++ writer
    def __init__(self, f): self.f, self.n = f, 0
    def write(self, data):
        self.n += 1
        if self.n == 2: os.kill(os.getpid(), signal.SIGINT)
        return self.f.write(data)
    def flush(self): self.f.flush()
torch.save = lambda obj, f, *a, **k: real_save(obj, Interrupting(f), *a, **k)
from eva_utils.apps.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_during_a_checkpoint_save_stops_train_with_status_130_and_a_whole_checkpoint(tmp_path):
    import subprocess
    import sys

    from eva_utils.training import checkpoint

    proc = subprocess.run([sys.executable, "-c", _CTRL_C_IN_SAVE, "train", "--data", "sample", "--epochs", "3",
                           "--width", "4", "--batch-size", "16", "--max-batches", "2", "--scheduler", "none",
                           "--device", "cpu", "--no-download", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].endswith("eva-utils train: interrupted")
    assert "epoch   2/3" not in proc.stdout + proc.stderr  # it stopped after epoch 1's save
    assert checkpoint.load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 1  # whole, and the newest


_WORKER_KILLED = """
import os, signal, sys, torch
from torch.utils.data import DataLoader, Dataset
from eva_utils.apps.argtypes import Parser, run_parsed

class Dying(Dataset):  # a worker that the system kills mid-epoch, as the OOM killer does
    def __len__(self): return 64
    def __getitem__(self, i):
        if i == 40: os.kill(os.getpid(), signal.SIGKILL)
        return torch.zeros(3), 0

def train(args):
    for _ in DataLoader(Dying(), batch_size=8, num_workers=2):
        pass

parser = Parser(prog="eva-utils")
parser.add_subparsers(dest="command").add_parser("train").set_defaults(func=train)
sys.exit(run_parsed(parser, ["train"]))
"""


def test_a_loader_worker_killed_by_the_system_is_one_line_not_a_traceback():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _WORKER_KILLED], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("eva-utils train: error: a data loader worker process died (") and "memory" in done.stderr


_GLOO_PEER_GONE = ("[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer "
                   "[127.0.0.1]:46987. This is typically caused by a remote worker crashing.")


@pytest.mark.parametrize("launcher", [False, True])
def test_a_process_whose_peer_was_killed_ends_in_one_line_or_leaves_it_to_the_launcher(monkeypatch, tmp_path, capsys,
                                                                                       launcher):
    # kill -9 of one process of train --nproc 2: the other's all-reduce fails with gloo's RuntimeError, which was a
    # traceback of 30 lines above the launcher's own line naming the killed process
    from eva_utils.apps.argtypes import Parser, run_parsed
    from eva_utils.core.errors import PROCESS_ERRORS

    def train(args):
        raise RuntimeError(_GLOO_PEER_GONE)

    parser = Parser(prog="eva-utils")
    parser.add_subparsers(dest="command").add_parser("train").set_defaults(func=train)
    monkeypatch.setenv("RANK", "0")
    if launcher:
        monkeypatch.setenv(PROCESS_ERRORS, str(tmp_path))
    assert run_parsed(parser, ["train"]) == 1
    err = capsys.readouterr().err
    if launcher:
        assert err == ""  # the launcher names the process that was killed
    else:
        assert len(err.strip().splitlines()) == 1 and "process 0 lost the other processes of its run" in err
    monkeypatch.delenv("RANK")
    with pytest.raises(RuntimeError, match="Connection closed by peer"):  # outside torchrun: not ours to explain
        run_parsed(parser, ["train"])
