"""A UART (8 data bits, no parity, 1 stop bit) whose bit period is an input port, so that one
emitted design runs at 115,200 baud on a board and at a few clock cycles per bit in
simulation."""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UartRx", "UartTx", "DIVISOR_BITS", "MIN_DIVISOR"]

#: Widest ``divisor`` port: clock cycles per bit, up to 65,535.
DIVISOR_BITS = 16
#: The receiver samples each bit in its middle; below 4 cycles per bit it cannot.
MIN_DIVISOR = 4


def _check_divisor_bits(bits):
    if not isinstance(bits, int) or isinstance(bits, bool) or not 3 <= bits <= DIVISOR_BITS:
        raise TypeError(f"Divisor width must be an integer from 3 to {DIVISOR_BITS}, not "
                        f"{bits!r}")


class UartRx(wiring.Component):
    """UART receiver, 8N1, LSB first.

    ``rx`` is the line (asynchronous; synchronized here). A start bit is confirmed half a bit
    after its falling edge, each bit is sampled in its middle. A byte whose stop bit is high
    strobes ``valid`` for one cycle with ``data``; one whose stop bit is low (a framing error,
    or a break: the line held low) strobes ``error`` instead, and the receiver then waits for
    the line to go high before it looks for the next start bit. ``divisor`` is the bit period
    in clock cycles (at least :data:`MIN_DIVISOR`, below ``2**divisor_bits``); hold it
    constant.
    """

    def __init__(self, divisor_bits=DIVISOR_BITS):
        _check_divisor_bits(divisor_bits)
        self._divisor_bits = divisor_bits
        super().__init__({"rx": In(1, init=1), "divisor": In(divisor_bits), "data": Out(8),
                          "valid": Out(1), "error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)
        count = Signal(self._divisor_bits)
        bits = Signal(range(9))
        shift = Signal(8)
        m.d.comb += self.data.eq(shift)
        m.d.sync += [self.valid.eq(0), self.error.eq(0)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += count.eq(self.divisor >> 1)
                    m.next = "START"
            with m.State("START"):
                m.d.sync += count.eq(count - 1)
                with m.If(count == 0):
                    with m.If(line):
                        m.next = "IDLE"                 # a glitch, not a start bit
                    with m.Else():
                        m.d.sync += [count.eq(self.divisor - 1), bits.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.sync += count.eq(count - 1)
                with m.If(count == 0):
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), bits.eq(bits + 1),
                                 count.eq(self.divisor - 1)]
                    with m.If(bits == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.sync += count.eq(count - 1)
                with m.If(count == 0):
                    with m.If(line):
                        m.d.sync += self.valid.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += self.error.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """UART transmitter, 8N1, LSB first: takes a byte from ``i`` when idle and sends it on
    ``tx`` (high when idle), ``divisor`` clock cycles per bit."""

    def __init__(self, divisor_bits=DIVISOR_BITS):
        _check_divisor_bits(divisor_bits)
        self._divisor_bits = divisor_bits
        super().__init__({"i": In(stream.Signature(8)), "divisor": In(divisor_bits),
                          "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        count = Signal(self._divisor_bits)
        bits = Signal(range(11))
        shift = Signal(10, init=0x3FF)
        m.d.comb += self.tx.eq(shift[0])
        with m.If(bits == 0):
            m.d.comb += self.i.ready.eq(1)
            with m.If(self.i.valid):
                m.d.sync += [shift.eq(Cat(Const(0, 1), self.i.payload, Const(1, 1))),
                             bits.eq(10), count.eq(self.divisor - 1)]
        with m.Else():
            m.d.sync += count.eq(count - 1)
            with m.If(count == 0):
                m.d.sync += [shift.eq(Cat(shift[1:], Const(1, 1))), bits.eq(bits - 1),
                             count.eq(self.divisor - 1)]
        return m
