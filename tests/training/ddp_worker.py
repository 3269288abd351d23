"""A training run the distributed tests start under torchrun (2 processes) and as a plain single process.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/ddp_worker.py OUT [fail]
    python tests/ddp_worker.py OUT

Augmentation off, the same global batch (64), one epoch, a small CNN without BatchNorm (PyTorch's
SyncBatchNorm, which would make a ResNet's statistics those of the global batch, runs on GPUs only; without
it each process normalises by its own half of the batch and the runs differ). The single process
draws its batches from a ``DistributedSampler(num_replicas=1)`` of the same seed: the permutation the two
processes split between them, so both runs take the same optimizer steps on the same global batches.
With ``fail``, the process of rank 1 raises while loading its third image.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from eva_utils import data, training
from eva_utils.data import presets as transforms
from eva_utils.training import distributed


def small_cnn() -> nn.Module:
    """Two convolutions and a linear layer: no BatchNorm, no dropout."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


class BreaksOnRankOne(data.ArrayDataset):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def __getitem__(self, index):
        self.calls += 1
        group = distributed.current()
        if group is not None and group.rank == 1 and self.calls == 3:
            raise RuntimeError("rank 1 broke while loading an image")
        return super().__getitem__(index)


def main(out: Path, fail: bool) -> None:
    training.set_seed(0)
    sample = data.load_sample(True, transforms.test_transforms())
    cls = BreaksOnRankOne if fail else data.ArrayDataset
    train_set = cls(sample.images[:512], sample.labels[:512], sample.transform)
    test = data.load_sample(False, transforms.test_transforms())
    test_set = data.ArrayDataset(test.images[:201], test.labels[:201], test.transform)  # odd: no padding allowed
    train_loader = data.make_loader(train_set, 64, shuffle=True, num_workers=0, seed=0, drop_last=True)
    if not distributed.under_torchrun():
        train_loader = DataLoader(train_set, 64, sampler=DistributedSampler(train_set, 1, 0, shuffle=True, seed=0,
                                                                              drop_last=True), drop_last=True)
    test_loader = data.make_loader(test_set, 50, num_workers=0)
    model = small_cnn()
    optimizer = training.make_optimizer(model, "sgd", lr=0.05)
    training.fit(model, train_loader, test_loader, 1, optimizer, device="cpu", progress=False, seed=0,
                 checkpoint_path=out / "checkpoint.pt")
    distributed.leave()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]), fail=len(sys.argv) > 2 and sys.argv[2] == "fail")
