"""The units' resets on one global net on the ECP5: a netlist pass between Yosys and nextpnr.

A built design's top gives each unit a reset of its own, a register copying a group's copy
of ``rst`` (:class:`~flexor_hw.gateware.top.DataflowTop`, ``reset_tree``), so that no
routed net reaches every control register of the design: the harness's reset into all of
them was ResNet-20's longest placed path. On the ECP5 the eight flip-flops of a logic tile
share one reset net, so those copies, about a hundred nets of some 80 flip-flops each in
ResNet-32, partition the tiles: at 75 % of the ECP5-85k's flip-flops nextpnr's analytical
placer found no place for one of them (nextpnr#1062). Every unit's copy is ``rst`` two
cycles late, the same signal: :func:`join_unit_resets` drives the reset pins of the units'
flip-flops from one of them through a global clock buffer (DCCA), which nextpnr routes on
the global network to every tile. Logic that reads a copy (not as a flip-flop's reset) keeps
it. ``flexor-hw synth --global-reset`` runs it.
"""

import re

from .outreg import next_free_bit, param_text

__all__ = ["join_unit_resets", "UNIT_RESET"]

#: A unit's copy of the reset in the placed netlist (``rst_<unit>_copy``), not a group's
#: (``rst_g<k>``) or the top's own (``rst_top``, ``rst_top_2``).
UNIT_RESET = re.compile(r"^rst_(?!g\d+_copy\.|top_copy\.|top_2_copy\.)(.+)_copy\.q_TRELLIS_FF_Q$")


def _plain(cell):
    """A TRELLIS_FF that copies its input every cycle (no enable, no reset)."""
    p, c = cell["parameters"], cell["connections"]
    return (cell["type"] == "TRELLIS_FF" and param_text(p.get("CEMUX")) in ("", "1")
            and c.get("LSR", ["0"]) == ["0"])


def _two_cycles_before(cells, drivers, name):
    """The net flip-flop ``name`` copies two cycles late through plain registers, or None
    (``drivers``: net bit → the flip-flop driving it)."""
    first = cells[name]
    second = drivers.get(first["connections"]["DI"][0]) if _plain(first) else None
    if second is None or not _plain(second):
        return None
    return second["connections"]["DI"][0]


def join_unit_resets(netlist):
    """In the Yosys JSON ``netlist`` (a dict, changed in place): every TRELLIS_FF whose
    synchronous reset is a unit's copy of the design's reset (:data:`UNIT_RESET`) takes its
    reset from one DCCA driven by one of those copies instead, where every copy is one
    signal two plain registers late (the reset tree's two levels). Returns the flip-flops
    moved (0, and nothing changed, where the design has no such copies)."""
    moved = 0
    for module in netlist.get("modules", {}).values():
        cells = module.get("cells", {})
        copies = sorted(n for n, c in cells.items()
                        if c["type"] == "TRELLIS_FF" and UNIT_RESET.match(n))
        if not copies:
            continue
        drivers = {c["connections"]["Q"][0]: c for c in cells.values()
                   if c["type"] == "TRELLIS_FF"}
        sources = {_two_cycles_before(cells, drivers, n) for n in copies}
        if len(sources) != 1 or None in sources:
            continue        # not one signal two plain registers late: nothing is joined
        nets = {cells[n]["connections"]["Q"][0] for n in copies}
        users = [c for c in cells.values() if c["type"] == "TRELLIS_FF"
                 and c["connections"].get("LSR", [None])[0] in nets
                 and param_text(c["parameters"].get("SRMODE")) in ("", "LSR_OVER_CE")]
        if not users:
            continue
        net = next_free_bit(module)
        name = "unit_resets_global"
        cells[f"{name}$dcca"] = {
            "hide_name": 0, "type": "DCCA", "parameters": {}, "attributes": {},
            "port_directions": {"CLKI": "input", "CE": "input", "CLKO": "output"},
            "connections": {"CLKI": list(cells[copies[0]]["connections"]["Q"]), "CE": ["1"],
                            "CLKO": [net]}}
        module.setdefault("netnames", {})[name] = {"hide_name": 0, "bits": [net],
                                                  "attributes": {}}
        for c in users:
            c["connections"]["LSR"] = [net]
        moved += len(users)
    return moved
