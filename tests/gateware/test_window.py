# amaranth: UnusedElaboratable=no
"""SlidingWindow in Amaranth's simulator against the golden model's im2col, with random stalls
on both streams, several images back to back."""

import re

import numpy as np
import pytest

from flexor_hw.gateware import SlidingWindow
from flexor_hw.ops.conv2d import im2col
from flexor_hw.simulate import reset_while_stalled, run_stream


def ref_windows(images, kernel, stride, padding, block=(1, 1)):
    """What the unit must emit: per image, per output pixel, the window in (c, ky, kx);
    the pixels in blocks of ``block`` (blocks in raster order, a block's pixels too)."""
    cols = im2col(images, kernel, stride, padding, np.int64)
    n, (by, bx) = len(images), block
    oh = (images.shape[2] + 2 * padding[0] - kernel[0]) // stride[0] + 1
    ow = (images.shape[3] + 2 * padding[1] - kernel[1]) // stride[1] + 1
    cols = cols.reshape(n, oh // by, by, ow // bx, bx, -1).transpose(0, 1, 3, 2, 4, 5)
    return cols.reshape(-1)


def rtl_windows(images, kernel, stride, padding, *, stall=0.3, seed=0, block=1):
    n, c, h, w = images.shape
    dut = SlidingWindow(8, c, h, w, kernel, stride=stride, padding=padding, block=block)
    beats = images.transpose(0, 2, 3, 1).reshape(-1)          # (y, x, c) order per image
    run = run_stream(dut, beats.tolist(), n * dut.beats_per_image, in_stall=stall,
                     out_stall=stall, seed=seed)
    return np.array(run.outputs), run, dut


CASES = [  # (c, h, w, kernel, stride, padding)
    (1, 5, 5, 3, 1, 1), (2, 7, 6, 3, 2, 1), (3, 6, 7, 5, 1, 2), (2, 8, 5, 3, 2, 0),
    (1, 4, 9, 1, 1, 0), (2, 5, 4, 1, 2, 0), (1, 9, 8, 5, 2, 2), (3, 4, 4, 3, 1, 0),
    (2, 6, 6, (3, 1), (1, 2), (1, 0)), (1, 3, 3, 3, 1, 2),
    # rows of one element: each is read as soon as it is complete (the line buffer's write,
    # a cycle after the beat, is there just in time)
    (1, 6, 1, (3, 1), 1, (1, 0)),
    # a row of one beat and an output row of one element: every step ends a row
    (1, 4, 1, 1, 1, 0),
]


@pytest.mark.parametrize("c, h, w, k, s, p", CASES,
                         ids=[f"c{c}h{h}w{w}k{k}s{s}p{p}" for c, h, w, k, s, p in CASES])
def test_windows_match_im2col(c, h, w, k, s, p):
    rng = np.random.default_rng(c * 100 + h * 10 + w)
    images = rng.integers(1, 256, (3, c, h, w))               # three images back to back
    want = ref_windows(images, *((v, v) if isinstance(v, int) else v for v in (k, s, p)))
    for seed in (h, h + 1):
        got, _, _ = rtl_windows(images, k, s, p, seed=seed)
        assert got.tolist() == want.tolist()


BLOCKED = [  # (c, h, w, kernel, stride, padding, block)
    (2, 6, 6, 3, 1, 1, 2), (1, 8, 8, 5, 1, 2, 2),         # LeNet-5's conv1 in small
    (3, 7, 6, 3, 1, 0, (1, 2)), (2, 9, 8, 3, 2, 1, (5, 2)), (1, 6, 4, 1, 1, 0, 2),
    (2, 8, 8, 3, 1, 1, (2, 1)), (2, 7, 7, 3, 2, 1, 2),
    (1, 4, 1, (3, 1), 1, (1, 0), (2, 1)),                 # a beat a row
]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@pytest.mark.parametrize("c, h, w, k, s, p, b", BLOCKED,
                         ids=[f"c{c}h{h}w{w}k{k}s{s}p{p}b{b}" for c, h, w, k, s, p, b in BLOCKED])
def test_windows_in_blocks_of_pixels(c, h, w, k, s, p, b):
    """With ``block``, the same windows with the output pixels in blocks (a max pool's
    windows, for :class:`~flexor_hw.gateware.pool.BlockMaxPool`), exactly, stalled and
    not; unstalled, images as many cycles apart as in raster order."""
    rng = np.random.default_rng(c * 100 + h * 10 + w)
    images = rng.integers(1, 256, (3, c, h, w))
    want = ref_windows(images, _pair(k), _pair(s), _pair(p), _pair(b))
    periods = []
    for block in (b, 1):
        for stall in (0.3, 0.0) if block == b else (0.0,):
            got, run, dut = rtl_windows(images, k, s, p, stall=stall, seed=h, block=block)
            if block == b:
                assert got.tolist() == want.tolist()
        per = dut.beats_per_image
        periods.append(set(np.diff([run.out_cycles[(i + 1) * per - 1] for i in range(3)])))
    assert periods[0] == periods[1] and len(periods[0]) == 1


@pytest.mark.parametrize("cls, block, msg", [
    ("SlidingWindow", (2, 3), r"^Block \[2, 3\] must divide the 6×4 output pixels$"),
    ("RowWindow", 0, r"^Block must be at least 1, not 0$"),
    ("KernelWindow", 2, r"^A kernel window emits its output pixels in raster order only, not "
                        r"in blocks$")])
def test_blocks_are_checked(cls, block, msg):
    from flexor_hw.gateware import window
    with pytest.raises(ValueError, match=msg):
        getattr(window, cls)(8, 1, 6, 4, 3, padding=1, block=block)


@pytest.mark.parametrize("stall", [0.0, 0.7])
def test_stalls_never_change_the_windows(stall):
    images = np.random.default_rng(5).integers(0, 256, (2, 2, 7, 7))
    got, _, _ = rtl_windows(images, 3, 2, 1, stall=stall, seed=3)
    assert got.tolist() == ref_windows(images, (3, 3), (2, 2), (1, 1)).tolist()


def test_one_beat_per_cycle_when_unstalled():
    images = np.random.default_rng(1).integers(0, 256, (3, 4, 8, 8))
    got, run, dut = rtl_windows(images, 3, 1, 1, stall=0.0)
    # The writer runs into the next image while the reader finishes one, so after the first
    # image's rows arrive the reader never waits for input: one window beat per cycle, but
    # for two cycles that hand each image over.
    gaps = np.diff(run.out_cycles)
    first_window = dut.window_beats
    assert (gaps[first_window:] <= 2).all()
    assert (gaps[first_window:] == 2).sum() == len(images) - 1
    assert dut.buffer_rows == 4


@pytest.mark.parametrize("args, error, msg", [
    ((8, 0, 4, 4, 3), ValueError, r"^Channels must be at least 1, not 0$"),
    ((8, 1, 4, 4, 3), None, None),
    ((8, 1, 2, 2, 5), ValueError, r"^Kernel \[5, 5\] with padding \[0, 0\] does not fit a "
                                  r"2×2 map$"),
    ((8, 1, 4, 4, 2.5), TypeError, r"^Kernel must be an integer, not 2\.5$"),
])
def test_parameters_are_checked(args, error, msg):
    if error is None:
        SlidingWindow(*args)
        return
    with pytest.raises(error, match=msg):
        SlidingWindow(*args)


def test_output_size_and_beats():
    dut = SlidingWindow(8, 3, 9, 7, (3, 5), stride=(2, 1), padding=(1, 2))
    assert dut.output_size == ((9 + 2 - 3) // 2 + 1, (7 + 4 - 5) // 1 + 1)
    assert dut.window_beats == 45
    assert dut.beats_per_image == 5 * 7 * 45
    assert dut.buffer_rows == 5               # kh + sh rows of line buffer


@pytest.mark.parametrize("cls", ["SlidingWindow", "RowWindow", "KernelWindow"])
def test_input_ready_is_a_register(cls):
    """The input's ``ready`` is a flip-flop's (the input register's ``~full``), and so is
    the writer's room: the producer's handshake sees registers, not the adder and compare
    behind the room, and the writer's enable is a gate of the window's own flip-flops."""
    from amaranth.back import verilog
    from flexor_hw.gateware import window
    v = verilog.convert(getattr(window, cls)(8, 2, 6, 6, 3, padding=1), name="win",
                        emit_src=False)
    top = v[v.index("module win("):]
    top = top[:top.index("endmodule")]
    assert re.search(r"^\s*\.i__ready\(i__ready\)", top, re.MULTILINE)   # from the register
    skid = v[v.index("module \\win.inp "):]
    skid = skid[:skid.index("endmodule")]
    assert re.search(r"^\s*reg full = 1'h0;", skid, re.MULTILINE)
    assert re.search(r"^\s*assign i__ready = ~ *full;", skid, re.MULTILINE)
    # the writer's enable: the input register's valid and the room, a register
    found = re.search(r"^\s*assign write = (\\o__valid\$\d+) +& (\\o__ready\$\d+) *;", top,
                      re.MULTILINE)
    assert found
    room = re.escape(found.group(2))
    assert re.search(rf"^\s*reg {room} += 1'h1;", top, re.MULTILINE)
    assert re.search(r"^\s*reg o__valid = 1'h0;", skid, re.MULTILINE)


@pytest.mark.parametrize("cls, c, h, w, k, s, p, stall, b", [
    ("SlidingWindow", 2, 7, 6, 3, 2, 1, 0.3, 1), ("SlidingWindow", 1, 9, 8, 5, 1, 2, 0.0, 1),
    ("SlidingWindow", 2, 8, 5, 3, 2, 0, 0.5, 1), ("RowWindow", 2, 6, 7, 3, 1, 1, 0.3, 1),
    ("RowWindow", 1, 8, 8, 5, 1, 2, 0.0, 1), ("RowWindow", 2, 9, 9, 5, 2, 0, 0.5, 1),
    ("KernelWindow", 2, 6, 7, 3, 1, 1, 0.3, 1), ("KernelWindow", 1, 8, 8, 5, 1, 2, 0.0, 1),
    ("KernelWindow", 2, 9, 9, 5, 2, 0, 0.5, 1), ("KernelWindow", 1, 5, 6, 3, 1, 1, 0.5, 1),
    # output pixels in blocks: the reader's row is ``by`` output rows
    ("SlidingWindow", 2, 8, 6, 3, 1, 1, 0.3, 2), ("SlidingWindow", 1, 8, 8, 5, 1, 2, 0.0, 2),
    ("RowWindow", 2, 8, 6, 3, 1, 1, 0.3, 2), ("RowWindow", 1, 9, 9, 3, 2, 1, 0.5, (5, 1))])
def test_flow_control_never_grants_what_the_state_does_not(cls, c, h, w, k, s, p, stall, b):
    """The reader's ``avail`` and the writer's room, registers read from flags a cycle
    behind the state, never grant a step the state does not allow: ``avail`` only where
    the rows of the reader's output row are complete (``min(low + kh, H)`` of its image,
    or the writer is ahead), the room only where the writer's row's slot is free; and the
    reader's copy of ``ahead`` is the writer's. Images back to back, both streams stalled
    (a take, the writer's row end and the hand-over in every combination)."""
    from flexor_hw.gateware import window
    images = np.random.default_rng(c + h).integers(0, 256, (3, c, h, w))
    dut = getattr(window, cls)(8, c, h, w, k, stride=s, padding=p, block=b)
    R, H = dut.buffer_rows, h
    k += (_pair(b)[0] - 1) * s          # the rows of the reader's row of blocks
    wrong, cycles, granted = [], [0], [0, 0]

    async def monitor(ctx):
        f = dut._flow
        async for _, _, avail, room, ahead, ahead_rows, w_row, low, r_done in \
                ctx.tick().sample(dut._reader.avail, dut._writer.can_write, *dut._ahead,
                                  f["w_row"], f["low"], f["r_done"]):
            cycles[0] += 1
            rows_ok = not r_done and (ahead or w_row >= min(low + k, H))
            if ahead:
                free = w_row < H and w_row < R - p and (r_done or w_row + H < low + R)
            else:
                free = w_row < H and (r_done or w_row < low + R)
            granted[0] += avail
            granted[1] += room
            if (avail and not rows_ok) or (room and not free) or ahead != ahead_rows:
                wrong.append(cycles[0])

    beats = images.transpose(0, 2, 3, 1).reshape(-1).tolist()
    n_out = 3 * dut.beats_per_image
    run_stream(dut, beats, n_out, in_stall=stall, out_stall=stall, seed=k, monitor=monitor)
    assert cycles[0] > n_out and wrong == [] and min(granted) > 0


@pytest.mark.parametrize("cls, c, h, w, k, s, p, b", [
    ("SlidingWindow", 2, 7, 6, 3, 2, 1, 1), ("SlidingWindow", 1, 6, 6, 3, 1, 0, 1),
    ("RowWindow", 2, 6, 7, 3, 1, 1, 1), ("RowWindow", 1, 8, 8, 5, 1, 2, 1),
    ("KernelWindow", 2, 6, 7, 3, 1, 1, 1), ("KernelWindow", 1, 8, 8, 5, 1, 2, 1),
    ("SlidingWindow", 2, 8, 6, 3, 1, 1, 2), ("RowWindow", 1, 8, 8, 5, 1, 2, 2)])
@pytest.mark.parametrize("junk_rows", [1.5, None, "full", "ahead"])
@pytest.mark.parametrize("offered", [False, True])
def test_a_one_cycle_reset_mid_image_restarts_the_window_and_its_copies(
        cls, c, h, w, k, s, p, b, junk_rows, offered):
    """A reset of one cycle while the reader holds a full output FIFO (the counters' and
    the rows-done bookkeeping's copies of ``take``, the bookkeeping's copy of the writer's
    ``write`` and the reader's of ``ahead`` follow the reset through their inputs): every
    copy equals its original in every cycle, and the images after the reset come out
    exact (``b``: output pixels in blocks). ``junk_rows``: the rows written before the
    reset (None: a kernel's height, the reader's first output row ready; "full": beats
    until the writer is out of room and the input's skid buffer holds its two; "ahead": a
    whole image, its outputs taken into the last output row, so that the writer is ahead
    of the reader); ``offered``: a beat
    offered on the input during the reset."""
    from flexor_hw.gateware import window
    rng = np.random.default_rng(c * 7 + h)
    images = rng.integers(0, 256, (3, c, h, w))
    dut = getattr(window, cls)(8, c, h, w, k, stride=s, padding=p, block=b)
    beats = images.transpose(0, 2, 3, 1).reshape(-1).tolist()
    per_image = len(beats) // 3
    kb = k + (b - 1) * s            # the rows of the reader's row (of blocks)
    rows = {None: kb, "full": dut.buffer_rows + 1, "ahead": h}.get(junk_rows, junk_rows)
    if junk_rows == 1.5:
        rows = kb - p + 0.5         # the first beat needs its window's rows; half a row more
    junk = beats[:int(rows * w * c)]
    # "ahead": the reader stops half an output row before its image's end
    # (and more than its output FIFO holds: its reads stop short of the image's end)
    taken = dut.beats_per_image - max(dut.beats_per_image // dut.output_size[0] // 2,
                                      2 * window._Reader.DEPTH) if junk_rows == "ahead" else 0
    wrong, cycles, ahead_at_reset, seen = [], [0], [], {}
    stalled = reset_while_stalled(dut, junk, settle=8, offered=offered,
                                  fill=junk_rows == "full", taken=taken)

    async def before(ctx, rst):
        seen["rst"] = rst
        await stalled(ctx, rst)

    async def monitor(ctx):
        reader, writer = dut._reader, dut._writer
        async for _, _, take, step, rows_take, write, rows_write, room, room_copy, ahead, \
                ahead_rows in ctx.tick().sample(reader.take, reader.step, reader.rows,
                                                writer.write, writer.rows, writer.can_write,
                                                writer._room, *dut._ahead):
            cycles[0] += 1
            if not (take == step == rows_take and write == rows_write and room == room_copy
                    and ahead == ahead_rows):
                wrong.append(cycles[0])
            if "rst" in seen and ctx.get(seen["rst"]) and not ahead_at_reset:
                ahead_at_reset.append(ahead)

    n_out = 2 * dut.beats_per_image
    run = run_stream(dut, beats[per_image:], n_out, in_stall=0.3, out_stall=0.3, seed=k,
                     before=before,
                     monitor=monitor)
    want = ref_windows(images[1:], (k, k), (s, s), (p, p), (b, b))
    if cls != "SlidingWindow":
        got = np.array([(v >> (8 * e)) & 255 for v in run.outputs for e in range(dut.simd)])
    else:
        got = np.array(run.outputs)
    assert cycles[0] > n_out and wrong == []
    # "full": the writer stops at the slot of the reader's first row (``-p``), past the
    # image's end where the line buffer holds more rows than the map and the padding
    ahead = junk_rows == "ahead" or (junk_rows == "full" and dut.buffer_rows - p >= h)
    assert ahead_at_reset == [int(ahead)]
    assert got.tolist() == want.tolist()
