"""The package surface: what ``import eva_utils`` gives and what it leaves alone."""

import re
import subprocess
import sys
from pathlib import Path

import eva_utils


def test_every_exported_name_exists():
    missing = [name for name in eva_utils.__all__ if not hasattr(eva_utils, name)]
    assert not missing


def test_version_is_the_one_setup_installs():
    setup = (Path(__file__).parents[1] / "setup.py").read_text()
    assert re.search(r'version="([^"]+)"', setup).group(1) == eva_utils.__version__


def test_import_leaves_pyplot_and_the_network_alone():
    # pyplot would pick a GUI backend in scripts; albumentations would ask PyPI for updates on import.
    code = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise SystemExit('import eva_utils opened a network connection')\n"
        "socket.socket.connect = refuse\n"
        "import eva_utils\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'import eva_utils imported matplotlib.pyplot'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
