"""Block RAM output registers on the ECP5: a netlist pass between Yosys and nextpnr.

Yosys 0.70 maps every ECP5 block RAM with its output register off (``REGMODE`` ``NOREG``):
the data leave the DP16KD 5.6 ns after the clock and cross the fabric to the flip-flops the
design reads them into. The block has a register of its own at its outputs (``OUTREG``,
a cycle of latency, a clock-to-out a fraction of the data's in nextpnr's timing model), but Yosys has no rule
to move a flip-flop into it. The gateware registers every block RAM read before any logic
(a weight ROM's row, a ROM word, a vector word), so that register usually is such a
flip-flop, fed by the data pin alone. :func:`absorb_output_registers` finds those and moves
them into the blocks: the flip-flops go, the port's ``REGMODE`` becomes ``OUTREG``, and the
data pin drives what the flip-flop's output drove. The circuit is the same cycle for cycle.

A port is moved only when every data pin it uses drives exactly one flip-flop's ``DI`` and
nothing else, those flip-flops are clocked by the port's clock on its rising edge, have no
reset (``LSR`` a constant 0) and share one clock enable (or none), which becomes the port's
output clock enable ``OCE``; and the port's own reset is a constant 0. A block in the
pseudo dual-port mode Yosys maps 36-bit memories to (port A writes, port B reads, the word
leaves through both ports' pins) is one read port: both ports' registers are switched on,
on the read clock (as Lattice's tools set a ``PDPW16KD`` with ``REGMODE`` ``OUTREG``).
"""

__all__ = ["absorb_output_registers", "absorb_in_file"]

import json


def _const(bits):
    return all(isinstance(b, str) for b in bits)


def _sinks(module):
    """net bit → [(cell name, port)] of every cell input and module output reading it."""
    sinks = {}
    for name, cell in module["cells"].items():
        dirs = cell.get("port_directions", {})
        for port, bits in cell["connections"].items():
            if dirs.get(port, "input") == "output":
                continue
            for b in bits:
                if not isinstance(b, str):
                    sinks.setdefault(b, []).append((name, port))
    for pname, port in module.get("ports", {}).items():
        if port["direction"] != "input":
            for b in port["bits"]:
                if not isinstance(b, str):
                    sinks.setdefault(b, []).append((None, pname))
    return sinks


def next_free_bit(module):
    """The first net bit above every bit a cell or a net name of ``module`` uses (a pass's
    new nets count on from it)."""
    used = [b for c in module.get("cells", {}).values() for bits in c["connections"].values()
            for b in bits if not isinstance(b, str)]
    used += [b for n in module.get("netnames", {}).values() for b in n["bits"]
             if not isinstance(b, str)]
    return max(used, default=1) + 1


def param_text(value):
    """A cell's string parameter as Yosys's JSON holds it (a trailing space marks a string
    that reads like bits: ``"1 "``), without the mark; ``""`` where it is unset."""
    return str(value or "").strip()


def _width(param):
    return int(param, 2) if set(str(param)) <= {"0", "1"} else int(param)


def _flops(module, sinks, cell, pins, clk):
    """The flip-flops the data ``pins`` of DP16KD ``cell`` drive, as ``([(pin, flip-flop
    name)], enable)`` (``enable`` None: always enabled), or None unless every pin in use
    drives one flip-flop's ``DI`` alone, clocked by ``clk``, without reset, all with one
    clock enable."""
    conn, cells = cell["connections"], module["cells"]
    flops, enables = [], set()
    for pin in pins:
        bits = conn.get(pin)
        if not bits or _const(bits):
            continue
        readers = sinks.get(bits[0], [])
        if not readers:
            continue
        if len(readers) != 1 or readers[0][0] is None or readers[0][1] != "DI":
            return None
        name = readers[0][0]
        ff = cells[name]
        p, c = ff["parameters"], ff["connections"]
        if ff["type"] != "TRELLIS_FF" or c.get("CLK") != clk or \
                p.get("CLKMUX", "CLK") != "CLK" or c.get("LSR", ["0"]) != ["0"] or \
                p.get("LSRMUX", "LSR") != "LSR":
            return None
        cemux = str(p.get("CEMUX", "1")).strip()
        if cemux == "1" or c.get("CE", ["1"]) == ["1"]:
            enables.add(None)
        elif cemux == "CE" and not _const(c["CE"]):
            enables.add(tuple(c["CE"]))
        else:
            return None
        flops.append((pin, name))
    if not flops or len(enables) != 1:
        return None
    return flops, enables.pop()


def _quiet_port(cell, side):
    """Port ``side``'s output register is off, its clock not inverted, its reset a constant
    0 and its output clock enable a constant."""
    conn, params = cell["connections"], cell["parameters"]
    return (params.get(f"REGMODE_{side}", "NOREG") == "NOREG"
            and params.get(f"CLK{side}MUX", f"CLK{side}") != "INV"
            and conn.get(f"RST{side}", ["0"]) == ["0"]
            and _const(conn.get(f"OCE{side}", ["1"])))


def _reads(cell):
    """``(sides, pins, clock)`` of each read port of a DP16KD whose data may be registered
    in the block: a true dual-port block's ports apart; a pseudo dual-port one (a width of
    36: port A writes, port B reads, the word on both ports' pins) as one, on port B's clock,
    with port A's clock the same or unused (no write: its clock enable a constant 0)."""
    conn, params = cell["connections"], cell["parameters"]
    pins = {s: [f"DO{s}{i}" for i in range(18)] for s in "AB"}
    clocks = {s: conn.get(f"CLK{s}", ["0"]) for s in "AB"}
    if max(_width(params.get("DATA_WIDTH_A", "18")),
           _width(params.get("DATA_WIDTH_B", "18"))) <= 18:
        return [((s,), pins[s], clocks[s]) for s in "AB"
                if not _const(clocks[s]) and _quiet_port(cell, s)]
    if _const(clocks["B"]) or not (_quiet_port(cell, "A") and _quiet_port(cell, "B")):
        return []
    if clocks["A"] != clocks["B"] and not (_const(clocks["A"]) and
                                           conn.get("CEA", ["1"]) == ["0"]):
        return []
    return [(("A", "B"), pins["A"] + pins["B"], clocks["B"])]


def absorb_output_registers(netlist):
    """Move the flip-flops that register ECP5 block RAM data into the blocks' output
    registers, in ``netlist`` (Yosys's JSON, as a dict; changed in place). Returns
    ``(ports, flops)``: the block RAM ports now registered and the flip-flops removed."""
    ports = flops_removed = 0
    for module in netlist.get("modules", {}).values():
        cells = module.get("cells", {})
        if not any(c["type"] == "DP16KD" for c in cells.values()):
            continue
        sinks = _sinks(module)
        for cell in list(cells.values()):
            if cell["type"] != "DP16KD":
                continue
            for sides, pins, clk in _reads(cell):
                found = _flops(module, sinks, cell, pins, clk)
                if found is None:
                    continue
                flops, enable = found
                for pin, name in flops:
                    cell["connections"][pin] = cells.pop(name)["connections"]["Q"]
                for side in sides:
                    cell["parameters"][f"REGMODE_{side}"] = "OUTREG"
                    cell["connections"][f"OCE{side}"] = \
                        ["1"] if enable is None else list(enable)
                    cell["connections"][f"CLK{side}"] = clk
                ports += 1
                flops_removed += len(flops)
    return ports, flops_removed


def absorb_in_file(path):
    """:func:`absorb_output_registers` on the Yosys JSON netlist at ``path``, rewritten in
    place when anything moved. Returns ``(ports, flops)``."""
    with open(path) as f:
        netlist = json.load(f)
    ports, flops = absorb_output_registers(netlist)
    if ports:
        with open(path, "w") as f:
            json.dump(netlist, f)
    return ports, flops
