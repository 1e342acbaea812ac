# amaranth: UnusedElaboratable=no
"""The folding pass's windows and pools beside faster units: a window widens from an element
to a kernel row to a channel's whole kernel only as far as the rate needs; a tiled pool that
would stall its producer gets an output row's FIFO."""

from pathlib import Path

import pytest

from flexor_hw.hw import fold as F
from flexor_hw.hw import stages as S


def _used(unit):
    """``unit``, elaborated (a unit made and never elaborated warns as it is collected)."""
    from amaranth.hdl import Fragment
    Fragment.get(unit, None)
    return unit


def _lenet5():
    from pathlib import Path

    from flexor_hw import package
    return package.load(Path(__file__).resolve().parent.parent / "examples" / "mnist" /
                        "lenet5.flexor.npz")


def conv2_window(simd=1):
    """LeNet-5's conv2 window: 32 channels of a 14 × 14 map, 5 × 5 kernel, padding 2."""
    return S.SlidingWindow("w", (0, 255), (0, 255), channels=32, height=14, width=14,
                           kernel=(5, 5), stride=(1, 1), padding=(2, 2), simd=simd)


def test_a_window_widens_only_as_far_as_the_rate_needs():
    w = conv2_window()
    # by elements a cycle: 1, a kernel row's 5, the kernel rows of groups of 2 and 4
    # channels (a 16- and a 32-bit word in 5 banks), a channel's kernel (25 banks)
    assert w.widths == [1, 5, 50, 100, 25]
    assert F._fastest(w, 10 ** 6).style == "element"
    assert F._fastest(w, 31_361).style == "row"          # 196 pixels × 800 / 5, and one
    assert F._fastest(w, 31_360).simd == 50              # 196 × 16 groups × 5 rows, and one
    assert F._fastest(w, 15_680).simd == 100
    assert F._fastest(w, 7_840).style == "kernel"
    assert F._fastest(w, 1).style == "kernel"            # the widest, where none meets it
    kernel = w.widened(25)
    assert kernel.cycles_per_image() == 196 * 32 + 1
    assert _used(kernel.unit()).simd == 25


def test_a_kernel_window_banks_its_line_buffer_by_row_and_column():
    w = conv2_window(25)
    assert w.buffer_rows == 15                           # 2·5 + 1, a multiple of 5
    mems = w.memories()
    assert len(mems) == 25
    # 3 rows of a bank × 3 column groups × 32 channels
    assert {(m["depth"], m["width"]) for m in mems} == {(288, 8)}
    row = w.widened(5)
    assert row.estimate()["luts"] < w.estimate()["luts"]


def pool1(simd=4):
    return S.MaxPool("p", (0, 255), (0, 255), channels=32, height=28, width=28,
                     kernel=(2, 2), stride=(2, 2), simd=simd)


def test_a_pool_that_would_stall_its_producer_gets_an_output_row_fifo():
    # conv1 at 12,544 cycles an image makes a 28-pixel row in 448 cycles; pool1's output
    # row, 14 pixels of 32 channels, drains into the window at one element a cycle: 448
    stages = [pool1(), conv2_window(25)]
    limit = 12_544 - 12_544 // F.UNIT_SLACK
    buffered = F._buffer_pool_rows(stages, limit)[0]
    assert buffered.out_depth == 3 + 14 * 32 // 4
    assert [m["kind"] for m in buffered.memories()] == ["row maxima", "output FIFO"]
    assert _used(buffered.unit())._out_depth == buffered.out_depth
    # at the ECP5-25k's rate (43,904 cycles) the row drains in time: three entries
    slow = 43_904 - 43_904 // F.UNIT_SLACK
    assert F._buffer_pool_rows(stages, slow)[0].out_depth == 3
    # a consumer that takes the pool's whole beat drains four times as fast
    assert F._buffer_pool_rows([pool1(), _Taking(4)], limit)[0].out_depth == 3


class _Taking:
    """A stand-in consumer taking ``in_simd`` elements a cycle."""
    kind = "mvau"

    def __init__(self, in_simd):
        self.in_simd = in_simd


def test_lenet5_on_the_45k_reads_conv2_a_group_of_channels_a_beat():
    """With the ECP5-45k's room, the fastest folding that fits needs conv2's window faster
    than a kernel row a beat (31,361 cycles): it emits the kernels of a group of channels,
    from five banks (a channel's kernel a beat takes 25), in the beat conv2 takes."""
    from flexor_hw.build import plan_hardware
    pkg = _lenet5()
    g = plan_hardware(pkg, target="ecp5-45k", argmax=True)
    window = next(st for st in g.stages if st.name == "conv2_window")
    assert window.style == "group" and window.group >= 2
    assert len(window.memories()) == 5 and window.estimate()["brams"] == 5
    assert g.cycles_per_image() < 31_361
    conv2 = next(st for st in g.stages if st.name == "conv2")
    assert conv2.simd == window.simd
    assert "conv2_window_to_conv2" not in [st.name for st in g.stages]  # no converter


def test_folding_to_a_device_says_each_rate_it_tries(tmp_path, capsys):
    """``progress`` hears the narrowest folding and every rate tried, and the folding chosen
    is the fastest that fitted (the shipped LeNet-5 on the 25k); ``build`` prints those lines
    on stderr."""
    import re

    from flexor_hw.build import build, plan_hardware
    build("examples/digits/digits.flexor.npz", tmp_path / "digits", target="ice40-up5k")
    err = capsys.readouterr().err
    assert "[fold] ice40-up5k: the narrowest folding fits" in err and "[fold] at most" in err
    pkg = _lenet5()
    lines = []
    g = plan_hardware(pkg, target="ecp5-25k", argmax=True, progress=lines.append)
    assert lines[0].startswith("[fold] ecp5-25k: the narrowest folding fits")
    # (and, last, where they do, that the units at the rate reached take fewer LUT4)
    if lines[-1].startswith("[fold] the units at the rate reached"):
        assert lines[-1] == (f"[fold] the units at the rate reached "
                             f"({g.cycles_per_image():,} cycles per image) take fewer LUT4")
        lines.pop()
    tried = [re.fullmatch(r"\[fold\] at most ([\d,]+) cycles per image: "
                          r"(?:([\d,]+) fits|nothing fits)", line) for line in lines[1:]]
    assert tried and all(tried)
    fitted = [int(m[2].replace(",", "")) for m in tried if m[2]]
    failed = [int(m[1].replace(",", "")) for m in tried if not m[2]]
    assert failed and min(fitted) == g.cycles_per_image() == 25_088
    assert all(int(m[2].replace(",", "")) <= int(m[1].replace(",", "")) for m in tried if m[2])


def test_fold_auto_without_a_device_keeps_windows_at_a_kernel_row():
    """Without a device, ``--fold auto`` folds to the rate the windows allow a kernel row a
    beat (a kernel a beat would size units for a rate no device holds)."""
    from flexor_hw.build import plan_hardware
    pkg = _lenet5()
    g = plan_hardware(pkg, argmax=True)
    assert g.cycles_per_image() == 31_361
    assert {st.name: st.style for st in g.stages if st.kind == "window"} == \
        {"conv1_window": "element", "conv2_window": "row"}


def test_a_device_may_keep_to_a_lut_margin_of_its_own():
    """A target's own ``lut_margin`` (a share of its LUTs below :data:`MARGIN`'s) holds the
    folding within it; the same device at the default share folds faster."""
    from flexor_hw.build import plan_hardware
    from flexor_hw.synth import TARGETS
    pkg = _lenet5()
    luts = TARGETS["ecp5-45k"]["luts"]
    assert "lut_margin" not in TARGETS["ecp5-45k"]
    g = plan_hardware(pkg, target="ecp5-45k", argmax=True)
    assert g.estimate()["luts"] <= F.MARGIN["luts"] * luts
    half = plan_hardware(pkg, target="ecp5-45k", budget={"lut_margin": 0.5}, argmax=True)
    assert half.estimate()["luts"] <= 0.5 * luts < g.estimate()["luts"]
    assert half.cycles_per_image() > g.cycles_per_image()


def test_a_wider_lut_margin_buys_rate_only():
    """A margin above :data:`MARGIN`'s (the ECP5-25k's 68 %, the ECP5-85k's 76.5 %, or
    ``lut_fill``) folds faster where the rate needs it (LeNet-5 within 18,000 LUT4: 31,361
    cycles in more than 65 % of them, where 65 % gives 40,192), and where the common margin
    reaches the same rate its folding is the one kept, LUT for LUT (LeNet-5 on the 25k and
    on the 85k). A count of LUTs given (``--budget luts=N``) is held to the common margin."""
    from flexor_hw.build import plan_hardware
    from flexor_hw.synth import TARGETS
    assert TARGETS["ecp5-85k"]["lut_margin"] > F.MARGIN["luts"]
    margin = TARGETS["ecp5-25k"]["lut_margin"]
    assert margin > F.MARGIN["luts"]
    pkg = _lenet5()
    wide = plan_hardware(pkg, target="ecp5-25k", budget={"luts": 18000, "lut_margin": margin},
                         argmax=True)
    usual = plan_hardware(pkg, target="ecp5-25k", budget={"luts": 18000}, argmax=True)
    assert wide.cycles_per_image() == 31_361 < usual.cycles_per_image() == 40_192
    assert F.MARGIN["luts"] * 18000 < wide.estimate()["luts"] <= margin * 18000
    own = plan_hardware(pkg, target="ecp5-25k", argmax=True)
    common = plan_hardware(pkg, target="ecp5-25k", budget={"lut_margin": F.MARGIN["luts"]},
                           argmax=True)
    assert own.cycles_per_image() == common.cycles_per_image() == 25_088
    assert [st.estimate() for st in own.stages] == [st.estimate() for st in common.stages]
    at_85k = plan_hardware(pkg, target="ecp5-85k", argmax=True)
    common = plan_hardware(pkg, target="ecp5-85k", budget={"lut_margin": F.MARGIN["luts"]},
                           argmax=True)
    assert at_85k.cycles_per_image() == common.cycles_per_image()
    assert [(st.name, getattr(st, "pe", None), getattr(st, "simd", None), st.estimate())
            for st in at_85k.stages] == \
        [(st.name, getattr(st, "pe", None), getattr(st, "simd", None), st.estimate())
         for st in common.stages]


def test_an_explicit_folding_buffers_its_pools_as_the_device_folding_does():
    """``--fold`` with the ECP5-85k's folding of LeNet-5 (6,273 cycles) gives its pools the
    same output row FIFOs as ``--target ecp5-85k``: held to their consumers' pace, their
    rows would stall the convolutions (their beats wider than their consumers', they are
    not fed in blocks). (Where its memories go is the device pass's, not compared.)"""
    from flexor_hw.build import plan_hardware
    pkg = _lenet5()
    auto = plan_hardware(pkg, target="ecp5-85k", argmax=True)
    fold = {u.name: (u.pe, u.simd) for u in auto.mvaus}
    explicit = plan_hardware(pkg, fold=fold, target="ecp5-85k", argmax=True)
    pools = {st.name: st.out_depth for st in auto.stages if st.kind == "maxpool"}
    assert min(pools.values()) > 3                      # each buffers a row
    assert {st.name: st.out_depth for st in explicit.stages if st.kind == "maxpool"} == pools
    assert explicit.cycles_per_image() == auto.cycles_per_image()
    assert all("output FIFO" in [m["kind"] for m in st.memories()] and not st.blocks
               for st in explicit.stages if st.kind == "maxpool")



def test_a_device_folding_records_what_a_faster_one_runs_out_of():
    """On the ECP5-25k LeNet-5 folds to 25,088 cycles, conv1's at one kernel a cycle: the
    closest of the faster foldings tried needs more LUT4 than the 25k's usable share and
    more than its 56 block RAMs, and the record names both. Within 17,000 LUT4 it folds to
    43,904: the faster one needs more block RAMs than the device has, and more LUT4 than
    their usable share; the record names both, and the LUT share raised to what it names
    buys no rate (the faster foldings are still short of one or the other)."""
    import math

    from flexor_hw.build import plan_hardware
    from flexor_hw.synth import TARGETS
    pkg = _lenet5()
    g = plan_hardware(pkg, target="ecp5-25k", argmax=True)
    limit = g.limit
    assert limit["cycles"] < g.cycles_per_image() == 25_088 and limit["of"] == "ecp5-25k"
    short = {r["resource"]: r for r in [limit] + limit["also"]}
    luts, brams = short["luts"], short["brams"]
    assert luts["available"] == 24288 and luts["usable"] == TARGETS["ecp5-25k"]["lut_margin"]
    assert luts["estimate"] > luts["usable"] * 24288
    assert brams["available"] == 56 < brams["estimate"]
    g = plan_hardware(pkg, target="ecp5-25k", budget={"luts": 17000}, argmax=True)
    limit = g.limit
    assert limit["cycles"] < g.cycles_per_image() == 43_904
    assert limit["resource"] == "brams" and limit["available"] == 56 < limit["estimate"]
    assert limit["of"] == "ecp5-25k with the budget"
    [luts] = limit["also"]
    assert luts["resource"] == "luts" and luts["available"] == 17000
    assert luts["usable"] == F.MARGIN["luts"] and luts["estimate"] > F.MARGIN["luts"] * 17000
    assert F.limit_text(limit).endswith(
        f", and LUT4 estimated {luts['estimate']:,}, ecp5-25k with the budget has 17,000 "
        f"(of which {round(100 * F.MARGIN['luts'])}% usable)")
    # the share of the LUTs it names (--budget lut_fill): no faster
    raised = math.ceil(100 * luts["estimate"] / luts["available"]) / 100
    more = plan_hardware(pkg, target="ecp5-25k", budget={"luts": 17000, "lut_margin": raised},
                         argmax=True)
    assert more.cycles_per_image() == g.cycles_per_image()
    assert more.limit["cycles"] == limit["cycles"]


def test_units_chosen_together_fold_lenet5_faster_on_the_25k(monkeypatch):
    """Each unit's cheapest folding by weighed resources leaves LeNet-5 on the ECP5-25k at
    31,361 cycles per image: no weighing fits a faster rate in its 56 block RAMs and 68 %
    of its LUTs. The units and pools chosen together (the fewest LUT4 within the block
    RAMs) fit 25,088, conv1's own rate; and on the ECP5-45k within 86 block RAMs they reach
    the same rate as the weighing in fewer LUT4."""
    from flexor_hw.build import plan_hardware
    pkg = _lenet5()
    g = plan_hardware(pkg, target="ecp5-25k", argmax=True)
    on_45k = plan_hardware(pkg, target="ecp5-45k", budget={"brams": 86}, argmax=True)
    for graph, luts, brams in ((g, 24288 * 0.68, 56), (on_45k, 43848 * 0.65, 86)):
        est = graph.estimate()
        assert est["luts"] <= luts and est["brams"] <= brams
    monkeypatch.setattr(F, "_knapsack", lambda graph, target, budget: None)
    alone = plan_hardware(pkg, target="ecp5-25k", argmax=True)
    assert g.cycles_per_image() == 25_088 < alone.cycles_per_image()
    alone = plan_hardware(pkg, target="ecp5-45k", budget={"brams": 86}, argmax=True)
    assert on_45k.cycles_per_image() == alone.cycles_per_image()
    assert on_45k.estimate()["luts"] < alone.estimate()["luts"]


def test_the_knapsack_takes_the_fewest_luts_within_the_block_rams():
    """At a rate, :func:`~flexor_hw.hw.fold._knapsack` returns a folding that meets it with
    the block RAMs within the budget, and no folding the weighed pass finds at that rate,
    under any weights of its grid, fits the block RAMs in fewer LUT4."""
    from flexor_hw.hw.lower import lower
    graph = lower(_lenet5(), 16, argmax=True)
    budget = {"luts": 24288, "ffs": 24288, "brams": 56, "dsps": 28, "family": "ecp5",
              "rom_page_words": 64, "narrow_simd": True}
    for target in (40_000, 60_000, 100_000):
        chosen = F._knapsack(F.fold(graph, target=target, budget=budget), target, budget)
        est = F.match_widths(chosen).estimate()
        assert est["brams"] <= 56 and chosen.cycles_per_image() <= target
        within = [F.match_widths(F.fold(graph, target=target,
                                         budget=dict(budget, weights=w))).estimate()
                  for w in F.WEIGHT_GRID]
        within = [o["luts"] for o in within if o["brams"] <= 56]
        assert within and est["luts"] <= min(within)


def test_a_folding_as_fast_as_its_windows_records_no_limit():
    """On the ECP5-85k LeNet-5 runs as fast as conv2's window a kernel a beat allows: no
    faster folding exists to run out of anything."""
    from flexor_hw.build import plan_hardware
    g = plan_hardware(_lenet5(), target="ecp5-85k", argmax=True)
    assert g.cycles_per_image() == F._fixed_cycles(g)
    assert g.limit is None


def test_build_prints_what_a_faster_folding_needs(tmp_path, capsys):
    from pathlib import Path

    from flexor_hw.cli import main
    pkg = Path(__file__).resolve().parent.parent / "examples" / "digits" / "digits.flexor.npz"
    assert main(["build", str(pkg), "-o", str(tmp_path / "rtl"), "--target", "ice40-up5k",
                 "--argmax"]) == 0
    out = capsys.readouterr().out
    line = next(s for s in out.splitlines() if s.strip().startswith("faster:"))
    import json
    manifest = json.loads((tmp_path / "rtl" / "manifest.json").read_text())
    limit = manifest["faster_folding"]
    assert limit["resource"] == "cells" and limit["of"] == "ice40-up5k"
    assert line.endswith(f"needs logic cells (LUT4 + flip-flops) estimated {limit['estimate']:,}, "
                         "ice40-up5k has 5,280 (of which 83% usable)")
    assert manifest["faster_folding"]["cycles"] < manifest["cycles_per_inference"]


@pytest.mark.slow
def test_resnet20_on_the_85k_folds_faster_than_at_the_common_margin():
    """ResNet-20 folds to 36,865 cycles within 65 % of the ECP5-85k; within the device's
    76.5 % it folds faster, 32,768 cycles, its first stage's windows the kernels of a group
    of channels a beat, and that stage's units input-stationary (no vector memory; they
    take whole words of 36 behind width converters)."""
    import sys
    from flexor_hw.build import plan_hardware
    from flexor_hw.synthetic import random_graph
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from bench_resnet_fold import NETS
    pkg = random_graph((3, 32, 32), NETS["resnet20"], q=1, n_in=6, n_out=10, seed=1,
                       calibration=16, name="resnet20")
    device = plan_hardware(pkg, target="ecp5-85k", argmax=True)
    common = plan_hardware(pkg, target="ecp5-85k", budget={"lut_margin": F.MARGIN["luts"]},
                           argmax=True)
    assert common.cycles_per_image() == 36_865
    assert device.cycles_per_image() == 32_768
    est = device.estimate()
    assert common.estimate()["luts"] < est["luts"] <= 0.765 * 83640 and est["brams"] <= 208
    styles = [st.style for st in device.stages if st.kind == "window"]
    assert styles[1:7] == ["group"] * 6        # the first stage's, after the stem's
    first = device.mvaus[1:7]
    assert [(st.stationary, st.in_simd) for st in first] == [(True, st.simd) for st in first]


def test_pools_take_their_input_in_blocks_where_the_window_can_emit_them():
    """A tiled max pool right after a conv's unit whose window is an element or row window
    and whose output its windows tile: the window emits its pixels in blocks of the pool's
    windows, and the pool keeps no row of maxima (no memory; LeNet-5 on the 25k: some 700
    LUT4 less each). Not where the pool drops a column (7 wide, 2 × 2), where its beat is
    wider than its consumer's, behind a window of a channel's kernel a beat, after a
    residual add, or inside a residual block."""
    from flexor_hw.build import plan_hardware
    from flexor_hw.synthetic import random_graph

    def pools(graph):
        return [(st.name, st.blocks) for st in graph.stages if st.kind == "maxpool"]

    def windows(graph):
        return [(st.name, st.style, st.block) for st in graph.stages if st.kind == "window"]

    g = plan_hardware(_lenet5(), target="ecp5-25k", argmax=True)
    assert pools(g) == [("pool1", True), ("pool2", True)]
    assert windows(g) == [("conv1_window", "element", (2, 2)),
                          ("conv2_window", "group", (2, 2))]
    # pool1 two elements a beat, into conv2's group window's packer as they come
    assert [st.in_simd for st in g.stages if st.name == "conv2_window"] == [2]
    for st in g.stages:
        if st.kind == "maxpool":
            assert st.memories() == [] and st.estimate()["luts"] < 100
            assert st.out_depth == 3 and type(_used(st.unit())).__name__ == "BlockMaxPool"
            tiled = S.MaxPool(st.name, st.x_range, st.y_range, channels=st.channels,
                              height=st.height, width=st.width, simd=st.simd, lutram=True)
            assert tiled.estimate()["luts"] > 600
    odd = plan_hardware(random_graph((2, 8, 7), "c3k3p1,mp2,fc5", seed=1, calibration=8),
                        frac_bits=12)
    assert pools(odd) == [("pool2", False)] and windows(odd)[0][2] == (1, 1)
    fast = plan_hardware(_lenet5(), target="ecp5-85k", argmax=True)
    # pool1 eight channels a beat into conv2's window one a beat; pool2 behind a kernel
    # window
    assert [st.simd for st in fast.stages if st.kind == "maxpool"][0] == 8
    assert windows(fast)[1][1] == "kernel" and pools(fast) == [("pool1", False),
                                                                ("pool2", False)]
    res = plan_hardware(random_graph((3, 8, 8), "c4k3p1,res4,mp2,fc5", seed=4, calibration=8),
                        frac_bits=12)
    assert [b for _, b in pools(res)] == [False]
    # nor inside a residual block's main path (its skip FIFO is sized for raster order)
    chain = F.unfuse_pools(g.stages)
    assert [st.blocks for st in F.fuse_pools(chain) if st.kind == "maxpool"] == [True, True]
    fork = S.ResidualFork("add9_fork", (0, 255), (0, 255), channels=1, height=28, width=28,
                          add="add9")
    add = S.ResidualAdd("add9", (0, 255), (0, 255), channels=32, height=14, fork="add9_fork")
    end = [st.name for st in chain].index("pool1") + 1
    inside = [fork] + chain[:end] + [add] + chain[end:]
    assert [st.blocks for st in F.fuse_pools(inside) if st.kind == "maxpool"] == [False, True]
    after = [fork, add] + chain
    assert [st.blocks for st in F.fuse_pools(after) if st.kind == "maxpool"] == [True, True]
