import numpy as np
import pytest
import torch

from eva_utils import data
from eva_utils.core.errors import UserError
from eva_utils.data import presets as transforms


def _first_batch(seed, workers):
    ds = data.load_sample(train=True, transform=transforms.train_transforms())
    loader = data.make_loader(ds, batch_size=16, shuffle=True, num_workers=workers, seed=seed)
    return next(iter(loader))


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_is_reproducible_from_its_seed(workers):
    a, b, c = _first_batch(1, workers), _first_batch(1, workers), _first_batch(2, workers)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_second_pass_draws_new_augmentations():
    ds = data.load_sample(train=True, transform=transforms.train_transforms(hflip=1.0, affine=1.0, cutout=1.0))
    loader = data.make_loader(ds, batch_size=8, shuffle=False, num_workers=0, seed=0)
    first, second = next(iter(loader))[0], next(iter(loader))[0]
    assert not torch.equal(first, second)


def test_loader_defaults_pin_memory_only_on_cuda():
    ds = data.load_sample(train=False)
    assert data.make_loader(ds, 8, device="cpu").pin_memory is False
    assert data.make_loader(ds, 8, device="cuda").pin_memory is True
    assert data.make_loader(ds, 8).num_workers == data.default_num_workers()


def test_bad_loader_arguments():
    ds = data.load_sample(train=False)
    with pytest.raises(UserError, match="batch_size"):
        data.make_loader(ds, batch_size=0)
    with pytest.raises(UserError, match="empty"):
        data.make_loader(data.ArrayDataset(np.zeros((0, 32, 32, 3), np.uint8), []), batch_size=4)
