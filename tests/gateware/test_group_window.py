# amaranth: UnusedElaboratable=no
"""GroupWindow (the kernels of a group of channels per beat) against the element order,
exactly: kernels 1/3/5, strides 1/2, paddings 0–2, groups of 2 to all channels, pixels in
blocks, input beats of 1 to 3 elements, several images, both streams stalled; its rate is a
group's kernel row a cycle."""

import numpy as np
import pytest

from flexor_hw.gateware.window import GroupWindow
from flexor_hw.simulate import run_stream, unpack_beats

from .test_row_window import reference_windows

CASES = [(4, 6, 7, 3, 1, 1, 2, 1, 1), (4, 8, 8, 5, 1, 2, 4, 1, 1), (6, 7, 5, 3, 2, 1, 3, 1, 1),
         (2, 5, 6, 1, 2, 0, 2, 1, 1), (4, 9, 9, 5, 2, 0, 2, 1, 1), (6, 6, 3, 3, 1, 0, 2, 1, 1),
         (4, 6, 6, 3, 1, 1, 2, 2, 1),       # output pixels in 2 × 2 blocks (a fused pool)
         (8, 10, 10, 5, 1, 2, 4, 2, 1),     # LeNet-5's conv2 in small
         (4, 6, 6, 3, 1, 1, 2, 2, 2),       # two elements an input beat (a pool's)
         (8, 10, 10, 5, 1, 2, 4, 2, 2), (6, 7, 5, 3, 2, 1, 6, 1, 3)]


@pytest.mark.parametrize("c, h, w, k, s, p, g, b, n", CASES,
                         ids=[f"c{c}h{h}w{w}k{k}s{s}p{p}g{g}b{b}n{n}"
                              for c, h, w, k, s, p, g, b, n in CASES])
def test_group_window_matches_the_element_order(c, h, w, k, s, p, g, b, n):
    rng = np.random.default_rng(c * h + w + g)
    images = rng.integers(-100, 100, (3, c, h, w))
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    want = np.concatenate([
        reference_windows(x, k, s, p).reshape(oh // b, b, ow // b, b, c * k * k)
        .transpose(0, 2, 1, 3, 4).reshape(-1) for x in images])
    elements = images.transpose(0, 2, 3, 1).reshape(-1)
    beats = [sum((int(v) & 0xFF) << (8 * j) for j, v in enumerate(elements[i:i + n]))
             for i in range(0, len(elements), n)]
    simd = g * k * k
    dut = GroupWindow(8, c, h, w, k, group=g, stride=s, padding=p, block=b, in_beat=n)
    assert dut.simd == simd
    run = run_stream(dut, beats, len(want) // simd, in_stall=0.3, out_stall=0.3, seed=k + g)
    assert np.array_equal(unpack_beats(run.outputs, simd, 8, True), want)
    run = run_stream(GroupWindow(8, c, h, w, k, group=g, stride=s, padding=p, block=b,
                                 in_beat=n), beats, len(want) // simd)
    assert np.array_equal(unpack_beats(run.outputs, simd, 8, True), want)
    per = dut.beats_per_image
    ends = [run.out_cycles[(i + 1) * per - 1] for i in range(3)]
    # a group's kernel row per cycle and a cycle between images, or an input beat per
    # cycle, if more
    assert set(np.diff(ends).tolist()) == {max(per * k + 1, c * h * w // n)}


def test_group_window_refuses_a_group_that_does_not_divide_the_channels():
    with pytest.raises(ValueError, match="Group 3 must divide the 4 channels"):
        GroupWindow(8, 4, 6, 6, 3, group=3)
    with pytest.raises(ValueError, match="Group must be at least 2"):
        GroupWindow(8, 4, 6, 6, 3, group=1)
    with pytest.raises(ValueError, match="Input beat 3 must divide the group of 4 channels"):
        GroupWindow(8, 4, 6, 6, 3, group=4, in_beat=3)
