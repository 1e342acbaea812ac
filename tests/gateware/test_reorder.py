# amaranth: UnusedElaboratable=no
"""Flatten: (y, x, c) → (c, y, x), several images back to back, random stalls."""

import numpy as np
import pytest

from flexor_hw.gateware.reorder import Flatten
from flexor_hw.simulate import run_stream


@pytest.mark.parametrize("c, h, w, stall", [(3, 4, 5, 0.3), (1, 3, 3, 0.5), (4, 2, 1, 0.0),
                                            (2, 7, 7, 0.2)])
def test_flatten_gives_pytorch_order(c, h, w, stall):
    images = np.random.default_rng(c * h).integers(0, 256, (4, c, h, w))
    dut = Flatten(8, c, h, w)
    run = run_stream(dut, images.transpose(0, 2, 3, 1).reshape(-1).tolist(), images.size,
                     in_stall=stall, out_stall=stall, seed=w)
    assert run.outputs == images.reshape(-1).tolist()


def test_streams_at_one_beat_per_cycle():
    images = np.random.default_rng(0).integers(0, 256, (4, 2, 3, 3))
    run = run_stream(Flatten(8, 2, 3, 3), images.transpose(0, 2, 3, 1).reshape(-1).tolist(),
                     images.size)
    # after the first image fills, writing and reading overlap: about one image of latency
    assert run.out_cycles[-1] - run.in_cycles[0] <= images.size + 18 + 4
