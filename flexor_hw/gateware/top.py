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
    units : list of (str, callable)
        Submodule names and functions that make the units, in stream order (the units are
        made when the top is elaborated).
    skips : dict of str to str
        The add each fork's skip path goes to, by submodule name.
    in_shape, out_shape : Shape-castable
        Of the top's stream payloads: an element's shape (a width converter's beats are
        plain bits).
    """

    def __init__(self, units, skips=None, *, in_shape, out_shape):
        if not units:
            raise ValueError("A network needs at least one unit")
        self._units = list(units)
        self._skips = dict(skips or {})
        super().__init__({"i": In(stream.Signature(in_shape)),
                          "o": Out(stream.Signature(out_shape))})

    @property
    def names(self):
        return [name for name, _ in self._units]

    def elaborate(self, platform):
        m = Module()
        cur = self.i
        pending = {}
        by_name = {}
        for name, make in self._units:
            unit = by_name[name] = make()
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
