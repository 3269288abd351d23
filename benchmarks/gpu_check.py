"""The first run on a GPU in one command: both recipes at full scale, the speed tables, the test suite.

    python benchmarks/gpu_check.py --out DIR --skip tests   # a CUDA machine: about 8 minutes on an H200
    python benchmarks/gpu_check.py --out DIR --skip cuda_tests default course page24 speed   # then the suite: ~5 min
    python benchmarks/gpu_check.py --out DIR --smoke      # the same code on the CPU, the bundled sample, < 1 min
    python benchmarks/gpu_check.py --out DIR --skip tests --budget-s 300   # leave parts out; skip what won't fit

The lent GPU machine (../shared/device/README.md): here ``bash ../shared/device/prepare.sh``, then the device
tool's ``run`` with ``carry: [".device"]``, ``timeout_s: 540`` and the command
``bash .device/gpu_env.sh python benchmarks/gpu_check.py --out $OUT --skip tests``; the suite in a second call
issued at once (the machine goes back after 30 s idle): ``... --skip cuda_tests default course page24 speed``.

Parts, in order; after each, DIR/gpu_check.json and DIR/gpu_check.md are rewritten, and a part that fails
records its error while the next one runs:

* ``cuda_tests``: ``tests/test_on_cuda.py`` alone, serial: the tests that skip without a GPU (AMP with a real
  GradScaler, channels_last, cuDNN autotuning, pinned memory, out of memory, CAMs, MSD-Net, NCCL). First,
  because the rest of the suite runs on the CPU anyway.

* ``default``: ``TrainConfig()`` as a Colab user gets it (ResNet18 width 64, 20 epochs, batch 512, one cycle to
  lr 0.4, AMP, channels_last, ``augment_on="auto"``: on CUDA the device loader, ``data.DeviceLoader``; the
  albumentations loader with its default workers was measured on 2026-12-04) on ``--data`` (50,000 images; test split: the 1,000
  bundled test images). Its weights come back as a float16 state dict in parts of <= 15 MiB with sha256s.
* ``course``: the course seed's recipe, the same with SGD lr 0.01, StepLR (step 6, gamma 0.1), batch 64.
  Both report seconds per epoch (wall: training + evaluation), training images/s (from the loader's first
  request to the last step), the loader's share (time spent waiting for the next batch over the training time;
  ``fit`` syncs on ``loss.item()`` every step, so the GPU idles then), peak GPU memory, and the final accuracy
  with its 95% Wilson interval.
* ``page24``: ``TrainConfig.page24()`` (the custom ResNet at width 64, 24 epochs, batch 512, peak at epoch 5): the
  course's next assignment, whose target is 90% (Page: 94%); measured the same way, its weights not kept.
* ``speed``: ``train_speed.step_rate`` (fp32, AMP, channels_last, both; batch 128 and 512), ``cam_speed``'s four
  ways (``layer_cams``; GradCAM per layer; per layer per image; a plain forward+backward), and ``layer_cams`` vs
  pytorch-grad-cam's GradCAM on the device (the shipped model, 50 real images) to 1e-5, both in full float32
  (``core.devices.exact_float32``), and what TF32 (torch's cuDNN default) does to GradCAM's maps; and
  ``loader_speed``'s two pipelines without a model (images/s, CPU-seconds per epoch of 50,000 images): the
  albumentations loader with the default workers, the device loader on the CPU and on the GPU.
* ``tests``: ``python -m pytest -v -n auto`` (serial without xdist) with the GPU visible, without tests/benchmarks
  (this script's smoke run) and ``tests/test_on_cuda.py`` (``cuda_tests``); counts, failures and the skip reasons.
  ``-v`` names each test as it ends, so a suite cut short by its time still names the failures so far.

Budget, measured on the lent H200 (2026-12-04; 16 Xeon cores, torch 2.11, CUDA 13.0): default 110 s, course
156 s, speed 53 s before the loaders were added to it (75 s assumed since; page24 not yet run: 130 s assumed, as
the default's 110 s for 24 epochs of a smaller net); the suite with ``-n 16`` had not ended after 245 s (92% done),
so 300 s is assumed for it, and 40 s for ``cuda_tests`` (not yet run there). Start-up of the machine and
``gpu_env.sh`` took about 40 s. With the two recipes measured, the next lent GPU needs two calls: ``--skip default
course tests`` (cuda_tests, page24, speed: 223 s) and the suite alone (300 s), which fit the 15 minutes a session
is lent. The estimates are printed first; ``--budget-s`` (default 480) skips a part whose estimate exceeds the time left,
saying so. ``--smoke`` on the project's 2-core CPU: about 40 s in all.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from math import sqrt
from pathlib import Path
from typing import Any

import torch
from cam_speed import time_it  # benchmarks/ is on sys.path when this file runs as a script
from loader_speed import loader_rows
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from train_speed import cpu_name, step_rate

from eva_utils.core.devices import exact_float32
from eva_utils.data import default_num_workers, load_sample
from eva_utils.data.presets import test_transforms
from eva_utils.explain.cam import layer_cams, resnet_layers
from eva_utils.models import resnet18
from eva_utils.models.shipped import export_weights, pretrained
from eva_utils.training.history import Callback, History
from eva_utils.training.recipe import TrainConfig, setup_run, train_run

PARTS = ("cuda_tests", "default", "course", "page24", "speed", "tests")
ROOT = Path(__file__).resolve().parent.parent
# --smoke, busy 2-core CPU
SMOKE_S = {"cuda_tests": 4.0, "default": 8.0, "course": 6.0, "page24": 8.0, "speed": 12.0, "tests": 4.0}
# see the docstring
H200_S = {"cuda_tests": 40.0, "default": 110.0, "course": 156.0, "page24": 130.0, "speed": 75.0, "tests": 300.0}


def estimate_s(part: str, smoke: bool) -> float:
    """The part's estimated seconds: measured on the CPU (smoke) or on the H200 (see the docstring)."""
    return SMOKE_S[part] if smoke else H200_S[part]


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion ``correct / n``."""
    p, denom = correct / n, 1 + z * z / n
    centre, half = (p + z * z / (2 * n)) / denom, z * sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


# ----------------------------------------------------------------------------- training


class TimedLoader:
    """A train loader that adds up the time ``fit`` waits for its batches, and notes when each pass starts."""

    def __init__(self, loader: torch.utils.data.DataLoader) -> None:
        self.loader, self.wait_s, self.started = loader, 0.0, 0.0

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:  # generator, sampler, dataset, batch_size: the loader's own
        return getattr(self.loader, name)

    def __iter__(self) -> Iterator[Any]:
        self.started = t0 = time.perf_counter()
        batches = iter(self.loader)  # worker start-up counts as waiting
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            finally:
                self.wait_s += time.perf_counter() - t0
            yield batch
            t0 = time.perf_counter()


class Meter(Callback):
    """Each epoch's training seconds (first batch requested to last step done), printed with its accuracy."""

    def __init__(self, loader: TimedLoader, name: str) -> None:
        self.loader, self.name, self.last, self.train_s = loader, name, 0.0, []

    def on_batch_end(self, step: int, loss: float, lr: float) -> None:
        self.last = time.perf_counter()

    def on_epoch_end(self, epoch: int, history: History) -> None:
        self.train_s.append(self.last - self.loader.started)
        print(f"  {self.name} epoch {epoch}: {history.seconds[-1]:.1f} s, train {self.train_s[-1]:.1f} s, "
              f"test acc {100 * history.test_acc[-1]:.2f}%", flush=True)


def recipe(part: str, args: argparse.Namespace, work: Path) -> TrainConfig:
    """The default recipe, or the course seed's; --smoke: tiny, on the CPU, on the bundled sample."""
    course = dict(optimizer="sgd", lr=0.01, scheduler="step", batch_size=64) if part == "course" else {}
    smoke = dict(data="sample", width=8, epochs=1, max_batches=4, num_workers=0, device="cpu",  # onecycle: >= 4 steps
                 batch_size=64) if args.smoke else {}
    settings: dict[str, Any] = dict(data=args.data, download=False, device=args.device, out=str(work / part),
                                    progress=False, **course)
    make = TrainConfig.page24 if part == "page24" else TrainConfig  # page24: Page's custom ResNet, 24 epochs
    return make(**{**settings, **smoke})


def save_weights(model: torch.nn.Module, out: Path, name: str, part_bytes: int = 15 * 2**20) -> dict[str, Any]:
    """``model`` as a float16 state dict split into files of at most ``part_bytes`` in ``out``, with sha256s."""
    with tempfile.TemporaryDirectory() as tmp:
        whole = export_weights(model, Path(tmp) / name)
        data = (Path(tmp) / name).read_bytes()
    parts = {}
    for i in range(0, len(data), part_bytes):
        path = out / f"{name}.part{i // part_bytes}"
        path.write_bytes(data[i:i + part_bytes])
        parts[path.name] = hashlib.sha256(data[i:i + part_bytes]).hexdigest()
    return {"file": name, "bytes": len(data), "sha256": whole, "parts": parts,
            "join": f"cat {name}.part* > {name}"}


def train_part(part: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Train one recipe and measure it."""
    config = recipe(part, args, work)
    setup = setup_run(config, overwrite=True)
    loader = TimedLoader(setup.train_loader)
    setup = setup._replace(train_loader=loader)
    cuda = setup.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    meter = Meter(loader, part)
    t0 = time.perf_counter()
    result = train_run(setup, callbacks=[meter])
    wall = time.perf_counter() - t0
    history, config = result.history, setup.config
    n = len(setup.test_loader.dataset)
    if config.max_batches:
        n = min(n, config.max_batches * setup.test_loader.batch_size)
    acc = history.test_acc[-1]
    images = setup.steps_per_epoch * config.batch_size  # drop_last: whole batches
    summary = {
        "settings": {k: getattr(config, k) for k in ("model", "width", "epochs", "batch_size", "optimizer", "lr", "scheduler",
                                                      "amp", "channels_last", "max_batches", "data", "augment_on")},
        "device": str(setup.device), "train_loader": type(loader.loader).__name__,
        "loader_workers": setup.train_loader.num_workers, "wall_s": wall,
        "seconds_per_epoch": statistics.median(history.seconds), "first_epoch_s": history.seconds[0],
        "train_images_per_s": images / statistics.median(meter.train_s),
        "loader_wait_share": loader.wait_s / sum(meter.train_s),
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "test_images": n, "accuracy": acc, "accuracy_95": wilson(round(acc * n), n),
        "test_acc_per_epoch": history.test_acc, "history": history.to_dict(),  # the shipped model's curves
    }
    if part == "default":
        model = result.model.cpu().to(memory_format=torch.contiguous_format)  # plain NCHW tensors in the file
        summary["weights"] = save_weights(model, args.out, "resnet18_cifar10.pt")
    return summary


# ----------------------------------------------------------------------------- speed


def cam_times(device: torch.device, n_images: int, repeats: int, width: int = 64) -> dict[str, float]:
    """cam_speed.py's four ways on ``device``: median seconds of each, and the ratios."""
    torch.manual_seed(0)
    model = resnet18(num_classes=10, width=width).eval().to(device)
    images = torch.randn(n_images, 3, 32, 32, device=device)  # (N, 3, 32, 32)
    layers = resnet_layers(model)
    with torch.no_grad():
        preds = model(images).argmax(1).tolist()
    targets = [ClassifierOutputTarget(c) for c in preds]

    def per_layer(one_by_one: bool) -> None:
        cuts = [slice(i, i + 1) for i in range(len(images))] if one_by_one else [slice(None)]
        for layer in layers.values():
            with GradCAM(model=model, target_layers=[layer]) as cam:
                for cut in cuts:
                    cam(input_tensor=images[cut], targets=targets[cut])

    def floor() -> None:
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(images), torch.as_tensor(preds, device=device)).backward()
        if device.type == "cuda":
            torch.cuda.synchronize()

    ways: dict[str, Callable[[], object]] = {
        "a_layer_cams": lambda: layer_cams(model, images, layers, targets=preds),
        "b_gradcam_per_layer": lambda: per_layer(False), "c_gradcam_per_layer_per_image": lambda: per_layer(True),
        "d_forward_backward": floor,
    }
    times = {name: time_it(fn, repeats, warmups=1 if repeats < 3 else 2)[0] for name, fn in ways.items()}
    a, b, c, d = times.values()
    return {**times, "b/a": b / a, "c/a": c / a, "a/d": a / d, "images": n_images}


def cam_check(device: torch.device, n_images: int) -> dict[str, Any]:
    """Largest difference per layer between ``layer_cams`` and pytorch-grad-cam's GradCAM on ``device``, both in
    full float32; and between GradCAM with TF32 (torch's cuDNN default) and without, which is TF32's own effect."""
    model = pretrained("resnet18_w16_cifar10", device=device)
    test = load_sample(train=False, transform=test_transforms())
    images = torch.stack([test[i][0] for i in range(0, len(test), len(test) // n_images)]).to(device)  # (N, 3, 32, 32)
    layers = resnet_layers(model)
    with torch.no_grad():
        targets = [ClassifierOutputTarget(c) for c in model(images).argmax(1).tolist()]

    def gradcam(name: str) -> Any:
        with GradCAM(model=model, target_layers=[layers[name]]) as cam:
            return cam(input_tensor=images, targets=targets)

    ours = layer_cams(model, images, layers)  # exact float32 whatever the flags (core.devices.exact_float32)
    with exact_float32():
        exact = {name: gradcam(name) for name in layers}
    tf32 = {name: gradcam(name) for name in layers}  # the flags as torch leaves them
    check = {"images": len(images), "tolerance": 1e-5, "cudnn_tf32": torch.backends.cudnn.allow_tf32,
             "cudnn_benchmark": torch.backends.cudnn.benchmark,
             "max_abs_diff": {name: float(abs(ours[name] - exact[name]).max()) for name in layers},
             "tf32_effect_on_gradcam": {name: float(abs(tf32[name] - exact[name]).max()) for name in layers}}
    check["equal"] = max(check["max_abs_diff"].values()) <= 1e-5
    return check


def speed_part(args: argparse.Namespace) -> dict[str, Any]:
    """train_speed.py's rows and cam_speed.py's comparison on the device, and the CAM equality check."""
    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    torch.backends.cudnn.benchmark = True  # as fit sets it on CUDA, whether or not a training part ran first
    batches, steps, warmup, width = ((4, 8), 1, 1, 8) if args.smoke else ((128, 512), 50, 10, 64)
    rows = []
    for batch in batches:
        for label, amp, cl in [("fp32", False, False), ("AMP", True, False), ("fp32 channels_last", False, True),
                               ("AMP channels_last", True, True)]:
            rows.append({"batch": batch, "setting": label,
                         "images_per_s": step_rate(device, amp, cl, batch, steps, warmup, width)})
    for row in rows:
        row["ratio"] = row["images_per_s"] / next(r["images_per_s"] for r in rows if r["batch"] == row["batch"])
    cam = cam_times(device, 4, 1, width) if args.smoke else cam_times(device, 20, 5)
    loaders = loader_rows("default", str(device), tile=1 if args.smoke else 25, passes=1,
                          workers=(0,) if args.smoke else (default_num_workers(),))  # 2,000 or 50,000 images a pass
    return {"device": str(device), "width": width, "train_step": rows, "cam": cam,
            "cam_check": cam_check(device, 4 if args.smoke else 50), "loaders": loaders}


# ----------------------------------------------------------------------------- tests


def pytest_summary(text: str) -> dict[str, Any]:
    """Counts from pytest's last line (or, cut short, from ``-v``'s one line per test), the skip reasons (counted)
    and the failing tests, named as each ended."""
    last = next((line for line in reversed(text.splitlines()) if re.search(r" in [\d.]+s", line)), "")
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)", last)}
    if not last:  # no summary line: count the verbose lines ("tests/a.py::test_b PASSED", "[gw0] [ 5%] PASSED tests/...")
        ends = re.findall(r"\b(PASSED|FAILED|SKIPPED|ERROR)\b", text)
        counts = {"passed": ends.count("PASSED"), "failed": ends.count("FAILED"), "skipped": ends.count("SKIPPED"),
                  "error": ends.count("ERROR")}
    reasons: Counter[str] = Counter()
    for n, reason in re.findall(r"^SKIPPED \[(\d+)\] [^:]+:\d+: (.*)$", text, flags=re.M):
        reasons[reason.strip()] += int(n)
    failures = re.findall(r"(tests/\S+::\S+) (?:FAILED|ERROR)|(?:FAILED|ERROR) (tests/\S+::\S+)", text)  # -v line | summary
    failed = list(dict.fromkeys(a or b for a, b in failures))
    return {**{k: counts.get(k, 0) for k in ("passed", "failed", "skipped")}, "errors": counts.get("error", 0) +
            counts.get("errors", 0), "skip_reasons": dict(reasons), "failed_tests": failed[:40], "last_line": last}


def tests_part(args: argparse.Namespace, timeout_s: float, cuda_only: bool = False) -> dict[str, Any]:
    """The test suite in a subprocess with the GPU visible (``cuda_only``: tests/test_on_cuda.py alone, serial;
    --smoke: one quick file, serial)."""
    try:
        import xdist  # noqa: F401
        parallel = not (args.smoke or cuda_only)
    except ImportError:
        parallel = False
    if args.smoke:
        where = ["tests/core/test_checks.py"]
    elif cuda_only:
        where = ["tests/test_on_cuda.py", "-rs"]
    else:
        where = ["tests", "--ignore=tests/benchmarks", "--ignore=tests/test_on_cuda.py", "-rs"]
    cmd = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", *(["-n", "auto"] if parallel else []), *where]
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
        code, text = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:  # cut short: what it printed so far names the failures so far
        out = exc.stdout or b""
        code, text = None, out.decode(errors="replace") if isinstance(out, bytes) else out
    summary = pytest_summary(text)
    if code is None:
        raise TimeoutError(f"the tests ran past {timeout_s:.0f} s; {summary['passed']} passed and these failed so far: "
                           f"{summary['failed_tests']}")
    return {"command": " ".join(cmd[1:]), "returncode": code, **summary, "output_tail": text[-3000:]}


# ----------------------------------------------------------------------------- report


def hardware() -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    return {"gpu": torch.cuda.get_device_name(0) if cuda else None, "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
            "cpu": cpu_name(), "cpu_count": os.cpu_count(), "python": sys.version.split()[0]}


def fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown tables."""
    hw, parts = report["hardware"], report["parts"]
    lines = [f"# gpu_check{' (smoke)' if report['smoke'] else ''}", "",
             f"GPU {hw['gpu']}; torch {hw['torch']}, CUDA {hw['cuda']}, cuDNN {hw['cudnn']}; {hw['cpu']}, "
             f"{hw['cpu_count']} CPUs; Python {hw['python']}", "",
             "| part | status | seconds | estimate s | note |", "| --- | --- | --- | --- | --- |"]
    for name in PARTS:
        p = parts.get(name, {"status": "not run"})
        lines.append(f"| {name} | {p['status']} | {fmt(p.get('seconds'), '.0f')} | {fmt(report['plan'].get(name), '.0f')} "
                     f"| {p.get('error', p.get('reason', ''))[:150]} |")
    trained = [(n, parts[n]["result"]) for n in ("default", "course", "page24") if parts.get(n, {}).get("status") == "ok"]
    if trained:
        lines += ["", "| recipe | epochs | batch | workers | s/epoch | train images/s | loader wait | peak GPU MiB "
                  "| accuracy (95%) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for name, r in trained:
            lo, hi = r["accuracy_95"]
            lines.append(f"| {name} | {r['settings']['epochs']} | {r['settings']['batch_size']} | {r['loader_workers']} "
                         f"| {r['seconds_per_epoch']:.2f} "
                         f"| {r['train_images_per_s']:.0f} | {100 * r['loader_wait_share']:.0f}% "
                         f"| {fmt(r['peak_gpu_mib'], '.0f')} "
                         f"| {100 * r['accuracy']:.2f}% [{100 * lo:.1f}, {100 * hi:.1f}] of {r['test_images']} |")
    if parts.get("speed", {}).get("status") == "ok":
        s = parts["speed"]["result"]
        lines += ["", f"ResNet18 (width {s['width']}) training step on {s['device']}:", "",
                  "| batch | setting | images/s | ratio |", "| --- | --- | --- | --- |"]
        lines += [f"| {r['batch']} | {r['setting']} | {r['images_per_s']:.0f} | {r['ratio']:.2f}x |" for r in s["train_step"]]
        c, check = s["cam"], s["cam_check"]
        lines += ["", f"Grad-CAM, 5 layers x {c['images']} images, width {s['width']} (median s): "
                  f"layer_cams {c['a_layer_cams']:.4f}, GradCAM per "
                  f"layer {c['b_gradcam_per_layer']:.4f}, per layer per image {c['c_gradcam_per_layer_per_image']:.4f}, "
                  f"forward+backward {c['d_forward_backward']:.4f}; b/a {c['b/a']:.1f}, c/a {c['c/a']:.1f}, a/d {c['a/d']:.2f}. "
                  f"layer_cams = GradCAM to 1e-5 on {check['images']} images, both in float32: {check['equal']} "
                  f"(max diff {max(check['max_abs_diff'].values()):.2e}); TF32 moves GradCAM's maps by up to "
                  f"{max(check['tf32_effect_on_gradcam'].values()):.2e}"]
        lines += ["", "The two training pipelines without a model (the default preset, batch 512):", "",
                  "| pipeline | images/s | speed | CPU-s per 50,000 images | CPU share |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {r['pipeline']} | {r['images_per_s']:.0f} | {r['speed_ratio']:.2f}x | {r['cpu_s_per_epoch']:.1f} "
                  f"| {r['cpu_ratio']:.2f}x |" for r in s.get("loaders", [])]
    for name in ("cuda_tests", "tests"):
        if parts.get(name, {}).get("status") == "ok":
            t = parts[name]["result"]
            lines += ["", f"{name} (`{t['command']}`): {t['passed']} passed, {t['failed']} failed, {t['errors']} errors, "
                      f"{t['skipped']} skipped", *[f"- skipped {n}x: {why}" for why, n in t["skip_reasons"].items()],
                      *[f"- failed: {test}" for test in t["failed_tests"]]]
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], out: Path) -> None:
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "gpu_check.md").write_text(markdown(report))


def run_part(name: str, args: argparse.Namespace, work: Path, left_s: float) -> dict[str, Any]:
    """One part's result, or its error (the run goes on)."""
    t0 = time.perf_counter()
    try:
        if name in ("tests", "cuda_tests"):
            result = tests_part(args, timeout_s=max(60.0, left_s), cuda_only=name == "cuda_tests")
        elif name == "speed":
            result = speed_part(args)
        else:
            result = train_part(name, args, work)
        return {"status": "ok", "seconds": time.perf_counter() - t0, "result": result}
    except Exception as exc:  # noqa: BLE001 - recorded, and the next part runs
        traceback.print_exc()
        return {"status": "failed", "seconds": time.perf_counter() - t0, "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc()[-3000:]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json, gpu_check.md, the weights")
    parser.add_argument("--smoke", action="store_true", help="the CPU, the bundled sample, a few batches")
    parser.add_argument("--skip", nargs="+", default=[], choices=PARTS, metavar="PART", help=f"parts to leave out: {PARTS}")
    parser.add_argument("--budget-s", type=float, default=480.0, help="skip a part whose estimate exceeds the time left")
    parser.add_argument("--data", default=os.environ.get("EVA_CIFAR10_NPZ", "/tmp/cifar10_full.npz"))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    plan = {name: estimate_s(name, args.smoke) for name in PARTS if name not in args.skip}
    print(f"gpu_check: estimates (s) {plan}, total {sum(plan.values()):.0f} of a {args.budget_s:.0f} s budget", flush=True)
    report: dict[str, Any] = {"smoke": args.smoke, "args": vars(args), "hardware": hardware(), "plan": plan,
                              "parts": {name: {"status": "skipped", "reason": "--skip"} for name in args.skip}}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        for name, estimate in plan.items():
            left = args.budget_s - (time.perf_counter() - start)
            if estimate > left:
                report["parts"][name] = {"status": "skipped", "reason": f"estimate {estimate:.0f} s > {left:.0f} s left"}
            else:
                print(f"gpu_check: {name} (estimate {estimate:.0f} s, {left:.0f} s left)", flush=True)
                report["parts"][name] = run_part(name, args, Path(work), left)
            print(f"gpu_check: {name} {report['parts'][name]['status']}", flush=True)
            report["wall_s"] = time.perf_counter() - start
            write(report, args.out)
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
