"""Flip-flops with a control set of their own on the ECP5: a netlist pass between Yosys and
nextpnr.

The two flip-flops of an ECP5 slice share its clock, its clock enable and its local
set/reset (with their polarities and the reset's mode): a flip-flop may go only where the
slice's other flip-flop is free or has the same. Yosys folds a flag's logic into those pins
where it can: a ``full`` flag set by one condition and cleared by another becomes a
TRELLIS_FF whose data input is the constant 1, its enable one net and its reset another,
both made for it alone. ResNet-32 folded for the ECP5-85k at 73,729 cycles per image has
516 such flip-flops (the windows' ``full``, ``done`` and ``ahead`` flags, the FIFOs'
``valid``): each needs a slice with both flip-flop places free, and at 75 % of the device's
flip-flops nextpnr's analytical placer found none for one of them at three seeds in a row
(nextpnr#1062). :func:`merge_lone_control_sets` moves the enable and reset of every
flip-flop whose control set is its own into a LUT4 in front of it (``Q' = R ? reset value :
(E ? D : Q)``), so that it shares the control set of the many flip-flops with neither: one
LUT4 more each, the same circuit. ``flexor-hw synth --merge-lone-flip-flops`` runs it.
"""

import collections

from .outreg import _const, next_free_bit, param_text

__all__ = ["merge_lone_control_sets"]


def _key(cell):
    p, c = cell["parameters"], cell["connections"]
    return (tuple(c.get("CLK", ())), p.get("CLKMUX"), tuple(c.get("LSR", ())), p.get("LSRMUX"),
            tuple(c.get("CE", ())), p.get("CEMUX"), p.get("SRMODE"), p.get("GSR"))


def merge_lone_control_sets(netlist):
    """Give every TRELLIS_FF of the Yosys JSON ``netlist`` (a dict, changed in place) whose
    clock, enable and reset no other flip-flop shares (a synchronous reset or none) the
    control set of the flip-flops without enable or reset, its enable and reset computed in
    a LUT4 before its data input instead; returns how many."""
    merged = 0
    for module in netlist.get("modules", {}).values():
        cells = module.get("cells", {})
        flops = {n: c for n, c in cells.items() if c["type"] == "TRELLIS_FF"}
        if not flops:
            continue
        count = collections.Counter(_key(c) for c in flops.values())
        next_bit = next_free_bit(module)
        for name, ff in sorted(flops.items()):
            p, c = ff["parameters"], ff["connections"]
            enable, reset = c.get("CE", ["1"]), c.get("LSR", ["0"])
            if count[_key(ff)] != 1 or _const(enable) and _const(reset):
                continue
            if param_text(p.get("SRMODE")) not in ("", "LSR_OVER_CE") or \
                    param_text(p.get("CLKMUX")) not in ("", "CLK"):
                continue            # an asynchronous reset stays on its pin
            ce_mux = param_text(p.get("CEMUX")) or "CE"
            lsr_mux = param_text(p.get("LSRMUX")) or "LSR"
            value = 1 if param_text(p.get("REGSET")) == "SET" else 0
            init = []
            for i in range(16):         # A = D, B = enable, C = reset, D = Q
                d, e, r, q = i & 1, (i >> 1) & 1, (i >> 2) & 1, (i >> 3) & 1
                e = {"CE": e, "INV": 1 - e, "1": 1, "0": 0}.get(ce_mux, e)
                r = {"LSR": r, "INV": 1 - r, "0": 0}.get(lsr_mux, r)
                init.append(value if r else d if e else q)
            z = next_bit
            next_bit += 1
            cells[f"{name}$merged_control"] = {
                "hide_name": 1, "type": "LUT4",
                "parameters": {"INIT": "".join(str(b) for b in reversed(init))},
                "attributes": {},
                "port_directions": {k: "input" for k in "ABCD"} | {"Z": "output"},
                "connections": {"A": list(c["DI"]), "B": list(enable), "C": list(reset),
                                "D": list(c["Q"]), "Z": [z]}}
            module.setdefault("netnames", {})[f"{name}$merged_control_Z"] = {
                "hide_name": 1, "bits": [z], "attributes": {}}
            c["DI"] = [z]
            c.pop("CE", None)
            ff.get("port_directions", {}).pop("CE", None)
            c["LSR"] = ["0"]
            p["CEMUX"], p["LSRMUX"] = "1 ", "LSR"
            p.pop("SRMODE", None)
            merged += 1
    return merged
