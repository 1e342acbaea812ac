import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from flexor_hw.build import MANIFEST, build, plan_hardware
from flexor_hw.errors import BuildError
from flexor_hw.gateware.top import PORT_OUT_LATENCY
from flexor_hw.hw.fifo import size_fifos
from flexor_hw.hw.fold import MARGIN
from flexor_hw.package import save, sha256_file
from flexor_hw.rom_image import mvau_const_words, mvau_rom_bytes
from flexor_hw.synthetic import random_package
from flexor_hw.toolchain import verilator_env


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("build")
    pkg = random_package([37, 13, 5], n_in=7, n_out=11, q=2, seed=3, name="odd-net")
    save(pkg, root / "odd.flexor.npz")
    manifest = build(root / "odd.flexor.npz", root / "out", lanes=[2, 3], frac_bits=12,
                     quiet=True)
    return pkg, root, manifest


def test_outputs_are_byte_identical(built, tmp_path):
    pkg, root, _ = built
    again = root / "again"
    build(root / "odd.flexor.npz", again, lanes=[2, 3], frac_bits=12, quiet=True)
    first = sorted(os.listdir(root / "out"))
    assert first == sorted(os.listdir(again))
    for name in first:
        if name != MANIFEST:        # the manifest names the package relative to its directory
            assert (root / "out" / name).read_bytes() == (again / name).read_bytes(), name
    a = json.loads((root / "out" / MANIFEST).read_text())
    b = json.loads((again / MANIFEST).read_text())
    assert a == b


def test_manifest_fields(built):
    pkg, root, manifest = built
    on_disk = json.loads((root / "out" / MANIFEST).read_text())
    assert on_disk == manifest
    assert manifest["top"] == "flexor_odd_net"
    assert manifest["package"]["sha256"] == sha256_file(root / "odd.flexor.npz")
    assert (root / "out" / manifest["package"]["file"]).resolve() == \
        (root / "odd.flexor.npz").resolve()
    # --lanes N: N slices per cycle and row (SIMD = N·n_out, at most the fan-in), PE 1
    assert manifest["build"] == {"fold": {"fc1": [1, 22], "fc2": [1, 13]}, "fold_auto": False,
                                 "target": None, "budget": None, "frac_bits": 12,
                                 "argmax": False, "baseline": False}
    names = {p["name"]: p for p in manifest["ports"]}
    assert set(names) == {"clk", "rst", "i__payload", "i__valid", "i__ready", "o__payload",
                          "o__valid", "o__ready"}
    assert names["i__payload"]["width"] == 8 and names["o__payload"]["width"] == 8
    assert names["i__payload"]["signed"] is False and names["o__payload"]["signed"] is True
    graph = plan_hardware(pkg, lanes=[2, 3], frac_bits=12)
    units = [st.params for st in graph.mvaus]
    assert manifest["rom_bits"] == sum(p.weight_bits for p in units)
    assert manifest["cycles_per_inference"] == graph.cycles_per_image() == \
        max(st.cycles_per_image() for st in graph.stages)
    assert manifest["latency_cycles"] == sum(st.latency() for st in graph.stages) + \
        PORT_OUT_LATENCY
    # fc2 takes fc1's one-result beats into its 13 lanes itself; fc1 would load the input's
    # 37 one-element beats slower (38 cycles) than it computes (26), so a converter stays
    assert [n["kind"] for n in manifest["nodes"]] == ["repack", "mvau", "mvau"]
    assert [n["in_simd"] for n in manifest["nodes"]] == [1, 22, 1]
    stored = sum(layer.stored_bits for layer in pkg.layers)
    assert manifest["bits_per_weight"] == stored / (37 * 13 + 13 * 5)
    gates = sum(p.pe * p.slots * sum(int((m.sum(1) - 1).sum()) for m in layer.xor)
                for p, layer in zip(units, pkg.layers))
    assert manifest["xor_gates"] == gates
    v = (root / "out" / manifest["verilog"]).read_text()
    assert f"module {manifest['top']}(" in v and "$readmemh(INIT_FILE, mem)" in v
    for name in manifest["rom_files"]:
        assert f'"{name}"' in v


def test_weight_hex_is_the_rom_image(built):
    pkg, root, manifest = built
    p = plan_hardware(pkg, lanes=[2, 3], frac_bits=12).mvaus[0].params
    lines = (root / "out" / manifest["layers"][0]["weights_file"]).read_text().split()
    assert len(lines) == p.rom_depth
    image = mvau_rom_bytes(pkg.layers[0], p.pe, p.simd)
    assert [int(line, 16) for line in lines] == [int.from_bytes(w.tobytes(), "little")
                                                 for w in image]
    assert all(len(line) == -(-p.rom_width // 4) for line in lines)
    # SIMD = 2·n_out ∤ F: the unit carries the slice its column blocks share. PE row 0's
    # plane 1 starts at bits (1·PE + 0)·row_bits of word 0 with slice 1; slice 0 is in the
    # row group's head word.
    assert p.carry and p.row_bits == (p.slots - 1) * 7
    word0 = int(lines[0], 16)
    bits = [(word0 >> (p.pe * p.row_bits + j)) & 1 for j in range(7)]
    assert bits == pkg.layers[0].encrypted[1, 1].tolist()
    heads = (root / "out" / manifest["layers"][0]["heads_file"]).read_text().split()
    assert len(heads) == p.nf == manifest["layers"][0]["head_rom_words"]
    head0 = int(heads[0], 16)
    assert [(head0 >> (p.pe * 7 + j)) & 1 for j in range(7)] == \
        pkg.layers[0].encrypted[1, 0].tolist()


def test_const_hex_holds_alpha_and_bias(built):
    pkg, root, manifest = built
    st = plan_hardware(pkg, lanes=[2, 3], frac_bits=12).mvaus[1]
    assert st.params.out_simd == 1
    lines = (root / "out" / manifest["layers"][1]["consts_file"]).read_text().split()
    assert [int(line, 16) for line in lines] == mvau_const_words(st.consts, 5, st.pe, 1)
    plan = st.params
    aw, bw = plan.consts.a_width, plan.consts.beta_width

    def field(word, pos, width):
        v = (word >> pos) & ((1 << width) - 1)
        return v - (1 << width) if v >> (width - 1) else v

    for o, line in enumerate(lines):
        word = int(line, 16)
        assert [field(word, i * aw, aw) for i in range(plan.q)] == plan.consts.A[:, o].tolist()
        assert field(word, plan.q * aw, bw) == plan.consts.beta[o]


def test_iverilog_accepts(built, tmp_path):
    if shutil.which("iverilog") is None:
        pytest.skip("iverilog is not installed")
    _, root, manifest = built
    r = subprocess.run(["iverilog", "-g2012", "-o", str(tmp_path / "a.out"),
                        str(root / "out" / manifest["verilog"])], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_verilator_lint_accepts(built):
    env = verilator_env()
    _, root, manifest = built
    r = subprocess.run(["verilator", "--lint-only", "-Wno-WIDTH",
                        str(root / "out" / manifest["verilog"])],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("kwargs, msg", [
    (dict(lanes=0), r"^lanes must be from 1 to 44 for node 'fc1' \(its slices per "
                    r"bit-plane\), not 0$"),
    (dict(lanes=[1, 2, 3]), r"^lanes needs one value or 2 values \(one per weighted node\), "
                            r"not 3$"),
    (dict(fold="fc1=5x37"), r"^--fold: PE of 'fc1' must divide its 13 rows, not 5$"),
    (dict(fold="fc1=1x38"), r"^--fold: SIMD of 'fc1' must be from 1 to its fan-in 37, not 38$"),
    (dict(fold="fc9=1x1"), r"^--fold names 'fc9', which is not a weighted node \(they are "
                           r"fc1, fc2\)$"),
    (dict(fold="fc1:1x1"), r"^--fold takes 'auto' or NODE=PExSIMD items separated by commas "
                           r"\(e\.g\. conv2=16x25,fc1=8x32\), not 'fc1:1x1'$"),
    (dict(target="ecp5-1k"), r"^unknown target 'ecp5-1k'; expected one of ecp5-25k, ecp5-45k, "
                             r"ecp5-85k, ice40-hx8k, ice40-up5k$"),
    (dict(frac_bits=40), r"^frac_bits must be an integer from 0 to 32, not 40$"),
])
def test_bad_parameters_fail_before_any_work(tmp_path, built, kwargs, msg):
    _, root, _ = built
    out = tmp_path / "never"
    with pytest.raises(BuildError, match=msg):
        build(root / "odd.flexor.npz", out, quiet=True, **kwargs)
    assert not out.exists()


def test_cli_build_one_line_errors(built, tmp_path):
    _, root, _ = built
    r = subprocess.run([sys.executable, "-m", "flexor_hw.cli", "build",
                        str(root / "odd.flexor.npz"), "-o", str(tmp_path / "x"),
                        "--lanes", "99"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == ("flexor-hw: error: lanes must be from 1 to 44 for node 'fc1' "
                                "(its slices per bit-plane), not 99")


def test_cli_build_reports(built, tmp_path):
    _, root, _ = built
    r = subprocess.run([sys.executable, "-m", "flexor_hw.cli", "build",
                        str(root / "odd.flexor.npz"), "-o", str(tmp_path / "x"),
                        "--lanes", "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "[build]" in r.stderr and "cycles per inference" in r.stdout
    assert np.isclose(json.loads((tmp_path / "x" / MANIFEST).read_text())["bits_per_weight"],
                      2 * 7 / 11, rtol=0.02)


def test_baseline_of_a_folded_build_has_the_same_units(tmp_path):
    # `synth --compare` builds the baseline: the same folding of every unit, only the ROM
    # holds decrypted bits
    from flexor_hw.cli_hw import build_baseline
    from flexor_hw.synthetic import random_graph
    pkg = random_graph((1, 8, 8), "ic4k3p1,mp2,fc12,ifc5", q=1, n_in=4, n_out=10, seed=2,
                       calibration=4)
    save(pkg, tmp_path / "g.flexor.npz")
    flexor = build(tmp_path / "g.flexor.npz", tmp_path / "f", quiet=True)
    assert flexor["build"]["fold_auto"] is True
    base = build_baseline(tmp_path / "f", tmp_path / "b")
    assert base["build"]["baseline"] is True
    assert base["build"]["fold"] == flexor["build"]["fold"]
    assert [(l["pe"], l["simd"]) for l in base["layers"]] == \
        [(l["pe"], l["simd"]) for l in flexor["layers"]]
    assert base["rom_bits"] > flexor["rom_bits"]


def test_fold_to_a_device_is_the_fastest_that_fits(tmp_path):
    """--target picks the fastest folding whose estimate fits the device; a smaller budget
    gives a slower build that fits it, and one nothing fits is refused naming the resource,
    before any file is written."""
    from flexor_hw.synthetic import random_graph
    pkg = random_graph((1, 12, 12), "c8k3p1,mp2,c16k3p1,mp2,fc32,fc10", q=1, n_in=4,
                       n_out=10, seed=3, calibration=4)
    save(pkg, tmp_path / "g.flexor.npz")
    big = build(tmp_path / "g.flexor.npz", tmp_path / "big", target="ecp5-25k", quiet=True)
    assert big["build"]["target"] == "ecp5-25k"
    assert big["estimate"]["luts"] <= MARGIN["luts"] * 24288 and big["estimate"]["brams"] <= 56
    from flexor_hw.hw.fold import fold
    from flexor_hw.package import load
    narrowest = fold(plan_hardware(load(tmp_path / "g.flexor.npz")), target=10 ** 15)
    luts = int((narrowest.estimate()["luts"] + big["estimate"]["luts"]) / 2 / MARGIN["luts"])
    # (no block RAMs either: with them the fold could trade LUTs for block RAMs at the rate)
    small = build(tmp_path / "g.flexor.npz", tmp_path / "small",
                  budget={"luts": luts, "brams": 0}, quiet=True)
    assert small["estimate"]["luts"] <= MARGIN["luts"] * luts
    assert small["cycles_per_inference"] > big["cycles_per_inference"]
    with pytest.raises(BuildError, match=r"^'random' does not fit the budget even at the "
                                         r"narrowest folding: LUT4 estimated [\d,]+, the "
                                         rf"budget has 500 \(of which {MARGIN['luts']:.0%} "
                                         r"usable\)$"):
        build(tmp_path / "g.flexor.npz", tmp_path / "never", budget={"luts": 500}, quiet=True)
    assert not (tmp_path / "never").exists()


def test_memories_leave_block_ram_where_block_rams_run_out(tmp_path):
    """A budget without block RAMs: the fold pass puts the weight ROM in logic (and says so
    in the manifest), the emitted ROM asks for logic, and the estimate counts LUTs for it;
    with block RAMs to spare the same ROM stays in block RAM."""
    from flexor_hw.synthetic import random_package
    pkg = random_package([256, 64, 10], n_in=4, n_out=10, q=1, n_tap=2, seed=9, name="mem")
    save(pkg, tmp_path / "m.flexor.npz")
    roomy = build(tmp_path / "m.flexor.npz", tmp_path / "roomy", target="ecp5-25k",
                  quiet=True)
    fc1 = roomy["layers"][0]
    assert fc1["rom_bits"] > 4096 and not fc1["rom_in_logic"]
    assert roomy["nodes"][1]["estimate"]["brams"] >= 1
    tight = build(tmp_path / "m.flexor.npz", tmp_path / "tight",
                  budget={"luts": 24288, "ffs": 24288, "brams": 0}, quiet=True)
    assert tight["layers"][0]["rom_in_logic"] and tight["estimate"]["brams"] == 0
    v = (tmp_path / "tight" / tight["verilog"]).read_text()
    assert "flexor_rom_logic #(" in v


def test_a_small_rom_goes_to_block_ram_where_luts_are_short(tmp_path):
    """A FleXOR ROM small enough to be logic by default (at most 4 Kbit) goes to block RAM
    when LUTs are what the budget is short of: the manifest says so, the estimate counts the
    block, the emitted ROM asks for block RAM, and the design runs exact on Icarus; without
    block RAMs the same ROM is logic."""
    from flexor_hw.synthetic import random_package
    pkg = random_package([200, 20, 10], n_in=8, n_out=10, q=1, n_tap=2, seed=9, name="small")
    save(pkg, tmp_path / "s.flexor.npz")
    short = build(tmp_path / "s.flexor.npz", tmp_path / "short",
                  budget={"luts": 3000, "ffs": 24288, "brams": 30}, quiet=True)
    fc1 = short["layers"][0]
    assert 0 < fc1["rom_bits"] <= 4096 and not fc1["rom_in_logic"]
    node = next(n for n in short["nodes"] if n["name"] == fc1["name"])
    assert node["memories"][0]["kind"] == "weights" and node["memories"][0]["block_rams"] == 1
    v = (tmp_path / "short" / short["verilog"]).read_text()
    assert "flexor_rom #(" in v
    from flexor_hw.verify import verify
    report = verify(tmp_path / "short", vectors=4, seed=2, quiet=True)
    assert report["mismatches"] == 0
    none = build(tmp_path / "s.flexor.npz", tmp_path / "none",
                 budget={"luts": 24288, "ffs": 24288, "brams": 0}, quiet=True)
    assert all(layer["rom_in_logic"] for layer in none["layers"])
    assert none["estimate"]["brams"] == 0


def test_a_budget_where_lut_and_block_ram_trade_is_folded_not_refused(monkeypatch):
    """The shipped LeNet-5 under 33 % of the ECP5-25k's LUTs: the narrowest folding by LUTs
    needs 93 block RAMs, the one reweighing finds by block RAMs 32,890 LUT4, and foldings
    between fit. The pass tries the weight grid and returns one that fits. Under 55 % the
    grid gives a faster folding than reweighing alone. The units chosen together
    (:func:`~flexor_hw.hw.fold._knapsack`) find the trade without the grid; without both,
    33 % is refused. Under 32 % nothing fits, and the refusal says what each end of the
    trade between LUTs and block RAMs runs out of."""
    from flexor_hw.hw import fold as F
    from flexor_hw.package import load
    pkg = load(os.path.join(os.path.dirname(__file__), "..", "examples", "mnist",
                            "lenet5.flexor.npz"))

    def share(s):
        return {"luts": int(24288 * s), "ffs": int(24288 * s)}

    cycles = {}
    for s in (0.33, 0.55):
        graph = plan_hardware(pkg, target="ecp5-25k", budget=share(s), argmax=True)
        est = graph.estimate()
        assert est["luts"] <= F.MARGIN["luts"] * share(s)["luts"] and est["brams"] <= 56
        cycles[s] = graph.cycles_per_image()
    # under 32 % nothing fits: the refusal names both ends of the trade
    with pytest.raises(BuildError, match=r"^'lenet5' does not fit ecp5-25k with the budget at "
                                         r"any folding: the narrowest needs [\d,]+ block RAMs, "
                                         r"ecp5-25k with the budget has 56; the one with the "
                                         r"fewest block RAMs \([\d,]+\) has LUT4 estimated "
                                         r"[\d,]+, ecp5-25k with the budget has 7,529 \(of "
                                         r"which 65% usable\)$"):
        plan_hardware(pkg, target="ecp5-25k", budget=share(0.31), argmax=True)
    monkeypatch.setattr(F, "WEIGHT_GRID", ())
    # the units chosen together (the knapsack) find the trade without the grid
    for s in (0.33, 0.55):
        assert plan_hardware(pkg, target="ecp5-25k", budget=share(s),
                             argmax=True).cycles_per_image() <= cycles[s]
    monkeypatch.setattr(F, "_knapsack", lambda graph, target, budget: None)
    with pytest.raises(BuildError, match="does not fit ecp5-25k with the budget at any"):
        plan_hardware(pkg, target="ecp5-25k", budget=share(0.33), argmax=True)
    reweighed = plan_hardware(pkg, target="ecp5-25k", budget=share(0.55), argmax=True)
    assert cycles[0.55] < reweighed.cycles_per_image()


def test_lut_fill_lets_a_folding_take_more_of_the_device():
    """``--budget lut_fill=P``: the share of the LUTs a folding may take, in place of the
    device's (the ECP5-25k's 68 %). The shipped LeNet-5 on the ECP5-25k folds slower within
    50 % and stays within it, and no faster with 85 % (no faster folding fits the block
    RAMs), where it keeps the device's share's folding: a wider share buys rate only (the
    search at 85 % alone took 19,943 LUT4 for it). A budget above the target's own counts is
    refused, naming both."""
    from flexor_hw.hw.fold import parse_budget
    from flexor_hw.package import load
    from flexor_hw.synth import TARGETS
    pkg = load(os.path.join(os.path.dirname(__file__), "..", "examples", "mnist",
                            "lenet5.flexor.npz"))
    usual = plan_hardware(pkg, target="ecp5-25k", argmax=True)
    assert usual.estimate()["luts"] <= TARGETS["ecp5-25k"]["lut_margin"] * 24288
    budget = parse_budget("lut_fill=50")
    assert budget == {"lut_margin": 0.5}
    less = plan_hardware(pkg, target="ecp5-25k", budget=budget, argmax=True)
    assert less.cycles_per_image() > usual.cycles_per_image()
    assert less.estimate()["luts"] <= 0.5 * 24288 < usual.estimate()["luts"]
    fuller = plan_hardware(pkg, target="ecp5-25k", budget=parse_budget("lut_fill=85"),
                           argmax=True)
    assert fuller.cycles_per_image() == usual.cycles_per_image()
    assert fuller.estimate() == usual.estimate()
    with pytest.raises(BuildError, match=r"^--budget luts=30000 is more than ecp5-25k has "
                                         r"\(24,288 LUT4\); to let a folding fill more of "
                                         r"its LUTs, give lut_fill=P \(a percentage\)$"):
        plan_hardware(pkg, target="ecp5-25k", budget={"luts": 30000}, argmax=True)
    with pytest.raises(BuildError, match=r"more than ecp5-25k has \(56 block RAMs\)"):
        plan_hardware(pkg, target="ecp5-25k", budget={"brams": 57}, argmax=True)


def _residual_cnn():
    from flexor_hw.synthetic import random_graph
    return random_graph((3, 16, 16), "c16k3p1,res16,res16,gap,fc10", q=1, n_in=6, n_out=10,
                        seed=1, calibration=4, name="res")


def test_a_block_ram_budget_holds_with_the_skip_fifos_counted():
    """The skip FIFOs are sized as the pass folds (their size turns on the windows chosen),
    so a block RAM budget holds for the design as built, FIFOs included, or the build is
    refused naming block RAMs (sized after folding, this residual CNN was built at 6 block
    RAMs under a budget of 4 and at 16 under 12)."""
    res = _residual_cnn()
    free = plan_hardware(res, target="ecp5-25k")
    forks = [st for st in free.stages if st.kind == "fork"]
    assert forks and all(st.estimate()["brams"] >= 1 for st in forks)
    for brams in (3, 4, 5, 12, 15):
        try:
            graph = plan_hardware(res, target="ecp5-25k", budget={"brams": brams})
        except BuildError as e:
            assert "block RAMs" in str(e) and brams < 6
            continue
        assert graph.estimate()["brams"] <= brams
        assert [st.depth for st in graph.stages if st.kind == "fork"] == \
            [st.depth for st in size_fifos(graph.stages) if st.kind == "fork"]


def test_a_refusal_says_how_far_each_resource_is_short():
    """A design that fits no folding is refused with the resource it runs out of at the
    folding that takes the fewest of it, and what else that folding runs out of; or, where
    the folding with the fewest of it runs out of another resource, both ends of the trade."""
    res = _residual_cnn()

    def refusal(budget, pattern):
        with pytest.raises(BuildError) as e:
            plan_hardware(res, target="ecp5-25k", budget=budget)
        m = re.fullmatch(r"'res' does not fit ecp5-25k with the budget " + pattern, str(e.value))
        assert m, str(e.value)
        return [int(g.replace(",", "")) for g in m.groups()]

    fewest, brams = refusal({"luts": 4000, "brams": 3},
                            r"even at the narrowest folding: LUT4 estimated ([\d,]+), ecp5-25k "
                            r"with the budget has 4,000 \(of which 65% usable\); that folding "
                            r"also needs ([\d,]+) block RAMs \(3 usable\)")
    assert fewest > 0.65 * 4000 and brams > 3
    narrowest, least = refusal({"luts": 11000, "brams": 5},
                               r"at any folding: the narrowest needs ([\d,]+) LUT4, ecp5-25k "
                               r"with the budget has 11,000 \(of which 65% usable\); the one "
                               r"with the fewest LUT4 \(([\d,]+)\) has block RAMs estimated "
                               r"[\d,]+, ecp5-25k with the budget has 5")
    assert least == fewest <= 0.65 * 11000 < narrowest


def test_products_go_into_logic_where_the_dsps_run_out(tmp_path):
    """``--budget dsps=N``: while the multipliers outnumber N, stages build their products
    in logic (units' requantizers, residual adds', global pools'; the fewest LUT4 per DSP
    freed first, and none moved that the budget does not need); the Verilog instantiates
    exactly the estimated multipliers, and builds with none run exact on Icarus under
    stalls. Without a device nothing moves."""
    from flexor_hw.hw.fold import multipliers_to_logic
    from flexor_hw.synthetic import random_graph
    from flexor_hw.verify import verify
    mlp = random_package([64, 32, 16, 10], n_in=6, n_out=10, q=2, seed=2, name="mlp3")
    res = random_graph((3, 8, 8), "c8k3p1,res8,gap,fc10", q=1, n_in=6, n_out=10, seed=1,
                       calibration=4, name="res")
    for pkg in (mlp, res):
        save(pkg, tmp_path / f"{pkg.name}.flexor.npz")
        free = plan_hardware(pkg, target="ecp5-25k")
        total = free.estimate()["dsps"]
        assert total > 2
        for dsps in (0, 2, total - 1):
            graph = plan_hardware(pkg, target="ecp5-25k", budget={"dsps": dsps})
            est = graph.estimate()
            assert est["dsps"] <= dsps
            moved = [k for k, st in enumerate(graph.stages)
                     if getattr(st, "lut_multipliers", False)]
            assert moved and all(graph.stages[k].estimate()["dsps"] == 0 for k in moved)
            # the products in logic cost LUT4 (the same folding on DSPs takes fewer)
            on_dsps = [replace(st, lut_multipliers=False) if k in moved else st
                       for k, st in enumerate(graph.stages)]
            assert est["luts"] > replace(graph, stages=on_dsps).estimate()["luts"]
            for k in moved:         # each move needed: back on DSPs, the budget is exceeded
                back = list(graph.stages)
                back[k] = replace(back[k], lut_multipliers=False)
                assert replace(graph, stages=back).estimate()["dsps"] > dsps
            assert multipliers_to_logic(graph, {"dsps": dsps}) is graph
            out = tmp_path / f"{pkg.name}{dsps}"
            manifest = build(tmp_path / f"{pkg.name}.flexor.npz", out, target="ecp5-25k",
                             budget={"dsps": dsps}, quiet=True)
            assert manifest["estimate"]["dsps"] == est["dsps"]
            assert [node.get("multipliers_in_logic") for node in manifest["nodes"]] == \
                [getattr(st, "lut_multipliers", None) if st.kind in ("mvau", "add", "gap")
                 else None for st in graph.stages]
            verilog = (out / manifest["verilog"]).read_text()
            assert len(re.findall(r"^\s*flexor_mul #\(", verilog, re.MULTILINE)) == est["dsps"]
        report = verify(tmp_path / f"{pkg.name}0", vectors=4, seed=3,
                        workdir=tmp_path / f"v{pkg.name}", quiet=True)
        assert report["mismatches"] == 0 and report["vectors"] == 4
    # without a device no multiplier moves, however many (an int8 fc alone takes 8 here);
    # with one, an explicit folding's move as the device needs
    wide = random_graph((3, 8, 8), "ic16k3p1,res16,res16,res16,gap,ifc10", q=1, n_in=6,
                        n_out=10, seed=1, calibration=4, name="wide")
    assert plan_hardware(wide).estimate()["dsps"] > 28
    def in_logic(graph):
        return [st.name for st in graph.stages if getattr(st, "lut_multipliers", False)]
    assert in_logic(plan_hardware(wide, fold="conv1=1x3")) == []
    moved = plan_hardware(wide, fold="conv1=1x3", target="ecp5-25k")
    assert moved.estimate()["dsps"] <= 28 and in_logic(moved)


def test_focused_budget_weighs_only_what_runs_out():
    """After reweighing, the fold's last try at a rate weighs only the resources the design
    needs beyond the device (a resource that is not short, weighed on, kept ResNet-32 on
    the ECP5-85k a rate slower than it fits)."""
    from flexor_hw.hw.fold import MARGIN, focused, fold
    from flexor_hw.synthetic import random_graph
    from flexor_hw.hw.fold import match_widths
    pkg = random_graph((1, 12, 12), "c8k3p1,mp2,c16k3p1,mp2,fc32,fc10", q=1, n_in=4,
                       n_out=10, seed=3, calibration=4)
    graph = fold(plan_hardware(pkg), target=10 ** 15)
    est = match_widths(graph).estimate()
    luts_short = {"luts": int(est["luts"] / MARGIN["luts"]) - 1, "ffs": 10 ** 6,
                  "brams": 10 ** 3, "dsps": 100}
    assert focused(graph, luts_short)["weights"] == (1.0, 0.01, 0.01)
    ffs_short = dict(luts_short, luts=10 ** 6, ffs=int(est["ffs"] / MARGIN["ffs"]) - 1)
    assert focused(graph, ffs_short)["weights"] == (0.01, 1.0, 0.01)
    roomy = dict(luts_short, luts=10 ** 6)
    assert focused(graph, roomy)["weights"] == (0.01, 0.01, 0.01)
