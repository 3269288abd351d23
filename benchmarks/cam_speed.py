"""How much faster is ``layer_cams`` than calling pytorch-grad-cam once per layer?

Setting: ResNet18 (width 64, 10 classes, eval mode), the five stage outputs
layer0..layer4, 20 images of 32x32, on the CPU, Grad-CAM of the predicted class.

    (a) eva_utils.cam.layer_cams, all 5 layers      one forward + one backward to the activations
    (b) GradCAM once per layer, 20 images batched  5 forwards + 5 full backwards
    (c) GradCAM once per layer per image           100 calls, the course notebooks' loop
    (d) one plain forward + loss.backward()        the floor: what any gradient method costs

Targets: b/a >= 5, c/a >= 15, a/d <= 1.5. Measured on a 2-core Xeon VM, torch 2.14.1:
a 0.21 s, b 1.53 s, c 3.64 s, d 0.29 s: b/a 7.3, c/a 17.3, a/d 0.73. On a busy machine the
ratios swing (two torch threads fighting another process slow everything unevenly): rerun. Times are medians
of ``--repeats`` runs after two warm-ups (minimums also shown: the machine may be shared, and contention only
ever adds time); ratios use medians.

Run::

    python benchmarks/cam_speed.py            # add --repeats 7 for steadier numbers
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from eva_utils.cam import layer_cams, resnet_layers
from eva_utils.models import resnet18


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def time_it(fn: Callable[[], object], repeats: int, warmups: int = 2) -> tuple[float, float]:
    """Median and minimum wall time of ``fn()`` in seconds, after ``warmups`` warm-up calls."""
    for _ in range(warmups):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main(args: argparse.Namespace) -> dict[str, float]:
    torch.manual_seed(0)
    model = resnet18(num_classes=10, width=64).eval()
    images = torch.randn(args.images, 3, 32, 32)  # (N, 3, 32, 32), normalised-looking
    layers = resnet_layers(model)
    with torch.no_grad():
        preds = model(images).argmax(1).tolist()
    targets = [ClassifierOutputTarget(c) for c in preds]

    def ours() -> None:
        layer_cams(model, images, layers, targets=preds)

    def per_layer() -> None:
        for layer in layers.values():
            with GradCAM(model=model, target_layers=[layer]) as cam:
                cam(input_tensor=images, targets=targets)

    def per_layer_per_image() -> None:
        for layer in layers.values():
            with GradCAM(model=model, target_layers=[layer]) as cam:
                for i in range(len(images)):
                    cam(input_tensor=images[i:i + 1], targets=targets[i:i + 1])

    def floor() -> None:
        model.zero_grad()
        F.cross_entropy(model(images), torch.as_tensor(preds)).backward()

    times = {
        "a  layer_cams, 5 layers": time_it(ours, args.repeats),
        "b  GradCAM per layer": time_it(per_layer, args.repeats),
        "c  GradCAM per layer per image": time_it(per_layer_per_image, max(1, args.repeats // 2)),
        "d  forward + loss.backward()": time_it(floor, args.repeats),
    }
    model.zero_grad(set_to_none=True)
    a, b, c, d = (median for median, _ in times.values())

    print(f"CPU: {cpu_model()}; torch {torch.__version__}; {torch.get_num_threads()} threads")
    print(f"ResNet18 width 64, {len(layers)} layers x {len(images)} images at 32x32, median of {args.repeats}\n")
    print(f"{'what':34s} {'median s':>9s} {'min s':>9s}")
    for name, (median, fastest) in times.items():
        print(f"{name:34s} {median:9.3f} {fastest:9.3f}")
    print()
    ratios = {"b/a": (b / a, ">= 5"), "c/a": (c / a, ">= 15"), "a/d": (a / d, "<= 1.5")}
    for name, (value, target) in ratios.items():
        ok = value >= float(target[3:]) if target.startswith(">=") else value <= float(target[3:])
        print(f"{name:5s} {value:7.2f}   target {target:7s} {'ok' if ok else 'MISSED'}")
    return {name: value for name, (value, _) in ratios.items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20, help="batch size (images)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per variant (median)")
    main(parser.parse_args())
