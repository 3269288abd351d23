"""Training-step and data-loader throughput (images/s), printed as tables with ratios.

    python benchmarks/train_speed.py            # CPU here; adds CUDA rows when a GPU is present
    python benchmarks/train_speed.py --steps 5  # quicker

Rows:
* ResNet18 (width 64, 11.2M parameters) forward + backward + SGD step at batch 128 on random
  32x32 inputs: CPU fp32; on CUDA also fp32, AMP (bf16 or fp16), channels_last, and both.
  Ratios are against the first row of the same run.
* the albumentations train preset over the bundled CIFAR-10 sample through ``make_loader``
  with 0, 1 and 2 workers at batch 128; ratios against 0 workers.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch import nn

from eva_utils import data, transforms
from eva_utils.models import resnet18
from eva_utils.training import mixed_precision


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def step_rate(device: torch.device, amp: bool, channels_last: bool, batch: int, steps: int, warmup: int,
              width: int = 64) -> float:
    """Images per second of full training steps (median over ``steps`` timed steps) of ResNet18 at ``width``."""
    torch.manual_seed(0)
    model = resnet18(width=width).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    crit = nn.CrossEntropyLoss()
    precision = mixed_precision(device, amp)
    scaler = precision.new_scaler()  # enabled for float16 only, as fit's
    x = torch.randn(batch, 3, 32, 32, device=device).to(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with precision.autocast():
            loss = crit(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def loader_rate(workers: int, batch: int, passes: int) -> float:
    """Images per second through make_loader with the train preset (best of ``passes`` passes)."""
    ds = data.load_sample(train=True, transform=transforms.train_transforms())
    loader = data.make_loader(ds, batch, shuffle=True, num_workers=workers, seed=0)
    best = 0.0
    for _ in range(passes):
        t0 = time.perf_counter()
        n = sum(images.shape[0] for images, _ in loader)
        best = max(best, n / (time.perf_counter() - t0))
    return best


def table(title: str, rows: list[tuple[str, float]]) -> None:
    print(f"\n{title}")
    print(f"{'setting':<34}{'images/s':>12}{'ratio':>9}")
    base = rows[0][1]
    for name, rate in rows:
        print(f"{name:<34}{rate:>12.1f}{rate / base:>8.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per row")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--passes", type=int, default=2, help="loader passes per row (2,000 images each)")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} torch threads; torch {torch.__version__}")
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name()}")
    cpu = torch.device("cpu")
    rows = [("CPU fp32", step_rate(cpu, False, False, args.batch, args.steps, args.warmup))]
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        rows += [
            (f"CUDA {label}", step_rate(gpu, amp, cl, args.batch, 50, 10))
            for label, amp, cl in [("fp32", False, False), ("AMP", True, False), ("fp32 channels_last", False, True),
                                   ("AMP channels_last", True, True)]
        ]
    table(f"ResNet18 training step, batch {args.batch}", rows)
    table(
        f"data loader, albumentations train preset, batch {args.batch}",
        [(f"{w} workers", loader_rate(w, args.batch, args.passes)) for w in (0, 1, 2)],
    )


if __name__ == "__main__":
    main()
