"""benchmarks/loader_speed.py at its smallest: every row runs and its ratios are against the row it names, so the
benchmark cannot rot. Its numbers are read off a real run (README), never asserted here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_loader_speed_runs_every_row_with_its_ratios():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "loader_speed.py"), "--tile", "1", "--passes", "1",
                           "--step-width", "2"], capture_output=True, text=True, timeout=600, cwd=ROOT / "benchmarks")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    rows = {line[:44].strip(): line[44:].split() for line in lines if line[:44].strip() and line[44:].strip()}
    expected = ["albumentations, 0 workers", "albumentations, 1 worker", "albumentations, 2 workers",
                "device loader on the CPU, 1 torch thread", "albumentations, 2 workers + step",
                "device loader on the CPU + step", "the step alone (batches made before)"]
    assert all(name in rows for name in expected), done.stdout
    assert rows["albumentations, 2 workers"][1] == "1.00x" and rows["albumentations, 2 workers + step"][1] == "1.00x"
    assert all(float(values[0]) > 0 and values[1].endswith("x") for name, values in rows.items() if name in expected)
