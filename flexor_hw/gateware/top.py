"""The one top module: stage units chained by streams, residual skip paths wired across."""

from amaranth.hdl import ClockDomain, DomainRenamer, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .pipeline import SkidBuffer, copy_register

__all__ = ["DataflowTop", "RESET_GROUP", "PORT_OUT_LATENCY"]

#: Units whose reset copies share one copy of the top's ``rst`` (the reset tree's first
#: level): consecutive units in stream order, which the placer puts near each other.
RESET_GROUP = 8

#: Cycles the top's output register slice (``port_out``, a :class:`~.pipeline.SkidBuffer`
#: behind the last unit) adds to a network's latency.
PORT_OUT_LATENCY = 1


class DataflowTop(wiring.Component):
    """Units in stream order, each with streams ``i`` and ``o``: each unit's ``o`` feeds the
    next one's ``i``. A unit with a ``skip`` output (a residual fork) feeds the ``b`` input
    of the unit named for it in ``skips`` (its residual add). The last unit's ``o`` reaches
    the port ``o`` through a register slice (``port_out``, :data:`PORT_OUT_LATENCY`), so
    the consumer's ``ready`` reaches a few registers the placer can put by the consumer,
    not the last unit's enables (the harness's ``o.ready`` into the argmax's enables was
    among ResNet-20's longest placed paths on the ECP5-85k, 10.5 ns).

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
    reset_tree : bool
        Ports ``clk`` and ``rst`` of the top's own, and each unit's reset a register of its
        own (:func:`~.pipeline.copy_register`), so the reset net reaches one unit's control
        registers, not the whole design's (the registered reset of a harness or a board,
        driving every control register of ResNet-20 across an ECP5-85k, was its longest
        placed path: 14.1 ns of routing). The copies form a tree of two levels: ``rst``
        reaches a copy per group of :data:`RESET_GROUP` units in stream order, and each of
        those its units' copies (``rst`` into all of ResNet-20's 75 units' copies was its
        longest placed path in turn: 13.0 ns of routing). Each unit runs in a clock domain
        of its own on ``clk`` (the same signal) with its copy as its reset. Every unit
        leaves reset on the same edge, two cycles after ``rst`` falls; the top takes and
        gives no beat while ``rst`` or either of its own two copies is high (``i.ready`` and
        ``o.valid`` low), so to its ports the reset lasts those two cycles longer. Without
        it, the units run in the ``sync`` domain of whoever instantiates the top.
    emit : bool
        The reset copies as ``flexor_copy`` instances (Verilog), which Yosys keeps apart;
        else plain registers (Amaranth's simulator).
    """

    def __init__(self, units, skips=None, *, in_shape, out_shape, reset_tree=False,
                 emit=False):
        if not units:
            raise ValueError("A network needs at least one unit")
        self._units = list(units) + [("port_out", lambda: SkidBuffer(out_shape))]
        self._skips = dict(skips or {})
        self._tree, self._emit = reset_tree, emit
        ports = {"clk": In(1), "rst": In(1)} if reset_tree else {}
        super().__init__({**ports, "i": In(stream.Signature(in_shape)),
                          "o": Out(stream.Signature(out_shape))})

    @property
    def names(self):
        """The units' submodule names, in stream order (the port register last)."""
        return [name for name, _ in self._units]

    def elaborate(self, platform):
        m = Module()
        cur = self.i
        pending = {}
        by_name = {}
        if self._tree:
            # the reset's copies, in a domain of the top's own (whoever instantiates the
            # top may have a ``sync`` of theirs)
            m.domains.resets = top = ClockDomain("resets", reset_less=True, local=True)
            top.clk = self.clk

            def copy(value, name):
                return copy_register(m, value, name, emit=self._emit, domain="resets")
            # The ports: no beat in or out while ``rst`` is high or in the two cycles after
            # (``held``, with ``rst`` itself). The units' side of each port is gated by a
            # register (``gate``: the same but for the first cycle of ``rst``, a copy by each
            # end), so neither ``rst`` nor a gate of its copies reaches the first or last
            # unit (the harness's reset into the first window's input enables was ResNet-20's
            # longest placed path at a seed, 10.8 ns of routing). A beat the first unit takes
            # in that first cycle the port did not give (its ``ready`` is low), and one the
            # last unit gives then the port does not show: the reset clears both.
            held = Signal()
            top_1 = copy(self.rst, "rst_top")
            m.d.comb += held.eq(self.rst | top_1 | copy(top_1, "rst_top_2"))
            gate_in = copy(self.rst | top_1, "gate_in")
            gate_out = copy(self.rst | top_1, "gate_out")
            groups = [copy(self.rst, f"rst_g{k}")
                      for k in range(-(-len(self._units) // RESET_GROUP))]
            cur = stream.Signature(self.i.payload.shape()).flip().create(path=("i_held",))
            m.d.comb += [cur.payload.eq(self.i.payload), cur.valid.eq(self.i.valid & ~gate_in),
                         self.i.ready.eq(cur.ready & ~held)]
        for k, (name, make) in enumerate(self._units):
            unit = by_name[name] = make()
            if self._tree:
                domain = ClockDomain(f"d_{name}", local=True)
                domain.clk = self.clk
                domain.rst = copy(groups[k // RESET_GROUP], f"rst_{name}")
                m.domains += domain
                m.submodules[name] = DomainRenamer({"sync": domain.name})(unit)
            else:
                m.submodules[name] = unit
            first = unit.a if hasattr(unit, "a") and not hasattr(unit, "i") else unit.i
            _join(m, cur, first)
            cur = unit.o
            if name in self._skips:
                pending[self._skips[name]] = unit.skip
        for add, skip in pending.items():
            _join(m, skip, by_name[add].b)
        if self._tree:
            m.d.comb += [self.o.payload.eq(cur.payload), self.o.valid.eq(cur.valid & ~held),
                         cur.ready.eq(self.o.ready & ~gate_out)]
        else:
            _join(m, cur, self.o)
        return m


def _join(m, src, dst):
    """Connect stream ``src`` (an output) to ``dst`` (an input); payload shapes may differ
    (a ReLU output is unsigned, the next input format signed): values always fit."""
    m.d.comb += [dst.payload.eq(src.payload), dst.valid.eq(src.valid), src.ready.eq(dst.ready)]
