"""eva_utils.data.device_loader: what fit and find_lr use of a loader, its seeding protocol, and its refusals."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from eva_utils import data
from eva_utils.core.errors import UserError
from eva_utils.data.batch_transforms import NO_AUGMENTATION, BatchTransform
from eva_utils.training.optim import seed_epoch


def _sample(n=300):
    full = data.load_sample(True)
    keep = np.random.default_rng(0).permutation(len(full))[:n]
    return data.ArrayDataset(full.images[keep], full.labels[keep], classes=full.classes)


def _epoch(loader):
    return [(images.clone(), labels.clone()) for images, labels in loader]


def test_batches_are_normalised_tensors_on_the_device_with_the_train_loaders_length():
    ds = _sample(300)
    loader = data.DeviceLoader(ds, 64, device="cpu")
    batches = _epoch(loader)
    assert isinstance(loader, DataLoader) and loader.batch_size == 64 and loader.drop_last
    assert len(loader) == len(batches) == 4  # 300 // 64: the last 44 images dropped, as the train loader does
    images, labels = batches[0]
    assert images.shape == (64, 3, 32, 32) and images.dtype == torch.float32 and labels.dtype == torch.int64
    assert images.device.type == loader.images.device.type == "cpu"
    assert loader.dataset is ds and loader.dataset.classes == data.CIFAR10_CLASSES
    assert len(data.DeviceLoader(ds, 64, drop_last=False)) == 5


def test_without_augmentation_a_pass_is_each_image_once_normalised_with_its_label():
    ds = _sample(256)
    loader = data.DeviceLoader(ds, 64, BatchTransform(**NO_AUGMENTATION), drop_last=False)
    images, labels = (torch.cat(t) for t in zip(*_epoch(loader), strict=True))
    expected = torch.stack([data.to_chw_float(image) for image in ds.images])  # (N, 3, H, W) in [0, 1]
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (data.CIFAR10_MEAN, data.CIFAR10_STD))
    expected = (expected - mean) / std
    # find each yielded image among the originals: a permutation, and the labels travel with their images
    distance = torch.cdist(images.flatten(1), expected.flatten(1), compute_mode="donot_use_mm_for_euclid_dist")
    match = distance.argmin(1)
    assert torch.allclose(distance.min(1).values, torch.zeros(len(images)), atol=1e-3)
    assert sorted(match.tolist()) == list(range(len(ds)))
    assert torch.equal(labels, torch.from_numpy(ds.labels)[match])
    assert not torch.equal(match, torch.arange(len(ds)))  # shuffled


def test_a_seed_fixes_order_and_augmentations_and_each_pass_draws_new_ones():
    ds = _sample(200)
    a, b, c = (_epoch(data.DeviceLoader(ds, 50, seed=s)) for s in (1, 1, 2))
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0][0], c[0][0])
    loader = data.DeviceLoader(ds, 50, seed=1)
    first, second = _epoch(loader), _epoch(loader)
    assert not torch.equal(first[0][0], second[0][0])


def test_a_resumed_run_repeats_epoch_k_after_reseeding():
    """fit's protocol: seed_epoch(seed, epoch, train_loader) before each epoch. A fresh loader (a resumed run)
    reseeded for epoch 3 gives the batches the loader that ran epochs 0..2 gives in its epoch 3."""
    ds = _sample(200)
    ran = data.DeviceLoader(ds, 50, seed=7)
    for epoch in range(3):
        seed_epoch(0, epoch, ran)
        _epoch(ran)
    seed_epoch(0, 3, ran)
    expected = _epoch(ran)
    fresh = data.DeviceLoader(ds, 50, seed=123)  # the seed it was made with does not matter after seed_epoch
    torch.manual_seed(99)  # nor does the global generator
    seed_epoch(0, 3, fresh)
    got = _epoch(fresh)
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(expected, got, strict=True))
    seed_epoch(0, 2, fresh)
    assert not torch.equal(_epoch(fresh)[0][0], expected[0][0])


def test_the_order_and_augmentations_are_drawn_when_the_pass_begins():
    ds = _sample(200)
    loader = data.DeviceLoader(ds, 50, seed=0)
    seed_epoch(0, 1, loader)
    batches = iter(loader)
    loader.generator.manual_seed(12345)  # reseeding during a pass changes the next pass, not this one
    seed_epoch(0, 1, (other := data.DeviceLoader(ds, 50)))
    assert all(torch.equal(x[0], y[0]) for x, y in zip(batches, _epoch(other), strict=True))


def test_torch_lr_finder_takes_it_as_a_data_loader():
    from torch_lr_finder import TrainDataLoaderIter

    batches = TrainDataLoaderIter(data.DeviceLoader(_sample(100), 40))
    shapes = [next(batches)[0].shape for _ in range(5)]  # cycles past the end of a pass
    assert shapes == [(40, 3, 32, 32)] * 5


def test_refusals_are_one_line_and_name_the_parameter():
    ds = _sample(100)
    with pytest.raises(UserError, match="batch_size"):
        data.DeviceLoader(ds, 0)
    with pytest.raises(UserError, match="uint8 array"):
        data.DeviceLoader(torch.utils.data.TensorDataset(torch.zeros(4, 3, 32, 32)), 2)
    with pytest.raises(UserError, match="empty"):
        data.DeviceLoader(data.ArrayDataset(np.zeros((0, 32, 32, 3), np.uint8), []), 2)
    with pytest.raises(UserError, match="16x16"):
        data.DeviceLoader(data.ArrayDataset(np.zeros((4, 16, 16, 3), np.uint8), [0] * 4), 2)
    with pytest.raises(UserError, match="batch_size") as info:
        data.DeviceLoader(ds, 10).shard(torch.utils.data.SequentialSampler(ds), 0, drop_last=True)
    assert info.value.param == "batch_size" and "\n" not in str(info.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_a_gpu_the_batches_are_the_cpus():
    """The random parameters come from the CPU generator, so a seed gives the same batches on either device (a
    warped pixel may round the other way: one level)."""
    ds = _sample(256)
    on_cpu, on_gpu = _epoch(data.DeviceLoader(ds, 64, seed=3)), _epoch(data.DeviceLoader(ds, 64, device="cuda", seed=3))
    for (a, la), (b, lb) in zip(on_cpu, on_gpu, strict=True):
        assert b.device.type == "cuda" and torch.equal(la, lb.cpu())
        assert (a - b.cpu()).abs().max() < 0.02  # one level is 1 / (255 * std) = 0.016


@pytest.mark.parametrize("preset", ["default", "page"])
def test_every_tensor_of_a_batch_stays_on_the_loaders_device(preset):
    # PyTorch's meta device stands in for a GPU: an op mixing it with a CPU tensor raises, so a missing device move
    # (a mean, an index, a fill, a grid made on the CPU) fails here as it would on CUDA
    from eva_utils.data import BatchTransform, DeviceLoader, load_sample
    from eva_utils.data.presets import AUGMENTATIONS

    loader = DeviceLoader(load_sample(True), 64, BatchTransform(**AUGMENTATIONS[preset]), device="meta", seed=0)
    images, labels = next(iter(loader))
    assert images.device.type == labels.device.type == "meta"
    assert images.shape == (64, 3, 32, 32) and images.dtype == torch.float32 and labels.dtype == torch.int64


def test_under_torchrun_each_process_takes_its_distributed_samplers_share_augmented_from_its_own_stream():
    """What ``fit`` makes of the loader in each of 2 processes (``distributed.shard_train_loader``), without a process
    group: the indices of torch's DistributedSampler, half the global batch, every image once per epoch over both."""
    from torch.utils.data import DistributedSampler

    from eva_utils.training.distributed import Group, shard_train_loader

    ds = _sample(200)
    ds = data.ArrayDataset(ds.images, np.arange(200), classes=[str(i) for i in range(200)])  # labels = positions
    loader = data.DeviceLoader(ds, 40, seed=3)
    shares = [shard_train_loader(loader, Group(rank, 2, rank, torch.device("cpu"), "gloo"), seed=3) for rank in (0, 1)]
    for epoch in (0, 1):
        batches = []
        for rank, share in enumerate(shares):
            seed_epoch(3, epoch, share, rank)
            batches.append(_epoch(share))
            expected = DistributedSampler(ds, 2, rank, shuffle=True, seed=3, drop_last=True)
            expected.set_epoch(epoch)
            assert torch.cat([labels for _, labels in batches[rank]]).tolist() == list(expected)[:len(share) * 20]
            assert len(share) == 5 and all(len(labels) == 20 for _, labels in batches[rank])  # 200 / 2 / (40 / 2)
        seen = torch.cat([labels for part in batches for _, labels in part])
        assert sorted(seen.tolist()) == list(range(200))  # each image once over both processes
        assert not torch.equal(batches[0][0][0], batches[1][0][0])
    assert all(share.images.data_ptr() == loader.images.data_ptr() for share in shares)  # one copy on the device
    assert isinstance(loader.sampler, torch.utils.data.RandomSampler) and loader.batch_size == 40  # the loader as it was


def test_under_torchrun_evaluation_shards_cover_the_test_set_once_in_order():
    from eva_utils.training.distributed import Group, shard_eval_loader

    ds = _sample(101)
    loader = data.DeviceLoader(ds, 16, BatchTransform(**NO_AUGMENTATION), shuffle=False, drop_last=False)
    whole = torch.cat([images for images, _ in _epoch(loader)])
    shares = [shard_eval_loader(loader, Group(rank, 2, rank, torch.device("cpu"), "gloo")) for rank in (0, 1)]
    parts = [torch.cat([images for images, _ in _epoch(share)]) for share in shares]
    assert [len(p) for p in parts] == [51, 50]
    assert torch.equal(parts[0], whole[0::2]) and torch.equal(parts[1], whole[1::2])  # every image in one process
