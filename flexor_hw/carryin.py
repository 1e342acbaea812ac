"""Carry chains' first cells on the ECP5: a netlist pass between Yosys and nextpnr.

Yosys starts every ECP5 carry chain (an adder, a counter, a compare) with a CCU2C whose carry
input ``CIN`` is a constant. A slice's carry input has no constant of its own: it is the
carry out of the slice before it in the column, whatever that computes. So nextpnr 0.11
puts a feed-in before every such chain, one more CCU2C (two LUT4 places of a slice) whose
first half blocks the incoming carry (its LUT4 reads 0) and makes the constant with its LUT2
(``make_carry_feed_in`` in its ``ecp5/pack.cc``), and whose second half only passes it on.
The matrix-vector units' adder trees are thousands of short chains: ResNet-32 folded for the
ECP5-85k at 73,729 cycles per image has 2,880, and their feed-ins take 5,750 of its LUT
places (7 % of the device).

:func:`absorb_carry_feed_ins` builds that block into the chain's own first cell instead,
and disconnects its ``CIN``, so nextpnr makes no feed-in:

* where the chain's last half is unused (its sum and the chain's carry-out read by nothing,
  as in an odd-width sum), every half moves one place up the chain and the freed first half
  makes the constant carry: the chain keeps its cell count and loses the feed-in;
* elsewhere, where the first half's ``C0`` and ``D0`` are constants (Yosys's adders and
  subtracters), the first half blocks the incoming carry and makes the carry out of bit 0
  from ``A0`` and ``B0`` with its LUT2; bit 0's sum, where something reads it, comes from a
  new LUT4: one LUT4 place for the feed-in's two.

The circuit is the same (a test has Yosys prove it on synthesized adders and counters).
``flexor-hw synth --absorb-carry-feed-ins`` runs it. Fewer LUT places are not a routable
design: on that ResNet-32 netlist router2 came no nearer a legal routing with it than
without (docs/performance.md), so it is an option for designs that do not pack.
"""

from .outreg import _sinks, _width, next_free_bit, param_text

__all__ = ["absorb_carry_feed_ins"]

_PINS = ("A", "B", "C", "D")


def _bits(value):
    """A 16-bit LUT INIT parameter (Yosys's JSON: a string of bits, most significant first)
    as a list, entry ``i`` at index ``i``."""
    v = _width(value)
    return [(v >> i) & 1 for i in range(16)]


def _init(entries):
    return "".join(str(b) for b in reversed(entries))


def _half(cell, h):
    """Half ``h`` (0 or 1) of a CCU2C: its LUT, carry injection, inputs and sum."""
    p, c = cell["parameters"], cell["connections"]
    return {"init": _bits(p.get(f"INIT{h}", "0")),
            "inject": param_text(p.get(f"INJECT1_{h}")) or "YES",
            "pins": {x: list(c.get(f"{x}{h}", ["x"])) for x in _PINS},
            "sum": list(c.get(f"S{h}", ["x"]))}


def _set_half(cell, h, half):
    p, c = cell["parameters"], cell["connections"]
    p[f"INIT{h}"] = _init(half["init"])
    p[f"INJECT1_{h}"] = half["inject"]
    for x in _PINS:
        c[f"{x}{h}"] = list(half["pins"][x])
    c[f"S{h}"] = list(half["sum"])


def _source(k, sum_bit):
    """A half that blocks the carry coming in (its LUT4 reads entry 15, 0) and carries ``k``
    out (its LUT2, ``INIT[3:0]``); its sum (the incoming carry) on a net nothing reads."""
    return {"init": [k] * 4 + [0] * 12, "inject": "NO",
            "pins": {x: ["1"] for x in _PINS}, "sum": [sum_bit]}


def _lut4(init, a, b, c, d):
    """The LUT4 entry of a half's inputs: ``init`` at index ``d·8 + c·4 + b·2 + a``."""
    return init[a | b << 1 | c << 2 | d << 3]


def _const_bit(bits):
    return bits[0] if len(bits) == 1 and bits[0] in ("0", "1") else None


def absorb_carry_feed_ins(netlist):
    """Start every CCU2C chain of the Yosys JSON ``netlist`` (a dict, changed in place) whose
    carry input is a constant without nextpnr's feed-in, where one of the two rewritings in
    the module's docstring applies; returns how many chains."""
    absorbed = 0
    for module in netlist.get("modules", {}).values():
        cells = module.get("cells", {})
        ccu = {n: c for n, c in cells.items() if c["type"] == "CCU2C"}
        if not ccu:
            continue
        read = _sinks(module)
        by_cin = {}
        for name, cell in ccu.items():
            cin = cell["connections"].get("CIN", ["x"])
            if len(cin) == 1 and not isinstance(cin[0], str):
                by_cin[cin[0]] = name

        def unread(bits):
            return all(isinstance(b, str) or b not in read for b in bits)

        next_bit = next_free_bit(module)
        for name in sorted(ccu):
            head = ccu[name]
            k = _const_bit(head["connections"].get("CIN", ["x"]))
            if k is None:
                continue
            k = int(k)
            chain = [head]
            while True:
                cout = chain[-1]["connections"].get("COUT", ["x"])
                nxt = by_cin.get(cout[0]) if len(cout) == 1 else None
                if nxt is None:
                    break
                chain.append(ccu[nxt])
            last = chain[-1]
            halves = [_half(cell, h) for cell in chain for h in (0, 1)]
            if unread(last["connections"].get("S1", ["x"])) and \
                    unread(last["connections"].get("COUT", ["x"])):
                # every half one place up; the last, unused, dropped
                halves = [_source(k, next_bit)] + halves[:-1]
                next_bit += 1
                for i, cell in enumerate(chain):
                    _set_half(cell, 0, halves[2 * i])
                    _set_half(cell, 1, halves[2 * i + 1])
            else:
                first = halves[0]
                c0, d0 = _const_bit(first["pins"]["C"]), _const_bit(first["pins"]["D"])
                if c0 is None or d0 is None or first["inject"] != "NO":
                    continue
                c0, d0 = int(c0), int(d0)
                init = first["init"]
                # bit 0 as it was: sum LUT4 ^ k, carry out LUT4 ? k : LUT2
                carry = [k if _lut4(init, a, b, c0, d0) else init[a | b << 1]
                         for b in (0, 1) for a in (0, 1)]
                total = [_lut4(init, a, b, c0, d0) ^ k for b in (0, 1) for a in (0, 1)]
                if not unread(first["sum"]):
                    z = next_bit
                    next_bit += 1
                    cells[f"{name}$carry_in_sum"] = {
                        "hide_name": 1, "type": "LUT4",
                        "parameters": {"INIT": _init(total * 4)},
                        "attributes": {},
                        "port_directions": {x: "input" for x in _PINS} | {"Z": "output"},
                        "connections": {"A": first["pins"]["A"], "B": first["pins"]["B"],
                                        "C": ["0"], "D": ["0"], "Z": first["sum"]}}
                _set_half(head, 0, {"init": carry + [0] * 12, "inject": "NO",
                                    "pins": {"A": first["pins"]["A"],
                                             "B": first["pins"]["B"],
                                             "C": ["1"], "D": ["1"]},
                                    "sum": [next_bit]})
                next_bit += 1
            head["connections"]["CIN"] = ["x"]
            absorbed += 1
    return absorbed
