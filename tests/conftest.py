"""Shared fixtures: small real data, quiet CPU settings. Nothing here touches the network."""

from __future__ import annotations

import os
import signal
import urllib.error

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
torch.set_num_threads(min(2, os.cpu_count() or 1))
# A suite started in the background of a script (`cmd &` without job control) inherits SIGINT ignored, and so do the
# commands its tests start: the Ctrl-C tests would then test nothing. Ctrl-C as a terminal has it, here and below.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Fail any test that opens an internet connection (Unix sockets and this machine's loopback, where a
    test serves the app to its browser, stay allowed)."""
    import socket

    real_connect = socket.socket.connect

    def guarded_connect(self, address):
        loopback = isinstance(address, tuple) and address[0] in ("127.0.0.1", "::1", "localhost")
        if self.family in (socket.AF_INET, socket.AF_INET6) and not loopback:
            raise RuntimeError(f"tests must not reach the network (tried {address})")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)


# ----------------------------------------------------------------------------- files torch.load must refuse


class _Payload:
    """The classic malicious pickle: loading it would run a shell command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def _bad_files(folder):
    """Name -> path of files that are not loadable checkpoints, each failing differently in torch.load."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, content in {"hello": b"hello\n", "q0": b"q\x00", "j": b"j", "empty": b"",
                          "html": b"<!DOCTYPE html><html>moved</html>"}.items():
        files[name] = folder / f"{name}.pt"
        files[name].write_bytes(content)
    good = folder / "good.pt"
    torch.save({"w": torch.zeros(3)}, good)
    files["truncated"] = folder / "truncated.pt"
    files["truncated"].write_bytes(good.read_bytes()[:200])
    files["code"] = folder / "code.pt"
    torch.save({"x": _Payload(folder / "PWNED")}, files["code"])
    files["object"] = folder / "object.pt"
    torch.save(torch.nn.Linear(2, 2), files["object"])
    return files


@pytest.fixture
def bad_torch_files():
    """Call with a folder: name -> path of files that are not loadable checkpoints (see ``_bad_files``)."""
    return _bad_files


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Pretrained weights fail to download, as without internet (and no cached copy is used)."""
    def no_internet(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", no_internet)


@pytest.fixture
def small_disk(tmp_path, request):
    """A real 2 MB file system (tmpfs), to fill up: a full disk as it is, not a mocked OSError. Needs root.
    Another size: ``@pytest.mark.parametrize("small_disk", ["4m"], indirect=True)``."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    size = getattr(request, "param", "2m")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=False)


@pytest.fixture
def fill_disk():
    """``fill_disk(disk, leave_kb)``: fill ``disk`` (a ``small_disk``) until about ``leave_kb`` kilobytes are free."""

    def fill(disk, leave_kb: int) -> None:
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        with open(disk / "filler", "wb") as f:
            f.write(b"\0" * max(0, free - leave_kb * 1024))

    return fill
