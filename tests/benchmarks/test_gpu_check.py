"""benchmarks/gpu_check.py --smoke: every part runs on the CPU and its numbers are in range, so the GPU check cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_smoke(tmp_path):
    out = tmp_path / "check"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((out / "gpu_check.json").read_text())
    parts = report["parts"]
    assert set(parts) == {"cuda_tests", "default", "course", "page24", "speed", "tests"}
    assert all(p["status"] == "ok" for p in parts.values()), {k: p.get("error") for k, p in parts.items()}
    assert set(report["plan"]) == set(parts) and all(v > 0 for v in report["plan"].values())
    assert parts["page24"]["result"]["settings"]["model"] == "custom_resnet"
    for name in ("default", "course", "page24"):
        r = parts[name]["result"]
        lo, hi = r["accuracy_95"]
        assert 0 <= lo <= r["accuracy"] <= hi <= 1 and r["test_images"] > 0
        assert r["train_images_per_s"] > 0 and r["seconds_per_epoch"] > 0 and 0 <= r["loader_wait_share"] <= 1
        assert r["peak_gpu_mib"] is None and r["device"] == "cpu"
    weights = parts["default"]["result"]["weights"]
    assert all((out / name).is_file() for name in weights["parts"])
    speed = parts["speed"]["result"]
    assert len(speed["train_step"]) == 8 and all(row["images_per_s"] > 0 for row in speed["train_step"])
    assert all(speed["cam"][k] > 0 for k in ("a_layer_cams", "b_gradcam_per_layer", "d_forward_backward"))
    assert speed["cam_check"]["equal"], speed["cam_check"]
    for name in ("cuda_tests", "tests"):
        tests = parts[name]["result"]
        assert tests["returncode"] == 0 and tests["passed"] > 0 and tests["failed"] == 0
    text = (out / "gpu_check.md").read_text()
    assert "| default |" in text and "accuracy (95%)" in text and "layer_cams" in text


def test_skip_and_budget(tmp_path):
    """--skip leaves a part out; a budget too small for a part skips it with its reason, and the report is written."""
    out = tmp_path / "check"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--out", str(out),
                           "--skip", "cuda_tests", "default", "course", "page24", "speed", "--budget-s", "0.5"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    parts = json.loads((out / "gpu_check.json").read_text())["parts"]
    assert parts["default"] == {"status": "skipped", "reason": "--skip"}
    assert parts["tests"]["status"] == "skipped" and "left" in parts["tests"]["reason"]
    assert "| tests | skipped |" in (out / "gpu_check.md").read_text()


def test_a_suite_cut_short_still_names_its_failures():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_check import pytest_summary

    verbose = ("[gw0] [ 10%] PASSED tests/a.py::test_one\n[gw1] [ 20%] FAILED tests/b.py::test_two[cuda]\n"
               "tests/c.py::test_three SKIPPED (needs a GPU)\n[gw1] [ 30%] PASSED tests/a.py::test_four\n")
    summary = pytest_summary(verbose)  # no last line: the run was stopped
    assert (summary["passed"], summary["failed"], summary["skipped"]) == (2, 1, 1)
    assert summary["failed_tests"] == ["tests/b.py::test_two[cuda]"]
    ended = verbose + "FAILED tests/b.py::test_two[cuda] - AssertionError\n=== 1 failed, 2 passed, 1 skipped in 3.10s ===\n"
    assert pytest_summary(ended)["failed_tests"] == ["tests/b.py::test_two[cuda]"]
    assert pytest_summary(ended)["passed"] == 2
