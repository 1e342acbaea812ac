# amaranth: UnusedElaboratable=no
"""GroupWindow (the kernels of a group of channels per beat) against the element order,
exactly: kernels 1/3/5, strides 1/2, paddings 0–2, groups of 2 to all channels, pixels in
blocks, several images, both streams stalled; its rate is a group's kernel row a cycle."""

import numpy as np
import pytest

from flexor_hw.gateware.window import GroupWindow
from flexor_hw.simulate import run_stream, unpack_beats

from .test_row_window import reference_windows

CASES = [(4, 6, 7, 3, 1, 1, 2, 1), (4, 8, 8, 5, 1, 2, 4, 1), (6, 7, 5, 3, 2, 1, 3, 1),
         (2, 5, 6, 1, 2, 0, 2, 1), (4, 9, 9, 5, 2, 0, 2, 1), (6, 6, 3, 3, 1, 0, 2, 1),
         (4, 6, 6, 3, 1, 1, 2, 2),      # output pixels in 2 × 2 blocks (a fused pool)
         (8, 10, 10, 5, 1, 2, 4, 2)]    # LeNet-5's conv2 in small


@pytest.mark.parametrize("c, h, w, k, s, p, g, b", CASES,
                         ids=[f"c{c}h{h}w{w}k{k}s{s}p{p}g{g}b{b}" for c, h, w, k, s, p, g, b
                              in CASES])
def test_group_window_matches_the_element_order(c, h, w, k, s, p, g, b):
    rng = np.random.default_rng(c * h + w + g)
    images = rng.integers(-100, 100, (3, c, h, w))
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    want = np.concatenate([
        reference_windows(x, k, s, p).reshape(oh // b, b, ow // b, b, c * k * k)
        .transpose(0, 2, 1, 3, 4).reshape(-1) for x in images])
    beats = images.transpose(0, 2, 3, 1).reshape(-1).tolist()
    simd = g * k * k
    dut = GroupWindow(8, c, h, w, k, group=g, stride=s, padding=p, block=b)
    assert dut.simd == simd
    run = run_stream(dut, beats, len(want) // simd, in_stall=0.3, out_stall=0.3, seed=k + g)
    assert np.array_equal(unpack_beats(run.outputs, simd, 8, True), want)
    run = run_stream(GroupWindow(8, c, h, w, k, group=g, stride=s, padding=p, block=b),
                     beats, len(want) // simd)
    assert np.array_equal(unpack_beats(run.outputs, simd, 8, True), want)
    per = dut.beats_per_image
    ends = [run.out_cycles[(i + 1) * per - 1] for i in range(3)]
    # a group's kernel row per cycle and a cycle between images, or an input beat per
    # cycle, if more
    assert set(np.diff(ends).tolist()) == {max(per * k + 1, c * h * w)}


def test_group_window_refuses_a_group_that_does_not_divide_the_channels():
    with pytest.raises(ValueError, match="Group 3 must divide the 4 channels"):
        GroupWindow(8, 4, 6, 6, 3, group=3)
    with pytest.raises(ValueError, match="Group must be at least 2"):
        GroupWindow(8, 4, 6, 6, 3, group=1)
