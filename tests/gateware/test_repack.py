# amaranth: UnusedElaboratable=no
"""Repack (stream width conversion) in Amaranth's simulator: every element in order, padding
zero, under stalls; unstalled, one beat per cycle on the busier side."""

import re

import numpy as np
import pytest

from flexor_hw.gateware.repack import Repack
from flexor_hw.simulate import pack_beats, reset_while_stalled, run_stream, unpack_beats

CASES = [  # (length, n_in, n_out, signed)
    (7, 1, 4, False), (8, 1, 4, True), (10, 2, 6, False), (5, 5, 5, True), (13, 4, 1, True),
    (12, 6, 3, False), (11, 6, 2, False), (3, 1, 8, True), (9, 9, 3, True),
    # output words of several 64-bit pieces, each under its own enable
    (45, 5, 15, True), (26, 2, 12, False), (40, 1, 40, False),
]


@pytest.mark.parametrize("pieces", [True, False])
@pytest.mark.parametrize("length, n_in, n_out, signed", CASES,
                         ids=[f"L{c[0]}_{c[1]}to{c[2]}" for c in CASES])
def test_repack_keeps_every_element_in_order(length, n_in, n_out, signed, pieces):
    w = 6
    rng = np.random.default_rng(length * n_in + n_out)
    lo, hi = (-32, 31) if signed else (0, 63)
    x = rng.integers(lo, hi + 1, (4, length))
    dut = Repack(w, length, n_in, n_out, pieces=pieces)     # a word whole under one enable
    beats = pack_beats(x, n_in, w)
    run = run_stream(dut, beats, 4 * dut.beats_out, in_stall=0.3, out_stall=0.3, seed=length)
    got = unpack_beats(run.outputs, n_out, w, signed).reshape(4, -1)
    assert np.array_equal(got[:, :length], x)
    assert not got[:, length:].any()                    # padding is zero

    run = run_stream(Repack(w, length, n_in, n_out), beats, 4 * dut.beats_out)
    ends = [run.out_cycles[(k + 1) * dut.beats_out - 1] for k in range(4)]
    assert max(np.diff(ends)) <= dut.cycles_per_vector + 1


@pytest.mark.parametrize("args, msg", [
    ((6, 0, 1, 2), r"^Length must be a positive integer, not 0$"),
    ((6, 4, 3, 2), r"^One width must divide the other, not 3 and 2$"),
    ((6, 4, 1.0, 2), r"^Input width must be a positive integer, not 1\.0$"),
])
def test_repack_parameters_are_checked(args, msg):
    with pytest.raises((TypeError, ValueError), match=msg):
        Repack(*args)


@pytest.mark.parametrize("length, n_in, n_out", [(10, 4, 8), (13, 4, 1), (7, 3, 9)])
def test_input_past_the_vectors_end_is_ignored(length, n_in, n_out):
    w = 6
    rng = np.random.default_rng(length)
    x = rng.integers(0, 64, (3, length))
    dut = Repack(w, length, n_in, n_out)
    beats = pack_beats(x, n_in, w)
    tail = length - (dut.beats_in - 1) * n_in
    garbage = ((1 << (n_in * w)) - 1) ^ ((1 << (tail * w)) - 1)
    beats = [b | garbage if (k + 1) % dut.beats_in == 0 else b for k, b in enumerate(beats)]
    run = run_stream(dut, beats, 3 * dut.beats_out, in_stall=0.2, out_stall=0.2, seed=1)
    got = unpack_beats(run.outputs, n_out, w, False).reshape(3, -1)
    assert np.array_equal(got[:, :length], x)
    assert not got[:, length:].any()


def test_a_widening_repack_has_a_registered_ready():
    """``o.ready`` does not reach ``i.ready``: it is a flip-flop."""
    from amaranth.back import verilog
    v = verilog.convert(Repack(8, 10, 2, 6), name="rp")
    top = v[v.index("module rp("):]
    assert re.search(r"^\s*reg i__ready = 1'h1;", top, re.MULTILINE)


@pytest.mark.parametrize("n_out", [8, 30])
def test_a_reset_mid_vector_starts_the_next_vector_afresh(n_out):
    """A reset while a vector is half collected and a word waits behind a stalled output:
    afterwards every vector comes out whole (one piece, and five under their own enables)."""
    w, length, n_in = 6, 60, 2
    rng = np.random.default_rng(n_out)
    dut = Repack(w, length, n_in, n_out)
    junk = pack_beats(rng.integers(0, 64, (2, length)), n_in, w)

    chunks = n_out // n_in
    # a word waiting, another half collected
    before = reset_while_stalled(dut, junk[:chunks + chunks // 2], settle=3)
    x = rng.integers(0, 64, (3, length))
    run = run_stream(dut, pack_beats(x, n_in, w), 3 * dut.beats_out, in_stall=0.3,
                     out_stall=0.3, seed=3, before=before)
    got = unpack_beats(run.outputs, n_out, w, False).reshape(3, -1)
    assert np.array_equal(got[:, :length], x)


def test_an_emitted_wide_repack_enables_each_piece_from_copies():
    from amaranth.back import verilog

    from flexor_hw.gateware.repack import PIECE_BITS
    v = verilog.convert(Repack(8, 40, 5, 20, emit=True), name="rp")       # 160 bits
    pieces = -(-160 // PIECE_BITS)
    assert pieces > 1 and f"full_{pieces}_copy" not in v
    for k in range(pieces):
        for reg in ("full", "valid"):
            assert re.search(rf"flexor_copy #\([^;]*\) {reg}_{k}_copy \(", v), (reg, k)
    # a word of one piece (32 bits) under one enable
    assert "flexor_copy" not in verilog.convert(Repack(8, 40, 4, 4, emit=True), name="rp")
