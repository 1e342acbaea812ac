"""The one top module: stage units chained by streams, residual skip paths wired across."""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["DataflowTop"]


class DataflowTop(wiring.Component):
    """Units in stream order, each with streams ``i`` and ``o``: each unit's ``o`` feeds the
    next one's ``i``. A unit with a ``skip`` output (a residual fork) feeds the ``b`` input
    of the unit named for it in ``skips`` (its residual add).

    Parameters
    ----------
    units : list of (str, wiring.Component)
        Submodule names and units, in stream order.
    skips : dict of str to str
        The add each fork's skip path goes to, by submodule name.
    in_shape, out_shape : Shape-castable, optional
        Of the top's stream payloads (default: the first unit's input and the last unit's
        output): an element's shape, where a width converter's beats are plain bits.
    """

    def __init__(self, units, skips=None, *, in_shape=None, out_shape=None):
        if not units:
            raise ValueError("A network needs at least one unit")
        self._units = list(units)
        self._skips = dict(skips or {})
        first, last = self._units[0][1], self._units[-1][1]
        in_sig = in_shape if in_shape is not None else \
            first.signature.members["i"].signature.members["payload"].shape
        out_sig = out_shape if out_shape is not None else \
            last.signature.members["o"].signature.members["payload"].shape
        super().__init__({"i": In(stream.Signature(in_sig)),
                          "o": Out(stream.Signature(out_sig))})

    @property
    def units(self):
        return self._units

    def elaborate(self, platform):
        m = Module()
        cur = self.i
        pending = {}
        by_name = dict(self._units)
        for name, unit in self._units:
            m.submodules[name] = unit
            first = unit.a if hasattr(unit, "a") and not hasattr(unit, "i") else unit.i
            _join(m, cur, first)
            cur = unit.o
            if name in self._skips:
                pending[self._skips[name]] = unit.skip
        for add, skip in pending.items():
            _join(m, skip, by_name[add].b)
        _join(m, cur, self.o)
        return m


def _join(m, src, dst):
    """Connect stream ``src`` (an output) to ``dst`` (an input); payload shapes may differ
    (a ReLU output is unsigned, the next input format signed): values always fit."""
    m.d.comb += [dst.payload.eq(src.payload), dst.valid.eq(src.valid), src.ready.eq(dst.ready)]
