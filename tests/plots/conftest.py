import pytest

from eva_utils import data
from eva_utils.data import presets


@pytest.fixture(scope="module")
def test_set():
    """The bundled test images, normalised as for evaluation."""
    return data.load_sample(train=False, transform=presets.test_transforms())
