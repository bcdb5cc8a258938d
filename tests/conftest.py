import numpy as np
import pytest

from spikeacc.config import SpikeConfig


@pytest.fixture
def cfg():
    return SpikeConfig()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
