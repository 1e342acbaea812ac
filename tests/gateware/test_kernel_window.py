# amaranth: UnusedElaboratable=no
"""KernelWindow (a channel's whole kernel per beat) against SlidingWindow's element order,
exactly: kernels 1–5 (square and not), strides 1/2, paddings 0–2, non-square maps, maps of
fewer rows than the line buffer, several images, both streams stalled; its rate is a kernel
a cycle."""

import numpy as np
import pytest

from flexor_hw.gateware.window import KernelWindow, window_rows
from flexor_hw.simulate import run_stream, unpack_beats


def reference_windows(x, k, s, p):
    """``x`` ``[C, H, W]`` → every output pixel's window in ``(c, ky, kx)`` order."""
    (kh, kw), (sh, sw), (ph, pw) = k, s, p
    c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    return np.concatenate([padded[:, oy * sh:oy * sh + kh, ox * sw:ox * sw + kw].reshape(-1)
                           for oy in range(oh) for ox in range(ow)])


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


CASES = [(2, 6, 7, 3, 1, 1), (1, 8, 8, 5, 1, 2), (3, 7, 5, 3, 2, 1), (2, 9, 9, 5, 2, 0),
         (1, 6, 11, 3, 1, 0), (2, 5, 6, (3, 2), (1, 2), (1, 0)), (1, 7, 6, (2, 3), 1, (0, 1)),
         (2, 8, 6, (5, 1), 1, (2, 0)),
         (1, 4, 5, 3, 1, 1),       # fewer map rows than the line buffer's (6)
         (1, 3, 3, 3, 1, 0),       # one window an image
         (2, 4, 1, (3, 1), 1, (1, 0))]   # rows of one element


@pytest.mark.parametrize("c, h, w, k, s, p", CASES,
                         ids=[f"c{c}h{h}w{w}k{k}s{s}p{p}".replace(" ", "") for c, h, w, k, s, p
                              in CASES])
def test_kernel_window_matches_the_element_order(c, h, w, k, s, p):
    k, s, p = pair(k), pair(s), pair(p)
    rng = np.random.default_rng(c * h + w)
    images = rng.integers(-100, 100, (3, c, h, w))
    want = np.concatenate([reference_windows(x, k, s, p) for x in images])
    beats = images.transpose(0, 2, 3, 1).reshape(-1).tolist()
    n = k[0] * k[1]
    dut = KernelWindow(8, c, h, w, k, stride=s, padding=p)
    assert dut.buffer_rows % k[0] == 0
    run = run_stream(dut, beats, len(want) // n, in_stall=0.3, out_stall=0.3, seed=n + s[0])
    got = unpack_beats(run.outputs, n, 8, True)
    assert np.array_equal(got, want)
    run = run_stream(KernelWindow(8, c, h, w, k, stride=s, padding=p), beats, len(want) // n)
    assert np.array_equal(unpack_beats(run.outputs, n, 8, True), want)
    per = dut.beats_per_image
    ends = [run.out_cycles[(i + 1) * per - 1] for i in range(3)]
    # a kernel per cycle and a cycle between images, or an input beat per cycle, if more
    assert set(np.diff(ends).tolist()) == {max(per + 1, c * h * w)}


def test_line_buffer_rows_are_a_multiple_of_the_kernel():
    def rows(c, h, w, k, s, p):
        return window_rows("kernel", c, h, w, (k, k), (s, s), (p, p))
    assert rows(32, 14, 14, 5, 1, 2) == 15          # 2·5 + 1 = 11, rounded up
    assert rows(16, 32, 32, 3, 2, 1) == 9
    assert rows(4, 4, 4, 3, 1, 1) == 9              # the map and a kernel more, rounded up
    assert rows(1, 3, 3, 3, 1, 0) == 6
