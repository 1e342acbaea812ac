"""The board's serial link: the digits network behind the UART link, simulated bit by bit in
Verilator, classifies images bit-exactly against the golden model through ``flexor-hw
classify --sim``; garbage on the line (a wrong magic byte, a wrong length, a bad checksum, a
truncated frame, a break, random bytes) is answered with an error frame or ignored, and the
next good frame is classified correctly. Bad input to ``board`` and ``classify`` is one line
and exit status 2, with nothing written. A bitstream for the iCEBreaker (``synth``)."""

import os
import re
import shutil
import time

import numpy as np
import pytest

from flexor_hw.board import BOARDS, board, load_board, pll_ecp5, pll_ice40
from flexor_hw.cli import main
from flexor_hw.golden import run_int
from flexor_hw.host import Link, encode_image, image_beats, request_frame
from flexor_hw.package import load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS_RTL = os.path.join(ROOT, "rtl_out", "digits")
DIGITS_PKG = os.path.join(ROOT, "examples", "digits", "digits.flexor.npz")
DIGITS_X = os.path.join(ROOT, "examples", "digits", "test_x.npy")
ONE_LINE = re.compile(r"^flexor-hw( [a-z-]+)?: error: [^\n]+\n$")


@pytest.fixture(scope="module")
def digits_board(tmp_path_factory):
    """The digits build's board directory (sources only) and the golden classes of the first
    images of its test set."""
    d = tmp_path_factory.mktemp("board") / "digits"
    board(DIGITS_RTL, "ulx3s-85f", d, bitstream=False, quiet=True)
    x = np.load(DIGITS_X)[:16]
    golden = run_int(load(DIGITS_PKG), x.astype(np.int64), 16)[-1].argmax(axis=1)
    return d, x, golden


@pytest.fixture(scope="module")
def icebreaker_build(tmp_path_factory):
    """The digits network folded to leave an iCE40 UP5K room for the link (README)."""
    from flexor_hw.build import build
    d = tmp_path_factory.mktemp("icebreaker") / "digits"
    build(DIGITS_PKG, d, target="ice40-up5k",
          budget={"luts": 3000, "ffs": 2600, "brams": 30, "dsps": 8}, argmax=True, quiet=True)
    return d


@pytest.fixture(scope="module")
def sim(digits_board):
    """The simulated board, built once (in the board directory, where ``classify --sim``
    finds it)."""
    from flexor_hw.board_sim import SimTransport
    d, _, _ = digits_board
    with SimTransport(d, work=d / "sim_build") as t:
        yield t


def test_classify_sim_is_bit_exact(digits_board, sim, tmp_path, capsys):
    d, x, golden = digits_board
    np.save(tmp_path / "x.npy", x[:10])
    np.save(tmp_path / "y.npy", golden[:10])
    status = main(["classify", "--sim", str(d), "--inputs", str(tmp_path / "x.npy"),
                   "--labels", str(tmp_path / "y.npy"), "-o", str(tmp_path / "classes.npy")])
    out = capsys.readouterr().out
    assert status == 0, out
    classes = np.load(tmp_path / "classes.npy")
    assert classes.tolist() == golden[:10].tolist()
    assert "accuracy: 100.00% (10 of 10)" in out
    assert "0 retries" in out


def _reply(link, seq=None, timeout=3.0):
    """The next reply ``(seq, status, payload)`` (skipping stale ones when ``seq`` is given),
    or None."""
    deadline = time.monotonic() + timeout
    while True:
        r = link.read_reply(deadline)
        if r is None or r == "crc" or seq is None or r[0] == seq:
            return r


def _frame(link, k, x, seq):
    return request_frame(seq, encode_image(link.spec, image_beats(link.spec, x[k:k + 1])[0]))


def test_good_frames_raw(digits_board, sim):
    d, x, golden = digits_board
    link = Link(sim, load_board(d))
    sim.reset_input_buffer()
    for k in range(3):
        sim.write(_frame(link, k, x, 100 + k))
        seq, status, payload = _reply(link)
        assert (seq, status) == (100 + k, 0)
        assert payload[0] | payload[1] << 8 == golden[k]


GARBAGE = ["wrong magic", "wrong length", "bad checksum", "truncated", "break",
           "break in a frame", "random bytes"]


def test_a_batch_reaches_the_simulation_without_idle_bits(digits_board, sim):
    """Half a frame, a pause of the host about four times the board's frame timeout (of idle
    line, as the simulation idles while it waits), then a break, in one batch: the board
    sees the break inside the frame (status 4), not a frame that timed out (status 3)."""
    import time
    d, x, _ = digits_board
    manifest = load_board(d)
    link = Link(sim, manifest, reply_timeout=3.0, retries=0)
    sim.reset_input_buffer()
    frame = _frame(link, 4, x, 11)
    pause = 4 * manifest["timeout_bits"] * manifest["sim_divisor"] / 256 / 1000  # seconds
    with sim.batch():
        sim.write(bytes(frame[:20]))
        time.sleep(pause)
        sim.send_break(200)
    r = _reply(link, 11)
    assert r is not None and r[:2] == (11, 4), r


@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_then_a_good_frame(digits_board, sim, garbage):
    """Each kind of garbage, then a good frame: the garbage is answered with the error it is,
    or ignored; the good frame after it (after a silence as long as the one the host keeps
    before a retry) is classified correctly."""
    d, x, golden = digits_board
    manifest = load_board(d)
    link = Link(sim, manifest, reply_timeout=3.0, retries=0)
    sim.reset_input_buffer()
    good = _frame(link, 3, x, 7)
    frame = bytearray(_frame(link, 4, x, 9))
    expect = None                       # (status) of the reply to the garbage; None: no reply
    if garbage == "wrong magic":
        frame[0] = 0x3C
        sim.write(bytes(frame))
    elif garbage == "wrong length":
        frame[2] += 1
        sim.write(bytes(frame))
        expect = 2
    elif garbage == "bad checksum":
        frame[-1] ^= 0x40
        sim.write(bytes(frame))
        expect = 1
    elif garbage == "truncated":
        sim.write(bytes(frame[:30]))
        sim.silence(manifest["timeout_bits"] + 50)      # the board's framer must time out
        expect = 3
    elif garbage == "break":
        sim.send_break(200)
    elif garbage == "break in a frame":
        with sim.batch():               # no idle bits between them, however loaded the host
            sim.write(bytes(frame[:20]))
            sim.send_break(200)
        expect = 4
    elif garbage == "random bytes":
        rng = np.random.default_rng(5)
        junk = rng.integers(0, 256, 300).astype(np.uint8)
        junk[::37] = 0xA5                               # magic bytes in the garbage
        sim.write(junk.tobytes())
    if expect is not None:
        r = _reply(link, 9)
        assert r is not None and r[:2] == (9, expect), r
        assert r[2] == b""
    else:
        if garbage != "random bytes":
            assert _reply(link, timeout=0.3) is None    # ignored: no answer at all
    sim.silence(2 * manifest["timeout_bits"])           # what the host does before a retry
    sim.reset_input_buffer()
    sim.write(good)
    r = _reply(link)
    assert r is not None and r[0] == 7 and r[1] == 0, r
    assert r[2][0] | r[2][1] << 8 == golden[3]


def test_never_loses_sync_for_good(digits_board, sim):
    """A truncated frame with the next good one right behind it (its bytes taken as the
    truncated frame's payload) and a burst of random bytes: the host's retries, each after a
    silence longer than the board's frame timeout, get every image classified."""
    d, x, golden = digits_board
    link = Link(sim, load_board(d), reply_timeout=3.0, retries=3)
    sim.reset_input_buffer()
    sim.write(_frame(link, 0, x, 200)[:40])
    assert link.classify(image_beats(link.spec, x[5:6])[0])[0] == golden[5]
    assert link.retried >= 1
    sim.write(np.random.default_rng(9).integers(0, 256, 500).astype(np.uint8).tobytes())
    for k in range(6, 9):
        assert link.classify(image_beats(link.spec, x[k:k + 1])[0])[0] == golden[k]
    assert link.failed == 0


def test_plls():
    ecp5 = pll_ecp5(25.0, 50.0)
    assert ecp5["fout_mhz"] == 50.0 and 400 <= ecp5["fvco_mhz"] <= 800
    ice40 = pll_ice40(12.0, 48.0)
    assert abs(ice40["fout_mhz"] - 48.0) < 0.5 and 533 <= ice40["fvco_mhz"] <= 1066
    assert pll_ice40(12.0, 10.0) is None            # below the iCE40 PLL's range


# -- bad input -------------------------------------------------------------------------------

def _snapshot(*dirs):
    out = set()
    for d in dirs:
        for root, subdirs, names in os.walk(d):
            out.update(os.path.join(root, n) for n in subdirs + names)
    return out


def refuse(argv, message, *dirs, capsys):
    before = _snapshot(*dirs)
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert status == 2, (status, err)
    assert ONE_LINE.match(err), err
    assert re.search(message, err), err
    assert out == "" and "Traceback" not in err
    assert _snapshot(*dirs) == before


def test_unknown_board(tmp_path, capsys):
    refuse(["board", DIGITS_RTL, "--board", "de0-nano", "-o", tmp_path / "out"],
           r"argument --board: invalid choice: 'de0-nano'", tmp_path, capsys=capsys)


def _oversized(tmp_path, **estimate):
    """The digits build with its manifest's estimate replaced."""
    import json
    d = tmp_path / "big"
    shutil.copytree(DIGITS_RTL, d)
    m = json.loads((d / "manifest.json").read_text())
    m["package"]["file"] = DIGITS_PKG
    m["estimate"] = {**m["estimate"], **estimate}
    (d / "manifest.json").write_text(json.dumps(m))
    return d


def test_design_that_does_not_fit(tmp_path, capsys):
    big = _oversized(tmp_path, luts=4000, ffs=23000, brams=10)
    refuse(["board", big, "--board", "ulx3s-25f", "-o", tmp_path / "out"],
           r"does not fit the ULX3S-25F \(LFE5U-25F-6BG381\): flip-flops estimated 23,210 "
           r"with the serial link, the device has 24,288 \(of which 85% usable\)$", tmp_path,
           capsys=capsys)
    # LUT4 on the ECP5: beyond the folding's share (a folding at it leaves no room for the
    # link), within the board's
    from flexor_hw.board import BOARD_LUT_MARGIN
    from flexor_hw.synth import TARGETS
    fits = int(BOARD_LUT_MARGIN * 24288) - 330
    assert fits > TARGETS["ecp5-25k"]["lut_margin"] * 24288
    board(_oversized(tmp_path / "4", luts=fits, ffs=1000, brams=10), "ulx3s-25f",
          tmp_path / "fits", bitstream=False, quiet=True)
    refuse(["board", _oversized(tmp_path / "5", luts=fits + 1, ffs=1000, brams=10),
            "--board", "ulx3s-25f", "-o", tmp_path / "out"],
           rf"LUT4 estimated {fits + 331:,} with the serial link, the device has 24,288 \(of "
           rf"which {BOARD_LUT_MARGIN:.0%} usable\)$", tmp_path, capsys=capsys)
    # on the iCE40 a logic cell holds a LUT4 and a flip-flop: their sum counts
    board(_oversized(tmp_path / "2a", luts=2500, ffs=2000, brams=4), "icebreaker",
          tmp_path / "cells", bitstream=False, quiet=True)        # 5,040 with the link
    big = _oversized(tmp_path / "2", luts=2600, ffs=2141, brams=4)
    refuse(["board", big, "--board", "icebreaker", "-o", tmp_path / "out"],
           r"does not fit the iCEBreaker \(iCE40UP5K-SG48\): logic cells \(LUT4 \+ "
           r"flip-flops\) estimated 5,281 with the serial link, the device has 5,280$",
           tmp_path, capsys=capsys)
    big = _oversized(tmp_path / "3", luts=1000, ffs=1000, brams=57)
    refuse(["board", big, "--board", "ulx3s-25f", "-o", tmp_path / "out"],
           r"block RAMs estimated 57 with the serial link, the device has 56$", tmp_path,
           capsys=capsys)


def test_not_a_build(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    refuse(["board", tmp_path / "empty", "--board", "icebreaker", "-o", tmp_path / "out"],
           r"has no manifest.json", tmp_path, capsys=capsys)
    refuse(["classify", "--sim", tmp_path / "empty", "--inputs", DIGITS_X],
           r"has no board.json", tmp_path, capsys=capsys)
    refuse(["classify", "--sim", DIGITS_RTL, "--inputs", DIGITS_X],
           r"has no board.json", tmp_path, capsys=capsys)


def test_clock_the_pll_cannot_make(icebreaker_build, tmp_path, capsys):
    refuse(["board", icebreaker_build, "--board", "icebreaker", "-o", tmp_path / "out",
            "--clock-mhz", "8"], r"cannot make 8 MHz", tmp_path, capsys=capsys)
    refuse(["board", icebreaker_build, "--board", "icebreaker", "-o", tmp_path / "out",
            "--baud", "2500000"], r"would be 2,400,000 baud \(more than 2 % off\)", tmp_path,
           capsys=capsys)


def test_port_that_does_not_exist(digits_board, tmp_path, capsys):
    d, x, _ = digits_board
    refuse(["classify", "--port", tmp_path / "ttyNOPE", "--board-dir", d, "--inputs", DIGITS_X,
            "-o", tmp_path / "y.npy"], r"cannot open serial port", tmp_path, capsys=capsys)


def test_board_that_never_answers(digits_board, tmp_path, capsys):
    """A serial port where nothing answers (a pseudo-terminal): the run gives up after the
    first images, in about their timeouts, instead of waiting for every image."""
    d, _, _ = digits_board
    master, slave = os.openpty()
    try:
        refuse(["classify", "--port", os.ttyname(slave), "--board-dir", d, "--inputs",
                DIGITS_X, "--timeout", "0.05", "--retries", "1", "-o", tmp_path / "y.npy"],
               r"no answer from the board to the first 3 images, 1 retries each "
               r"\(timeout: 6\)", tmp_path, capsys=capsys)
    finally:
        os.close(master)
        os.close(slave)


def test_classify_argument_mistakes(digits_board, tmp_path, capsys):
    d, _, _ = digits_board
    np.save(tmp_path / "big.npy", np.full((2, 64), 99))
    np.save(tmp_path / "shape.npy", np.zeros((2, 63), dtype=np.int64))
    np.save(tmp_path / "float.npy", np.zeros((2, 64)))
    for argv, message in [
            (["--inputs", DIGITS_X], r"needs --port PORT .* or --sim"),
            (["--port", "/dev/null", "--inputs", DIGITS_X], r"--port needs --board-dir"),
            (["--sim", d, "--inputs", tmp_path / "big.npy"], r"inputs span \[99, 99\]"),
            (["--sim", d, "--inputs", tmp_path / "shape.npy"], r"expected \[n, 64\]"),
            (["--sim", d, "--inputs", tmp_path / "float.npy"], r"dtype float64"),
            (["--sim", d, "--inputs", DIGITS_X, "--outputs", tmp_path / "v.npy"],
             r"ends in an argmax"),
            (["--sim", d, "--inputs", DIGITS_X, "--retries", "-1"], r"--retries"),
            (["--sim", d, "--inputs", tmp_path / "missing.npy"], r"cannot read inputs")]:
        refuse(["classify", *argv], message, tmp_path, capsys=capsys)


def test_board_manifest_records_the_link(digits_board):
    d, _, _ = digits_board
    m = load_board(d)
    assert m["board"] == "ulx3s-85f" and m["clock_mhz"] == 25.0 and m["pll"] is None
    assert m["divisor"] == round(25e6 / 115200) and m["sim_divisor"] == 8
    assert m["link"]["input"]["frame_bytes"] == 64
    assert m["link"]["output"] == {**m["link"]["output"], "argmax": True, "reply_bytes": 2}
    assert m["bitstream"] is None


@pytest.mark.slow
def test_output_vectors_over_the_link(tmp_path, capsys):
    """A network without an argmax, with multi-byte signed inputs and outputs: the reply
    carries the output vector (each value sign-extended to whole bytes) and its argmax."""
    from flexor_hw.build import build
    from flexor_hw.package import save
    from flexor_hw.synthetic import random_package
    pkg = random_package([12, 9, 6], n_in=3, n_out=5, seed=3, input_bits=10,
                         input_signed=True, output_bits=11)
    save(pkg, tmp_path / "p.flexor.npz")
    build(tmp_path / "p.flexor.npz", tmp_path / "rtl", quiet=True)
    board(tmp_path / "rtl", "ulx3s-85f", tmp_path / "board", bitstream=False, quiet=True)
    x = np.random.default_rng(1).integers(pkg.input.lo, pkg.input.hi + 1, (12, 12))
    x[0], x[1] = pkg.input.lo, pkg.input.hi
    np.save(tmp_path / "x.npy", x)
    status = main(["classify", "--sim", str(tmp_path / "board"), "--inputs",
                   str(tmp_path / "x.npy"), "-o", str(tmp_path / "c.npy"), "--outputs",
                   str(tmp_path / "v.npy")])
    assert status == 0, capsys.readouterr()
    logits = run_int(pkg, x.astype(np.int64), 16)[-1]
    assert np.load(tmp_path / "v.npy").tolist() == logits.tolist()
    assert np.load(tmp_path / "c.npy").tolist() == logits.argmax(axis=1).tolist()


@pytest.mark.synth
def test_icebreaker_bitstream(icebreaker_build, tmp_path, capsys):
    status = main(["board", str(icebreaker_build), "--board", "icebreaker", "-o",
                   str(tmp_path / "b")])
    out = capsys.readouterr().out
    assert status == 0, out
    m = load_board(tmp_path / "b")
    bitstream = tmp_path / "b" / m["bitstream"]
    assert bitstream.stat().st_size == 104090           # an iCE40 UP5K image
    assert m["timing"]["met"] and m["timing"]["fmax_mhz"] >= 12.0
    assert (tmp_path / "b" / "timing.json").is_file()
    assert f"iceprog {tmp_path / 'b' / 'board_top.bin'}" in out
    assert 0 < m["resources"]["luts"] <= 5280


def test_every_board_places_on_its_own_device():
    """Each board's platform (amaranth-boards) is the device its ``synth`` target places on
    (the part named in the board table, the target's nextpnr device): the folding to the
    board's target is folding to the board's chip."""
    import importlib
    from flexor_hw.synth import TARGETS
    flags = {"LFE5U-25F": "--25k", "LFE5U-45F": "--45k", "LFE5U-85F": "--85k",
             "iCE40UP5K": "--up5k"}
    for name, spec in BOARDS.items():
        module, cls = spec["platform"]
        platform = getattr(importlib.import_module(module), cls)
        target = TARGETS[spec["device"]]
        assert spec["part"].startswith(platform.device), name
        assert flags[platform.device] in target["pnr"], name
