# amaranth: UnusedElaboratable=no
"""The board link's pieces in Amaranth's simulator: UART transmitter into receiver at odd
divisors, a framing error and a break; the CRC expression against Python's; the parameter
messages."""

import binascii
import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from flexor_hw.gateware.board_link import FrameLink, crc16_byte
from flexor_hw.gateware.uart import UartRx, UartTx


@pytest.mark.parametrize("divisor", [4, 5, 13])
def test_uart_loopback(divisor):
    m = Module()
    m.submodules.tx = tx = UartTx(8)
    m.submodules.rx = rx = UartRx(8)
    m.d.comb += [rx.rx.eq(tx.tx), tx.divisor.eq(divisor), rx.divisor.eq(divisor)]
    data = [0x00, 0xFF, 0xA5, 0x5A] + [random.Random(divisor).randrange(256) for _ in range(12)]
    got = []
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def producer(ctx):
        for byte in data:
            ctx.set(tx.i.payload, byte)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)

    async def consumer(ctx):
        while len(got) < len(data):
            _, _, valid, error, byte = await ctx.tick().sample(rx.valid, rx.error, rx.data)
            assert not error
            if valid:
                got.append(byte)

    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run_until(1e-8 * divisor * 12 * (len(data) + 2))
    assert got == data


def test_uart_framing_error_and_break():
    """A low stop bit is an error, not a byte; the receiver waits out a break and then takes
    the next byte."""
    divisor = 6
    m = Module()
    m.submodules.rx = rx = UartRx(8)
    line = Signal(init=1)
    m.d.comb += [rx.rx.eq(line), rx.divisor.eq(divisor)]
    events = []
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def drive(ctx):
        async def bits(levels):
            for level in levels:
                ctx.set(line, level)
                await ctx.tick().repeat(divisor)
        await bits([1, 1])
        await bits([0] + [1, 0, 1, 0, 1, 0, 1, 0] + [0])       # 0x55 with a low stop bit
        await bits([0] * 30)                                    # a break
        await bits([1, 1])
        await bits([0] + [0, 1, 1, 0, 0, 0, 1, 1] + [1, 1])     # 0xC6

    async def watch(ctx):
        async for _, _, valid, error, byte in ctx.tick().sample(rx.valid, rx.error, rx.data):
            if valid:
                events.append(("byte", byte))
            if error:
                events.append(("error",))

    sim.add_testbench(drive)
    sim.add_process(watch)
    sim.run_until(1e-8 * divisor * 70)
    assert events == [("error",), ("byte", 0xC6)]


def test_crc16_byte_is_ccitt_false():
    m = Module()
    crc, byte, out = Signal(16), Signal(8), Signal(16)
    m.d.comb += out.eq(crc16_byte(crc, byte))
    sim = Simulator(m)

    async def tb(ctx):
        rng = random.Random(3)
        for _ in range(300):
            c, b = rng.randrange(1 << 16), rng.randrange(256)
            ctx.set(crc, c)
            ctx.set(byte, b)
            assert ctx.get(out) == binascii.crc_hqx(bytes([b]), c)

    sim.add_testbench(tb)
    sim.run()
    assert binascii.crc_hqx(b"123456789", 0xFFFF) == 0x29B1


def test_parameter_messages():
    with pytest.raises(TypeError, match=r"^beats_in must be a positive integer, not 0$"):
        FrameLink(5, False, 0, 4, False, 1)
    with pytest.raises(ValueError, match=r"^An image of 70000 bytes does not fit a frame "
                                         r"\(at most 65535\)$"):
        FrameLink(8, False, 70000, 4, False, 1)
    with pytest.raises(TypeError, match=r"^Divisor width must be an integer from 3 to 16, "
                                        r"not 17$"):
        UartRx(17)
    with pytest.raises(TypeError, match=r"^Timeout width must be an integer from 4 to 24, "
                                        r"not 2$"):
        FrameLink(5, False, 4, 4, False, 1, timeout_bits=2)
