"""AXI4-Stream ports around a network top: ``aclk``/``aresetn``, ``s_axis_*`` in, ``m_axis_*``
out, TLAST per image and per result, and a sticky ``error`` flag for a misplaced input TLAST."""

from amaranth.hdl import ClockDomain, Module, Mux, ResetSignal, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AxisBridge", "AxisTop", "tdata_width"]


def tdata_width(width):
    """AXI4-Stream TDATA width of a ``width``-bit payload: whole bytes."""
    return 8 * -(-width // 8)


def _check_positive(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise TypeError(f"{name} must be a positive integer, not {value!r}")


class AxisBridge(wiring.Component):
    """AXI4-Stream slave and master ports onto a core's ``lib.stream`` ports.

    Input: the low ``in_width`` bits of ``s_axis_tdata`` go to ``core_i``; ``s_axis_tlast``
    must be high on beat ``beats_in`` of every image and only there. A packet (beats up to a
    TLAST) shorter than ``beats_in`` is completed with zero beats; in a longer one, the beats
    after the ``beats_in``-th are dropped up to and including its TLAST. Either way ``error``
    rises and stays high until reset, and every input packet yields exactly one result, so
    the stream is aligned again from the next packet on.

    Output: ``core_o`` sign-extended (signed) or zero-extended (unsigned) to whole bytes on
    ``m_axis_tdata``; ``m_axis_tlast`` high on beat ``beats_out`` of every result.

    The handshakes are passed through (no added cycles); nothing moves while ``rst`` of the
    ``sync`` domain is high.

    Parameters
    ----------
    in_width, out_width : int
        Payload widths of the core's input and output.
    in_signed, out_signed : bool
        Their signedness.
    beats_in, beats_out : int
        Beats per image in, beats per result out.
    """

    def __init__(self, in_width, in_signed, out_width, out_signed, beats_in, beats_out):
        for name, value in (("in_width", in_width), ("out_width", out_width),
                            ("beats_in", beats_in), ("beats_out", beats_out)):
            _check_positive(name, value)
        for name, value in (("in_signed", in_signed), ("out_signed", out_signed)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, not {value!r}")
        self._in = Shape(in_width, in_signed)
        self._out = Shape(out_width, out_signed)
        self._beats_in, self._beats_out = beats_in, beats_out
        super().__init__({
            "s_axis_tdata": In(tdata_width(in_width)),
            "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1),
            "s_axis_tlast": In(1),
            "m_axis_tdata": Out(tdata_width(out_width)),
            "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
            "error": Out(1),
            "core_i": Out(stream.Signature(self._in)),
            "core_o": In(stream.Signature(self._out)),
        })

    @property
    def beats_in(self):
        return self._beats_in

    @property
    def beats_out(self):
        return self._beats_out

    def elaborate(self, platform):
        m = Module()
        running = ~ResetSignal("sync")
        n_in, n_out = self._beats_in, self._beats_out
        pos_in = Signal(range(max(2, n_in)))        # beat of the current image
        pad = Signal()                               # filling a short image with zero beats
        drop = Signal()                              # dropping a long packet's extra beats
        last_in = Signal()
        m.d.comb += last_in.eq(pos_in == n_in - 1)

        core_i, core_o = self.core_i, self.core_o
        m.d.comb += [
            core_i.payload.eq(Mux(pad, 0, self.s_axis_tdata[:self._in.width])),
            core_i.valid.eq(running & ~drop & (pad | self.s_axis_tvalid)),
            self.s_axis_tready.eq(running & ~pad & (drop | core_i.ready)),
        ]
        with m.If(core_i.valid & core_i.ready):
            m.d.sync += pos_in.eq(pos_in + 1)
            with m.If(last_in):
                m.d.sync += [pos_in.eq(0), pad.eq(0)]
                with m.If(~pad & ~self.s_axis_tlast):    # late: drop up to the TLAST
                    m.d.sync += [drop.eq(1), self.error.eq(1)]
            with m.Elif(~pad & self.s_axis_tlast):      # early: complete with zero beats
                m.d.sync += [pad.eq(1), self.error.eq(1)]
        with m.If(drop & self.s_axis_tvalid & self.s_axis_tready & self.s_axis_tlast):
            m.d.sync += drop.eq(0)

        pos_out = Signal(range(max(2, n_out)))
        m.d.comb += [
            self.m_axis_tdata.eq(core_o.payload),      # extends by the payload's signedness
            self.m_axis_tvalid.eq(running & core_o.valid),
            self.m_axis_tlast.eq(pos_out == n_out - 1),
            core_o.ready.eq(running & self.m_axis_tready),
        ]
        with m.If(core_o.valid & core_o.ready):
            m.d.sync += pos_out.eq(pos_out + 1)
            with m.If(pos_out == n_out - 1):
                m.d.sync += pos_out.eq(0)
        return m


class AxisTop(wiring.Component):
    """A network top (``i``/``o`` streams in the ``sync`` domain) behind AXI4-Stream ports.

    Ports: ``aclk``; ``aresetn`` (synchronous, active low); ``s_axis_tdata/tvalid/tready/
    tlast``; ``m_axis_tdata/tvalid/tready/tlast``; ``error`` (see :class:`AxisBridge`). The
    core runs on ``aclk`` and is reset while ``aresetn`` is low (a core with ``clk`` and
    ``rst`` ports of its own takes them from ``aclk`` and ``aresetn``).

    Parameters
    ----------
    core : wiring.Component
        With ``i`` (``In``) and ``o`` (``Out``) ``lib.stream`` members.
    beats_in, beats_out : int
        Beats per image in, beats per result out.
    """

    def __init__(self, core, *, beats_in, beats_out):
        members = getattr(getattr(core, "signature", None), "members", None)
        if members is None or "i" not in members or "o" not in members:
            raise TypeError(f"core must be a component with i and o streams, not {core!r}")
        _check_positive("beats_in", beats_in)
        _check_positive("beats_out", beats_out)
        self._core = core
        self._in = Shape.cast(members["i"].signature.members["payload"].shape)
        self._out = Shape.cast(members["o"].signature.members["payload"].shape)
        self._beats_in, self._beats_out = beats_in, beats_out
        super().__init__({
            "aclk": In(1),
            "aresetn": In(1, init=1),
            "s_axis_tdata": In(tdata_width(self._in.width)),
            "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1),
            "s_axis_tlast": In(1),
            "m_axis_tdata": Out(tdata_width(self._out.width)),
            "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
            "error": Out(1),
        })

    @property
    def core(self):
        return self._core

    @property
    def beats_in(self):
        return self._beats_in

    @property
    def beats_out(self):
        return self._beats_out

    @property
    def in_shape(self):
        """Shape of the core's input payload (the low bits of ``s_axis_tdata``)."""
        return self._in

    @property
    def out_shape(self):
        """Shape of the core's output payload (extended to ``m_axis_tdata``)."""
        return self._out

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = cd = ClockDomain("sync", local=True)
        m.d.comb += [cd.clk.eq(self.aclk), cd.rst.eq(~self.aresetn)]
        m.submodules.axis = bridge = AxisBridge(self._in.width, self._in.signed,
                                                self._out.width, self._out.signed,
                                                self._beats_in, self._beats_out)
        m.submodules.core = core = self._core
        if "clk" in core.signature.members:     # a top with a reset tree of its own
            m.d.comb += [core.clk.eq(self.aclk), core.rst.eq(~self.aresetn)]
        wiring.connect(m, bridge.core_i, core.i)
        wiring.connect(m, core.o, bridge.core_o)
        for name in ("s_axis_tdata", "s_axis_tvalid", "s_axis_tlast", "m_axis_tready"):
            m.d.comb += getattr(bridge, name).eq(getattr(self, name))
        for name in ("s_axis_tready", "m_axis_tdata", "m_axis_tvalid", "m_axis_tlast", "error"):
            m.d.comb += getattr(self, name).eq(getattr(bridge, name))
        return m
