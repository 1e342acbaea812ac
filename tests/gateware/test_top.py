# amaranth: UnusedElaboratable=no
"""The one top (DataflowTop of a folded hardware graph) in Amaranth's simulator: small conv networks (conv, max pool, flatten, linear)
against the golden model, exactly, with random stalls."""

import numpy as np
import pytest

from flexor_hw.build import hardware_top, plan_hardware
from flexor_hw.errors import BuildError
from flexor_hw.gateware.top import RESET_GROUP
from flexor_hw.golden import run_int
from flexor_hw.simulate import run_stream
from flexor_hw.synthetic import random_graph


def image_beats(x):
    return x.transpose(0, 2, 3, 1).reshape(-1).tolist()          # (y, x, c) per image


@pytest.mark.parametrize("spec, shape, lanes, argmax", [
    ("c3k3p1,mp2,c4k3s2p1,fc5", (2, 8, 7), 2, False),      # a LeNet in miniature
    ("c4k5p2,mp2,fc6,fc3", (1, 8, 8), [3, 2, 1], True),
    ("c2k1,c3k3s2", (3, 5, 6), 1, False),                   # spatial output, (y, x, c) order
])
def test_graph_network_matches_golden(spec, shape, lanes, argmax):
    pkg = random_graph(shape, spec, q=2, n_in=4, n_out=7, seed=len(spec), calibration=8)
    dut = hardware_top(plan_hardware(pkg, lanes=lanes, frac_bits=12, argmax=argmax))
    x = np.random.default_rng(1).integers(0, 256, (2, *shape))
    y = run_int(pkg, x, 12)[-1]
    want = (y.argmax(1) if argmax else
            y.transpose(0, 2, 3, 1) if y.ndim == 4 else y).reshape(-1).tolist()
    run = run_stream(dut, image_beats(x), len(want), in_stall=0.2, out_stall=0.2, seed=2)
    assert run.outputs == want


def test_unmapped_nodes_are_named():
    pkg = random_graph((2, 6, 6), "c2k1,res2,res2", seed=0, calibration=8)
    plan_hardware(pkg, frac_bits=16)
    pkg.node("add7").inputs = ("conv6", "conv2")    # a skip across another block's add
    pkg.validate()                                  # a valid graph, but not a residual chain
    with pytest.raises(BuildError, match=r"^node 'add7': its skip input 'conv2' must be the "
                                         r"input of the main path that ends in 'conv6', read "
                                         r"by nothing else$"):
        plan_hardware(pkg, frac_bits=16)


@pytest.mark.parametrize("spec, shape, signed", [
    ("ic4k3p1,mp2,c6k3s2p1,ifc5", (2, 8, 7), False),     # int8 first and last layers
    ("ic4k3p1,res4,res8s2,gap,ifc5", (3, 8, 8), True),    # a ResNet in miniature, as imported
])
def test_int8_layers_match_golden(spec, shape, signed):
    pkg = random_graph(shape, spec, q=2, n_in=4, n_out=7, seed=7, input_signed=signed,
                       negative_alpha=0.3, calibration=8)
    graph = plan_hardware(pkg, lanes="auto" if signed else 2, frac_bits=14)
    assert graph.mvaus[0].unipolar and graph.mvaus[0].params.plain
    dut = hardware_top(graph)
    x = np.random.default_rng(2).integers(pkg.input.lo, pkg.input.hi + 1, (2, *shape))
    want = run_int(pkg, x, 14)[-1].reshape(-1).tolist()
    run = run_stream(dut, image_beats(x), len(want), in_stall=0.3, out_stall=0.3, seed=1)
    assert run.outputs == want


@pytest.mark.parametrize("spec, shape, stall", [
    ("c4k3p1,res4,res8s2,gap,fc5", (3, 8, 8), 0.3),        # a ResNet in miniature
    ("res4,res6s2,gap", (2, 6, 5), 0.5),                     # the skip forks off the input
])
def test_residual_network_matches_golden(spec, shape, stall):
    pkg = random_graph(shape, spec, q=1, n_in=5, n_out=9, seed=4, negative_alpha=0.3,
                       calibration=8)
    graph = plan_hardware(pkg, lanes=2, frac_bits=13)
    after = {b.name: a.kind for a, b in zip(graph.stages, graph.stages[1:])}
    assert "fork" in [after.get(st.name) for st in graph.stages if st.kind == "window"]
    dut = hardware_top(graph)
    x = np.random.default_rng(3).integers(0, 256, (2, *shape))
    want = run_int(pkg, x, 13)[-1].reshape(-1).tolist()
    run = run_stream(dut, image_beats(x), len(want), in_stall=stall, out_stall=stall, seed=5)
    assert run.outputs == want


def test_skip_fifo_depth_is_computed_not_guessed():
    """The computed minimum works unstalled (the producer runs as far ahead as it can) and a
    shallower FIFO deadlocks the block: the fork waits for the full skip FIFO while the main
    path still needs input rows. The depth built (one more row) runs at the manifest's rate,
    the minimum slower."""
    from dataclasses import replace

    from flexor_hw.hw.fifo import skip_fifo_depth
    from flexor_hw.simulate import SimulationTimeout
    pkg = random_graph((2, 8, 8), "res2,gap", seed=1, calibration=8)
    graph = plan_hardware(pkg, lanes=2, frac_bits=12)
    fork = next(st for st in graph.stages if st.kind == "fork")
    k = graph.stages.index(fork)
    end = next(j for j, st in enumerate(graph.stages) if st.name == fork.add)
    minimum = skip_fifo_depth(graph.stages[k + 1:end], 8, 1, 2, 8, full_rate=False)
    # three input rows (k3 p1 twice) + slack (a pixel and two places, and the two beats each
    # window's input register holds)
    assert minimum == 3 * 8 * 2 + 2 + 2 + 2 * 2
    # at full rate, the rows both windows' line buffers hold: 3 + 1 rows for the second
    # window, which the first (3 + 1 rows, shifted one row) fills from 5 input rows
    assert fork.depth == 5 * 8 * 2 + 2 + 2 + 2 * 2
    x = np.random.default_rng(0).integers(0, 256, (3, 2, 8, 8))
    want = run_int(pkg, x, 12)[-1].reshape(-1).tolist()
    per_image = len(want) // 3

    def spacing(depth, **kwargs):
        stages = [replace(s, depth=depth) if s is fork else s for s in graph.stages]
        run = run_stream(hardware_top(replace(graph, stages=stages)), image_beats(x),
                         len(want), **kwargs)
        assert run.outputs == want
        ends = [run.out_cycles[(i + 1) * per_image - 1] for i in range(3)]
        return np.diff(ends).max()

    assert spacing(fork.depth) == graph.cycles_per_image()
    assert spacing(minimum) > graph.cycles_per_image()
    with pytest.raises(SimulationTimeout):
        spacing(minimum - 8 * 2, max_cycles=20000)


@pytest.mark.slow
def test_residual_blocks_run_at_the_manifest_rate():
    """An identity block then a stride-2 block with channel padding (16 → 32 channels, 16×16
    maps): with the skip FIFOs sized for what the main path's line buffers hold, images leave
    exactly the manifest's cycles apart."""
    pkg = random_graph((3, 16, 16), "ic16k3p1,res16,res32s2,gap,ifc10", q=1, n_in=4,
                       n_out=10, seed=1, calibration=8)
    graph = plan_hardware(pkg, frac_bits=12)
    x = np.random.default_rng(0).integers(0, 256, (3, 3, 16, 16))
    want = run_int(pkg, x, 12)[-1].reshape(-1).tolist()
    run = run_stream(hardware_top(graph), image_beats(x), len(want), max_cycles=10 ** 6)
    assert run.outputs == want
    ends = [run.out_cycles[(i + 1) * 10 - 1] for i in range(3)]
    assert list(np.diff(ends)) == [graph.cycles_per_image()] * 2


def test_folded_lenet_in_miniature_runs_at_the_manifest_rate():
    """Auto folding on a small LeNet (units of several PE × SIMD, width converters between
    them, max pools fed in blocks of their windows); exact with stalls, and unstalled images leave exactly the manifest's cycles apart
    once the pipeline is full."""
    pkg = random_graph((1, 12, 12), "c8k3p1,mp2,c8k3p1,mp2,fc24,fc4", q=1, n_in=4, n_out=10,
                       seed=3, calibration=8)
    graph = plan_hardware(pkg, frac_bits=12)
    assert any(st.kind == "repack" for st in graph.stages)
    assert any(st.pe > 1 or st.simd > 1 for st in graph.mvaus)
    # pool4 takes its input in blocks of its windows from conv3's window (pool2, four
    # channels a beat into a window's one, keeps its row)
    assert [(st.name, st.blocks) for st in graph.stages if st.kind == "maxpool"] == \
        [("pool2", False), ("pool4", True)]
    assert [st.block for st in graph.stages if st.kind == "window"] == [(1, 1), (2, 2)]
    x = np.random.default_rng(0).integers(0, 256, (4, 1, 12, 12))
    want = run_int(pkg, x, 12)[-1].reshape(-1).tolist()
    top = hardware_top(graph)
    run = run_stream(top, image_beats(x), len(want), in_stall=0.3, out_stall=0.3, seed=4)
    assert run.outputs == want
    run = run_stream(hardware_top(graph), image_beats(x), len(want))
    assert run.outputs == want
    ends = [run.out_cycles[(i + 1) * 4 - 1] for i in range(4)]
    gaps = list(np.diff(ends))
    assert gaps[1:] == [graph.cycles_per_image()] * 2, gaps


def test_every_stage_is_one_named_submodule():
    from amaranth.hdl import Fragment
    from flexor_hw.build import _unit_name
    pkg = random_graph((3, 8, 8), "ic4k3p1,res4,res8s2,mp2,gap,ifc3", seed=2, calibration=8)
    graph = plan_hardware(pkg, lanes=1, frac_bits=12, argmax=True)
    top = hardware_top(graph)
    names = [_unit_name(st) for st in graph.stages]
    assert len(names) == len(set(names))
    fragment = Fragment.get(top, None)
    assert {name for _, name, _ in fragment.subfragments} == set(names) | {"port_out"}


def _held_reset(dut, junk):
    """A ``before`` for :func:`run_stream`: ``junk`` beats into the top, then ``rst`` for two
    cycles with ``i.valid`` high: in those cycles and the one after, the top takes no beat
    and gives none."""
    async def before(ctx, rst):
        for beat in junk:
            ctx.set(dut.i.payload, beat)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        await ctx.tick().repeat(8)
        assert ctx.get(dut.i.ready)                     # room for a beat, before the reset
        ctx.set(dut.i.valid, 1)
        ctx.set(rst, 1)
        seen = []
        for k in range(3):
            if k == 2:
                ctx.set(rst, 0)
            _, _, ready, valid = await ctx.tick().sample(dut.i.ready, dut.o.valid)
            seen.append((ready, valid))
        ctx.set(dut.i.valid, 0)
        assert seen == [(0, 0)] * 3
    return before


@pytest.mark.parametrize("spec, shape, stall", [
    ("c4k3p1,res4,res8s2,gap,fc5", (3, 8, 8), 0.3),        # forks, skip FIFOs, adds
    ("c3k3p1,mp2,c4k3s2p1,fc5", (2, 8, 7), 0.2),
])
def test_reset_tree_top_resets_every_unit_mid_image(spec, shape, stall):
    """The top as emitted (``clk`` and ``rst`` its own, each unit reset by its own copy of
    ``rst``): a reset in the middle of an image, with beats offered through it, leaves every
    unit at the start (line buffers partly written, writers mid-row); the images
    after it come out exact, under stalls."""
    pkg = random_graph(shape, spec, q=1, n_in=5, n_out=9, seed=4, negative_alpha=0.3,
                       calibration=8)
    graph = plan_hardware(pkg, lanes=2, frac_bits=13)
    dut = hardware_top(graph, reset_tree=True)
    x = np.random.default_rng(3).integers(0, 256, (3, *shape))
    want = run_int(pkg, x[1:], 13)[-1].reshape(-1).tolist()
    beats = image_beats(x)
    junk = beats[:len(beats) // 3 // 5]                 # a fifth of the first image
    run = run_stream(dut, beats[len(beats) // 3:], len(want), in_stall=stall,
                     out_stall=stall, seed=5, before=_held_reset(dut, junk))
    assert run.outputs == want


def test_reset_tree_reaches_each_unit_through_a_register_of_its_own(tmp_path):
    """In the emitted Verilog the top's ``rst`` goes into one register per group of
    ``RESET_GROUP`` units and two in a row for the top's ports; each group's register into
    a register per unit of its group, in stream order (the output register slice last), and
    each unit's logic is reset by its own register alone."""
    import re
    from flexor_hw.build import _unit_name, build
    from flexor_hw.package import save
    pkg = random_graph((3, 8, 8), "c4k3p1,res4,mp2,fc5", q=1, n_in=5, n_out=9, seed=4,
                       calibration=8)
    save(pkg, tmp_path / "p.flexor.npz")
    manifest = build(tmp_path / "p.flexor.npz", tmp_path / "out", frac_bits=13, quiet=True)
    text = (tmp_path / "out" / manifest["verilog"]).read_text()
    modules = text.split("\nmodule ")
    body = modules[1].split(";", 1)[1]                  # the top module, after its header
    names = [n["modules"][0] for n in manifest["nodes"]] + ["port_out"]
    copies = dict(re.findall(r"\) ((?:rst|gate)_\w+)_copy \(\s*\.clk\(clk\),"
                             r"\s*\.d\((\S+?) ?\),", body))
    groups = [f"rst_g{k}" for k in range(-(-len(names) // RESET_GROUP))]
    assert len(groups) >= 2                             # the test's network has two levels
    either = set(re.findall(r"^  assign (\S+)\s+= rst \| rst_top;$", body,
                                re.MULTILINE))
    gates = {g: copies.pop(g) for g in ("gate_in", "gate_out")}
    assert set(gates.values()) <= either                # the ports' gates: rst | rst_top
    assert copies == {"rst_top": "rst", "rst_top_2": "rst_top", **{g: "rst" for g in groups},
                      **{f"rst_{n}": groups[k // RESET_GROUP] for k, n in enumerate(names)}}
    uses = [line for line in body.splitlines() if re.search(r"\brst\b", line)
            and not re.search(r"^\s*(input|wire|\.d\()", line)]
    assert uses and all(re.fullmatch(r"  assign \S+\s+= rst \| rst_top;", u) for u in uses), uses
    assert any(f"  assign held = {t}  | rst_top_2;" in body.splitlines() for t in either)
    for n in names:
        unit = next(t for t in modules if t.startswith(f"\\{manifest['top']}.{n} "))
        assert re.search(rf"\brst_{n}\b", unit.split(";", 1)[0])       # a port of the unit
    assert not any(re.search(r"\brst\b", t) for t in modules[2:])
    assert sum(len(re.findall(r"\bif \(rst_", t)) for t in modules[2:]) > 10 * len(names)


def test_input_stationary_units_in_a_network_run_at_the_manifest_rate():
    """The small LeNet with every unit that can be input-stationary made so (its width
    converters matched again: such a unit takes whole words), exact with stalls, and
    unstalled images leave exactly the manifest's cycles apart."""
    from dataclasses import replace

    from flexor_hw.gateware.mvau import stationary_refusal
    from flexor_hw.hw import fold as F
    pkg = random_graph((1, 12, 12), "c8k3p1,mp2,c8k3p1,mp2,fc24,fc4", q=1, n_in=4, n_out=10,
                       seed=3, calibration=8)
    graph = plan_hardware(pkg, frac_bits=12)
    stages = []
    for st in graph.stages:
        if st.kind == "mvau":
            whole = replace(st, in_beat=None)
            if whole.params.nf > 1 and stationary_refusal(whole.params) is None:
                st = replace(whole, stationary=True)
        if st.kind != "repack":
            stages.append(st)
    graph = F.match_widths(replace(graph, stages=stages))
    assert {"conv1", "conv3"} <= {st.name for st in graph.mvaus if st.stationary}
    x = np.random.default_rng(0).integers(0, 256, (4, 1, 12, 12))
    want = run_int(pkg, x, 12)[-1].reshape(-1).tolist()
    run = run_stream(hardware_top(graph), image_beats(x), len(want), in_stall=0.3,
                     out_stall=0.3, seed=4)
    assert run.outputs == want
    run = run_stream(hardware_top(graph), image_beats(x), len(want))
    assert run.outputs == want
    ends = [run.out_cycles[(i + 1) * 4 - 1] for i in range(4)]
    assert list(np.diff(ends))[1:] == [graph.cycles_per_image()] * 2
