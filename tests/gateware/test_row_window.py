# amaranth: UnusedElaboratable=no
"""RowWindow (a kernel row per beat) against SlidingWindow's element order, exactly: kernels
1/3/5, strides 1/2, paddings 0–2, non-square maps, several images, both streams stalled; its
rate is a kernel row per cycle."""

import numpy as np
import pytest

from flexor_hw.gateware.window import RowWindow
from flexor_hw.simulate import run_stream, unpack_beats


def reference_windows(x, k, s, p):
    """``x`` ``[C, H, W]`` → every output pixel's window in ``(c, ky, kx)`` order."""
    c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (p, p), (p, p)))
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    return np.concatenate([padded[:, oy * s:oy * s + k, ox * s:ox * s + k].reshape(-1)
                           for oy in range(oh) for ox in range(ow)])


CASES = [(2, 6, 7, 3, 1, 1), (1, 8, 8, 5, 1, 2), (3, 7, 5, 3, 2, 1), (2, 5, 6, 1, 2, 0),
         (2, 9, 9, 5, 2, 0), (1, 6, 11, 3, 1, 0),
         (1, 6, 3, 3, 1, 0),       # a kernel row is a whole input row: read once complete
         (1, 4, 1, 1, 1, 0)]       # a beat a row: every step ends one


@pytest.mark.parametrize("c, h, w, k, s, p", CASES,
                         ids=[f"c{c}h{h}w{w}k{k}s{s}p{p}" for c, h, w, k, s, p in CASES])
def test_row_window_matches_the_element_order(c, h, w, k, s, p):
    rng = np.random.default_rng(c * h + w)
    images = rng.integers(-100, 100, (3, c, h, w))
    want = np.concatenate([reference_windows(x, k, s, p) for x in images])
    beats = images.transpose(0, 2, 3, 1).reshape(-1).tolist()
    dut = RowWindow(8, c, h, w, k, stride=s, padding=p)
    run = run_stream(dut, beats, len(want) // k, in_stall=0.3, out_stall=0.3, seed=k + s)
    got = unpack_beats(run.outputs, k, 8, True)
    assert np.array_equal(got, want)
    run = run_stream(RowWindow(8, c, h, w, k, stride=s, padding=p), beats, len(want) // k)
    per = dut.beats_per_image
    ends = [run.out_cycles[(i + 1) * per - 1] for i in range(3)]
    # a kernel row per cycle and a cycle between images, or an input beat per cycle, if more
    assert set(np.diff(ends).tolist()) == {max(per + 1, c * h * w)}


BLOCKED = [(2, 6, 6, 3, 1, 1, 2), (1, 8, 8, 5, 1, 2, 2), (3, 7, 6, 3, 1, 0, (1, 2)),
           (2, 9, 8, 3, 2, 1, (5, 2)), (2, 8, 8, 3, 1, 1, (2, 1)), (1, 6, 4, 1, 1, 0, 2),
           (2, 10, 10, 5, 1, 2, 2)]     # LeNet-5's conv2 in small: blocks across groups


@pytest.mark.parametrize("c, h, w, k, s, p, b", BLOCKED,
                         ids=[f"c{c}h{h}w{w}k{k}s{s}p{p}b{b}" for c, h, w, k, s, p, b in BLOCKED])
def test_row_window_in_blocks_of_pixels(c, h, w, k, s, p, b):
    """With ``block``, a kernel row per beat, the output pixels in blocks (blocks in raster
    order, each block's pixels too): the column banks' rotation comes back to the block's
    first column on its next row. Exact under stalls; unstalled, images as many cycles
    apart as in raster order."""
    by, bx = (b, b) if isinstance(b, int) else b
    rng = np.random.default_rng(c * h + w)
    images = rng.integers(-100, 100, (3, c, h, w))
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    per_pixel = c * k * k
    want = np.concatenate([
        reference_windows(x, k, s, p).reshape(oh // by, by, ow // bx, bx, per_pixel)
        .transpose(0, 2, 1, 3, 4).reshape(-1) for x in images])
    beats = images.transpose(0, 2, 3, 1).reshape(-1).tolist()
    dut = RowWindow(8, c, h, w, k, stride=s, padding=p, block=b)
    run = run_stream(dut, beats, len(want) // k, in_stall=0.3, out_stall=0.3, seed=k + s)
    assert np.array_equal(unpack_beats(run.outputs, k, 8, True), want)
    periods = []
    for block in (b, 1):
        run = run_stream(RowWindow(8, c, h, w, k, stride=s, padding=p, block=block), beats,
                         len(want) // k)
        if block == b:
            assert np.array_equal(unpack_beats(run.outputs, k, 8, True), want)
        per = dut.beats_per_image
        periods.append(set(np.diff([run.out_cycles[(i + 1) * per - 1] for i in range(3)])))
    assert periods[0] == periods[1] and len(periods[0]) == 1      # as fast as raster order
