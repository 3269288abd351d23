"""The first run on a GPU in one command: both recipes at full scale, the speed tables, the test suite.

    python benchmarks/gpu_check.py --out DIR              # a CUDA machine: about 7 minutes on an H200
    python benchmarks/gpu_check.py --out DIR --smoke      # the same code on the CPU, the bundled sample, < 1 min
    python benchmarks/gpu_check.py --out DIR --skip tests --budget-s 300   # leave parts out; skip what won't fit

The lent GPU machine (../shared/device/README.md): here ``bash ../shared/device/prepare.sh``, then the device
tool's ``run`` with ``carry: [".device"]``, ``timeout_s: 540`` and the command
``bash .device/gpu_env.sh python benchmarks/gpu_check.py --out $OUT``.

Parts, in order; after each, DIR/gpu_check.json and DIR/gpu_check.md are rewritten, and a part that fails
records its error while the next one runs:

* ``default``: ``TrainConfig()`` as a Colab user gets it (ResNet18 width 64, 20 epochs, batch 512, one cycle to
  lr 0.4, AMP, channels_last, the default loader workers) on ``--data`` (50,000 images; test split: the 1,000
  bundled test images). Its weights come back as a float16 state dict in parts of <= 15 MiB with sha256s.
* ``course``: the course seed's recipe, the same with SGD lr 0.01, StepLR (step 6, gamma 0.1), batch 64.
  Both report seconds per epoch (wall: training + evaluation), training images/s (from the loader's first
  request to the last step), the loader's share (time spent waiting for the next batch over the training time;
  ``fit`` syncs on ``loss.item()`` every step, so the GPU idles then), peak GPU memory, and the final accuracy
  with its 95% Wilson interval.
* ``speed``: ``train_speed.step_rate`` (fp32, AMP, channels_last, both; batch 128 and 512), ``cam_speed``'s four
  ways (``layer_cams``; GradCAM per layer; per layer per image; a plain forward+backward), and ``layer_cams`` vs
  pytorch-grad-cam's GradCAM on the device (the shipped model, 50 real images) to 1e-5.
* ``tests``: ``python -m pytest -q -n auto`` (serial without xdist) with the GPU visible, without tests/benchmarks
  (this script's smoke run); counts, failures and the skip reasons.

Budget. Measured on the project's 2-core CPU (AMD EPYC, torch 2.14.1): the width-64 train loop at batch 512,
31 images/s (benchmarks/cpu_path.py); the train-preset loader, 3,150 images/s a worker (6,300 with 2); the
suite with ``-n 2`` about 1,500 s (on 2 cores shared with other runs, load 4-5); ``--smoke`` 35 s in all (8, 6, 8
and 4 s a part, same machine). Assumed for an H200: the width-64 step with AMP and channels_last 500x the 2-core
CPU (15,500 images/s); 6 ms a step of launches and syncs whatever the batch (dominant at batch 64); the loader at
the default's 4 workers (12,600 images/s); 1.5 s an epoch of worker start-up and evaluation, 3 s a run; the suite
8x faster with 16 workers on 16 idle cores; the speed part 40 s. So: default 112 s, course 127 s, speed 40 s,
tests 188 s, 467 s in all. The estimates are printed first; ``--budget-s`` (default 480) skips a part whose
estimate exceeds the time left, saying so: if the tests are skipped, a second call runs them alone
(``... gpu_check.py --out $OUT --skip default course speed``).
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
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from train_speed import cpu_name, step_rate

from eva_utils.data import load_sample
from eva_utils.data.presets import test_transforms
from eva_utils.explain.cam import layer_cams, resnet_layers
from eva_utils.models import resnet18
from eva_utils.models.shipped import export_weights, pretrained
from eva_utils.training.history import Callback, History
from eva_utils.training.recipe import TrainConfig, setup_run, train_run

PARTS = ("default", "course", "speed", "tests")
ROOT = Path(__file__).resolve().parent.parent
SMOKE_S = {"default": 8.0, "course": 6.0, "speed": 8.0, "tests": 4.0}  # measured here: --smoke, busy 2-core CPU
CPU_STEP_IMG_S, CPU_WORKER_IMG_S, SUITE_2CORE_S = 31.0, 3150.0, 1500.0  # measured here (see the docstring)
GPU_SPEEDUP, STEP_OVERHEAD_S, WORKERS, SUITE_SPEEDUP = 500.0, 0.006, 4, 8.0  # assumed for an H200


def estimate_s(part: str, smoke: bool) -> float:
    """The part's estimated seconds: measured CPU costs (smoke) or those scaled by the docstring's assumptions."""
    if smoke:
        return SMOKE_S[part]
    if part == "tests":
        return SUITE_2CORE_S / SUITE_SPEEDUP
    if part == "speed":
        return 40.0
    batch = 512 if part == "default" else 64
    rate = min(CPU_STEP_IMG_S * GPU_SPEEDUP, CPU_WORKER_IMG_S * WORKERS)  # images/s: the GPU or the loader
    epoch = max(50_000 / rate, (50_000 // batch) * STEP_OVERHEAD_S) + 1.5  # the loader works beside the steps
    return 3.0 + 20 * epoch


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
    return TrainConfig(**{**settings, **smoke})


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
        "settings": {k: getattr(config, k) for k in ("width", "epochs", "batch_size", "optimizer", "lr", "scheduler",
                                                      "amp", "channels_last", "max_batches", "data")},
        "device": str(setup.device), "loader_workers": setup.train_loader.num_workers, "wall_s": wall,
        "seconds_per_epoch": statistics.median(history.seconds), "first_epoch_s": history.seconds[0],
        "train_images_per_s": images / statistics.median(meter.train_s),
        "loader_wait_share": loader.wait_s / sum(meter.train_s),
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "test_images": n, "accuracy": acc, "accuracy_95": wilson(round(acc * n), n),
        "test_acc_per_epoch": history.test_acc,
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
    """Largest difference between ``layer_cams`` and pytorch-grad-cam's GradCAM, per layer, on ``device``."""
    model = pretrained("resnet18_w16_cifar10", device=device)
    test = load_sample(train=False, transform=test_transforms())
    images = torch.stack([test[i][0] for i in range(0, len(test), len(test) // n_images)]).to(device)  # (N, 3, 32, 32)
    layers = resnet_layers(model)
    with torch.no_grad():
        targets = [ClassifierOutputTarget(c) for c in model(images).argmax(1).tolist()]

    def largest_diffs() -> dict[str, float]:
        ours = layer_cams(model, images, layers)
        diffs = {}
        for name, layer in layers.items():
            with GradCAM(model=model, target_layers=[layer]) as cam:
                diffs[name] = float(abs(ours[name] - cam(input_tensor=images, targets=targets)).max())
        return diffs

    check = {"images": len(images), "tolerance": 1e-5, "cudnn_tf32": torch.backends.cudnn.allow_tf32,
             "cudnn_benchmark": torch.backends.cudnn.benchmark, "max_abs_diff": largest_diffs()}
    check["equal"] = max(check["max_abs_diff"].values()) <= 1e-5
    if not check["equal"] and device.type == "cuda" and torch.backends.cudnn.allow_tf32:  # is TF32 the cause?
        torch.backends.cudnn.allow_tf32 = False
        check["max_abs_diff_without_tf32"] = largest_diffs()
        torch.backends.cudnn.allow_tf32 = True
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
    return {"device": str(device), "width": width, "train_step": rows, "cam": cam,
            "cam_check": cam_check(device, 4 if args.smoke else 50)}


# ----------------------------------------------------------------------------- tests


def pytest_summary(text: str) -> dict[str, Any]:
    """Counts from pytest's last line, the skip reasons (counted) and the failures from its ``-ra`` summary."""
    last = next((line for line in reversed(text.splitlines()) if re.search(r" in [\d.]+s", line)), "")
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)", last)}
    reasons: Counter[str] = Counter()
    for n, reason in re.findall(r"^SKIPPED \[(\d+)\] [^:]+:\d+: (.*)$", text, flags=re.M):
        reasons[reason.strip()] += int(n)
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", text, flags=re.M)
    return {**{k: counts.get(k, 0) for k in ("passed", "failed", "skipped")}, "errors": counts.get("error", 0) +
            counts.get("errors", 0), "skip_reasons": dict(reasons), "failed_tests": failed[:40], "last_line": last}


def tests_part(args: argparse.Namespace, timeout_s: float) -> dict[str, Any]:
    """The test suite in a subprocess, with the GPU visible (--smoke: one quick file, serial)."""
    try:
        import xdist  # noqa: F401
        parallel = not args.smoke
    except ImportError:
        parallel = False
    where = ["tests/core/test_checks.py"] if args.smoke else ["tests", "--ignore=tests/benchmarks"]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(["-n", "auto"] if parallel else []), *where]
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
        code, text = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:  # a hang: what it printed so far, and the part counts as failed
        out = exc.stdout or b""
        code, text = None, out.decode(errors="replace") if isinstance(out, bytes) else out
    if code is None:
        raise TimeoutError(f"the tests ran past {timeout_s:.0f} s; their output ended: {text[-500:]}")
    return {"command": " ".join(cmd[1:]), "returncode": code, **pytest_summary(text), "output_tail": text[-3000:]}


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
    trained = [(n, parts[n]["result"]) for n in ("default", "course") if parts.get(n, {}).get("status") == "ok"]
    if trained:
        lines += ["", "| recipe | epochs | batch | workers | s/epoch | train images/s | loader wait | peak GPU MiB "
                  "| accuracy (95%) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for name, r in trained:
            lo, hi = r["accuracy_95"]
            lines.append(f"| {name} | {r['settings']['epochs']} | {r['settings']['batch_size']} | {r['loader_workers']} "
                         f"| {r['seconds_per_epoch']:.2f} "
                         f"| {r['train_images_per_s']:.0f} | {100 * r['loader_wait_share']:.0f}% | {fmt(r['peak_gpu_mib'], '.0f')} "
                         f"| {100 * r['accuracy']:.2f}% [{100 * lo:.1f}, {100 * hi:.1f}] of {r['test_images']} |")
    if parts.get("speed", {}).get("status") == "ok":
        s = parts["speed"]["result"]
        lines += ["", f"ResNet18 (width {s['width']}) training step on {s['device']}:", "", "| batch | setting | images/s | ratio |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {r['batch']} | {r['setting']} | {r['images_per_s']:.0f} | {r['ratio']:.2f}x |" for r in s["train_step"]]
        c, check = s["cam"], s["cam_check"]
        lines += ["", f"Grad-CAM, 5 layers x {c['images']} images, width {s['width']} (median s): layer_cams {c['a_layer_cams']:.4f}, GradCAM per "
                  f"layer {c['b_gradcam_per_layer']:.4f}, per layer per image {c['c_gradcam_per_layer_per_image']:.4f}, "
                  f"forward+backward {c['d_forward_backward']:.4f}; b/a {c['b/a']:.1f}, c/a {c['c/a']:.1f}, a/d {c['a/d']:.2f}. "
                  f"layer_cams = GradCAM to 1e-5 on {check['images']} images: {check['equal']} "
                  f"(max diff {max(check['max_abs_diff'].values()):.2e})"]
    if parts.get("tests", {}).get("status") == "ok":
        t = parts["tests"]["result"]
        lines += ["", f"Tests (`{t['command']}`): {t['passed']} passed, {t['failed']} failed, {t['errors']} errors, "
                  f"{t['skipped']} skipped", *[f"- skipped {n}x: {why}" for why, n in t["skip_reasons"].items()],
                  *[f"- failed: {name}" for name in t["failed_tests"]]]
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], out: Path) -> None:
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "gpu_check.md").write_text(markdown(report))


def run_part(name: str, args: argparse.Namespace, work: Path, left_s: float) -> dict[str, Any]:
    """One part's result, or its error (the run goes on)."""
    t0 = time.perf_counter()
    try:
        if name == "tests":
            result = tests_part(args, timeout_s=max(60.0, left_s))
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
