"""Shared by the training tests: loaders over the bundled sample, a spy on a model's first convolution."""

import numpy as np
import pytest
import torch

from eva_utils import data
from eva_utils.data import presets as transforms


def _loaders(batch_size=32, n_train=None, seed=0, augment=True):
    train_set = data.load_sample(True, transforms.train_transforms() if augment else transforms.test_transforms())
    test_set = data.load_sample(False, transforms.test_transforms())
    if n_train:
        keep = np.random.default_rng(0).permutation(len(train_set))[:n_train]
        train_set = data.ArrayDataset(train_set.images[keep], train_set.labels[keep], train_set.transform)
        test_set = data.ArrayDataset(test_set.images[:200], test_set.labels[:200], test_set.transform)
    return (data.make_loader(train_set, batch_size, shuffle=True, num_workers=0, seed=seed),
            data.make_loader(test_set, 100, num_workers=0))


class _Spy:
    """Records the dtype and memory format the first conv of a model sees and produces."""

    def __init__(self, model):
        self.inputs, self.outputs = [], []
        model.conv1.register_forward_hook(self.hook)

    def hook(self, module, args, output):
        self.inputs.append((args[0].dtype, args[0].is_contiguous(memory_format=torch.channels_last)))
        self.outputs.append(output.dtype)


@pytest.fixture
def sample_loaders():
    """``sample_loaders(batch_size=32, n_train=None, seed=0, augment=True)``: (train_loader, test_loader) of the sample."""
    return _loaders


@pytest.fixture
def conv1_spy():
    """``conv1_spy(model)``: records what ``model.conv1`` sees (dtype, channels_last) and produces (dtype)."""
    return _Spy
