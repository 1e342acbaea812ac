import numpy as np
import pytest

from flexor_hw.synthetic import random_package


@pytest.fixture
def small_package():
    """Odd shapes on purpose: slices straddle rows, fan-ins are not lane multiples."""
    return random_package([37, 13, 5], n_in=7, n_out=11, q=2, n_tap=2, seed=3, name="small")


def random_inputs(package, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(package.input.lo, package.input.hi + 1,
                        size=(n, *package.input_shape), dtype=np.int64)
