"""Carry chains' unused carry-outs on the ECP5: a netlist pass between Yosys and nextpnr.

Yosys maps an ECP5 adder, counter or compare to a chain of CCU2C cells and connects the last
cell's ``COUT`` to a wire of its own even where nothing reads it (an adder whose result is
as wide as the chain's sums). nextpnr 0.11 ends every chain whose last ``COUT`` is connected
at all with a feed-out: one more CCU2C, two LUT4 places of a slice, that drives nothing
(``split_carry_chain`` in its ``ecp5/pack.cc`` tests the net, not its readers). The matrix-
vector units' adder trees are hundreds of short chains: the shipped LeNet-5 packed 503 such
cells, 1,006 of its 15,845 LUT places (6 %). :func:`detach_unused_carry_outs` disconnects a
``COUT`` that no cell and no port reads, so nextpnr makes no feed-out for it. The circuit is
the same: only an output nobody reads is left unconnected. (The chains' feed-ins, a CCU2C
that makes the constant carry-in of each chain's first cell, are :mod:`flexor_hw.carryin`'s.)
``flexor-hw synth --detach-carry-outs`` runs it: a smaller packing is not a faster one (one
netlist each: the shipped LeNet-5 at 102.4 MHz on average over three seeds with it, 104.3
without; ResNet-20 at 101.0 against 105.9 at one seed), so it serves designs the placer
cannot fit otherwise.
"""

from .outreg import _sinks

__all__ = ["detach_unused_carry_outs"]


def detach_unused_carry_outs(netlist):
    """Disconnect (``"x"``) the ``COUT`` of every CCU2C in the Yosys JSON ``netlist`` (a
    dict, changed in place) that nothing reads; returns how many."""
    detached = 0
    for module in netlist.get("modules", {}).values():
        cells = module.get("cells", {})
        if not any(c["type"] == "CCU2C" for c in cells.values()):
            continue
        read = _sinks(module)          # net bit → the cell inputs and ports reading it
        for cell in cells.values():
            if cell["type"] != "CCU2C":
                continue
            bits = cell["connections"].get("COUT")
            if bits and len(bits) == 1 and not isinstance(bits[0], str) and \
                    bits[0] not in read:
                cell["connections"]["COUT"] = ["x"]
                detached += 1
    return detached
