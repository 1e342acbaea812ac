"""The board's serial link: frames from a UART into a network's input stream, its results back
out as reply frames (docs/board.md has the protocol).

A request is ``A5 seq len_lo len_hi payload crc_lo crc_hi``; a reply is
``5A seq status len_lo len_hi payload crc_lo crc_hi``. The CRC is CRC-16/CCITT-FALSE
(polynomial 0x1021, initial value 0xFFFF) over every byte after the magic byte and before the
CRC. Every request whose payload started yields exactly one image into the network, completed
with zero beats when the frame breaks off, and exactly one reply, in order, so a damaged frame
never shifts the images after it.
"""

from amaranth.hdl import Cat, Const, Instance, ClockSignal, Module, Mux, ResetSignal, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .uart import DIVISOR_BITS, UartRx, UartTx

__all__ = ["FrameLink", "BoardCore", "crc16_byte", "REQUEST_MAGIC", "REPLY_MAGIC", "STATUS",
           "TIMEOUT_BITS"]

REQUEST_MAGIC = 0xA5
REPLY_MAGIC = 0x5A
#: Reply status codes.
STATUS = {"ok": 0, "bad_crc": 1, "bad_length": 2, "timeout": 3, "line_error": 4, "overrun": 5}
#: Widest ``timeout`` port (clock cycles).
TIMEOUT_BITS = 24
#: Results waiting for their reply (requests whose replies are not sent yet).
STATUS_DEPTH = 2


def _crc16_taps():
    """For each bit of the CRC register after one byte, the register bits (0–15) and byte
    bits (16–23) it is the XOR of: the byte update of CRC-16/CCITT-FALSE, MSB first, as a
    linear map over GF(2)."""
    reg = [{j} for j in range(16)]
    for i in range(8):
        feedback = reg[15] ^ {16 + 7 - i}
        reg = [set() if j == 0 else set(reg[j - 1]) for j in range(16)]
        for j in range(16):
            if (0x1021 >> j) & 1:
                reg[j] ^= feedback
    return [sorted(bits) for bits in reg]


_CRC16_TAPS = _crc16_taps()


def crc16_byte(crc, byte):
    """CRC-16/CCITT-FALSE register ``crc`` after ``byte`` (MSB first), as an expression."""
    inputs = Cat(crc, byte)
    bits = []
    for taps in _CRC16_TAPS:
        bit = inputs[taps[0]]
        for t in taps[1:]:
            bit = bit ^ inputs[t]
        bits.append(bit)
    return Cat(*bits)


def _check_positive(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise TypeError(f"{name} must be a positive integer, not {value!r}")


class FrameLink(wiring.Component):
    """Request frames in on ``rx``, images out on ``i``; results in on ``o``, replies out on
    ``tx``.

    Parameters
    ----------
    in_width, in_signed : int, bool
        The network's input beat (sent as ``⌈in_width/8⌉`` bytes, little-endian; the low
        ``in_width`` bits are taken).
    beats_in : int
        Beats per image.
    out_width, out_signed : int, bool
        The network's output beat.
    beats_out : int
        Beats per result: 1 for a network that ends in an argmax (the beat is the class
        index), else the output vector, returned (each value sign- or zero-extended to whole
        bytes) followed by its argmax (the first maximum).

    divisor_bits, timeout_bits : int
        Widths of the ``divisor`` and ``timeout`` ports (a board's top ties them to
        constants; narrower counters take fewer logic cells).

    Ports: ``divisor`` is the UART bit period in clock cycles, ``timeout`` the silence in
    clock cycles after which a frame that has begun is given up (its image completed with
    zeros, status ``timeout``); ``cls`` is the class of the last good reply, ``busy`` is high
    while a frame is being received, a result is awaited or a reply is being sent.
    """

    def __init__(self, in_width, in_signed, beats_in, out_width, out_signed, beats_out, *,
                 divisor_bits=DIVISOR_BITS, timeout_bits=TIMEOUT_BITS):
        if not isinstance(timeout_bits, int) or not 4 <= timeout_bits <= TIMEOUT_BITS:
            raise TypeError(f"Timeout width must be an integer from 4 to {TIMEOUT_BITS}, not "
                            f"{timeout_bits!r}")
        self._divisor_bits, self._timeout_bits = divisor_bits, timeout_bits
        for name, value in (("in_width", in_width), ("beats_in", beats_in),
                            ("out_width", out_width), ("beats_out", beats_out)):
            _check_positive(name, value)
        self.bytes_in = -(-in_width // 8)
        self.bytes_out = -(-out_width // 8)
        if beats_in * self.bytes_in > 0xFFFF:
            raise ValueError(f"An image of {beats_in * self.bytes_in} bytes does not fit a "
                             f"frame (at most 65535)")
        self._in = Shape(in_width, in_signed)
        self._out = Shape(out_width, out_signed)
        self.beats_in, self.beats_out = beats_in, beats_out
        self.image_bytes = beats_in * self.bytes_in
        self.argmax = beats_out == 1
        self.reply_bytes = 2 if self.argmax else beats_out * self.bytes_out + 2
        if self.reply_bytes > 0xFFFF:
            raise ValueError(f"A reply of {self.reply_bytes} bytes does not fit a frame")
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "divisor": In(divisor_bits),
            "timeout": In(timeout_bits),
            "i": Out(stream.Signature(self._in)),
            "o": In(stream.Signature(self._out)),
            "cls": Out(16),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = rx = UartRx(self._divisor_bits)
        m.submodules.uart_tx = tx = UartTx(self._divisor_bits)
        m.d.comb += [rx.rx.eq(self.rx), rx.divisor.eq(self.divisor),
                     self.tx.eq(tx.tx), tx.divisor.eq(self.divisor)]
        m.submodules.images = images = SyncFIFOBuffered(width=self._in.width, depth=2)
        m.d.comb += [self.i.payload.eq(images.r_data), self.i.valid.eq(images.r_rdy),
                     images.r_en.eq(self.i.ready)]
        # status FIFO entries: seq (8), status (3), an image went into the network (1)
        m.submodules.results = results = SyncFIFOBuffered(width=12, depth=STATUS_DEPTH)

        # --- receiver: frames into images ---------------------------------------------------
        idle = Signal(self._timeout_bits)
        with m.If(rx.valid | rx.error):
            m.d.sync += idle.eq(0)
        with m.Elif(idle != (1 << self._timeout_bits) - 1):
            m.d.sync += idle.eq(idle + 1)
        timed_out = idle >= self.timeout
        byte = rx.data
        seq, length_lo = Signal(8), Signal(8)
        crc, crc_lo = Signal(16), Signal(8)
        status = Signal(3)
        overrun = Signal()
        byte_count = Signal(range(self.image_bytes + 1))
        beats_sent = Signal(range(self.beats_in + 1))
        part = Signal(range(self.bytes_in))
        acc = Signal(8 * self.bytes_in)
        beat = Cat(acc[8:], byte)[:self._in.width] if self.bytes_in > 1 else byte[:self._in.width]
        crc_next = crc16_byte(crc, byte)

        def give_up(code):
            m.d.sync += status.eq(STATUS[code])
            m.next = "FINISH"

        with m.FSM(name="framer") as framer:
            with m.State("HUNT"):
                with m.If(rx.valid & (byte == REQUEST_MAGIC)):
                    m.d.sync += crc.eq(0xFFFF)
                    m.next = "SEQ"
            for state, nxt, target in (("SEQ", "LEN0", seq), ("LEN0", "LEN1", length_lo)):
                with m.State(state):
                    with m.If(rx.valid):
                        m.d.sync += [target.eq(byte), crc.eq(crc_next)]
                        m.next = nxt
                    with m.Elif(rx.error | timed_out):
                        m.next = "HUNT"             # no image began: nothing to answer
            with m.State("LEN1"):
                with m.If(rx.valid):
                    m.d.sync += crc.eq(crc_next)
                    with m.If(Cat(length_lo, byte) == self.image_bytes):
                        m.d.sync += [byte_count.eq(0), beats_sent.eq(0), part.eq(0),
                                     overrun.eq(0)]
                        m.next = "PAYLOAD"
                    with m.Else():
                        m.next = "REJECT"
                with m.Elif(rx.error | timed_out):
                    m.next = "HUNT"
            with m.State("REJECT"):                 # a wrong length: answered, no image
                m.d.comb += [results.w_data.eq(Cat(seq, Const(STATUS["bad_length"], 3),
                                                   Const(0, 1))),
                             results.w_en.eq(1)]
                m.next = "HUNT"                     # (dropped when the queue is full)
            with m.State("PAYLOAD"):
                with m.If(rx.valid):
                    m.d.sync += [crc.eq(crc_next), byte_count.eq(byte_count + 1),
                                 acc.eq(Cat(acc[8:], byte)), part.eq(part + 1)]
                    with m.If(part == self.bytes_in - 1):
                        m.d.sync += part.eq(0)
                        m.d.comb += [images.w_data.eq(beat), images.w_en.eq(1)]
                        with m.If(images.w_rdy):
                            m.d.sync += beats_sent.eq(beats_sent + 1)
                        with m.Else():
                            m.d.sync += overrun.eq(1)
                    with m.If(byte_count == self.image_bytes - 1):
                        m.next = "CRC0"
                with m.Elif(rx.error):
                    give_up("line_error")
                with m.Elif(timed_out):
                    give_up("timeout")
            with m.State("CRC0"):
                with m.If(rx.valid):
                    m.d.sync += crc_lo.eq(byte)
                    m.next = "CRC1"
                with m.Elif(rx.error):
                    give_up("line_error")
                with m.Elif(timed_out):
                    give_up("timeout")
            with m.State("CRC1"):
                with m.If(rx.valid):
                    with m.If(Cat(crc_lo, byte) != crc):
                        m.d.sync += status.eq(STATUS["bad_crc"])
                    with m.Elif(overrun):
                        m.d.sync += status.eq(STATUS["overrun"])
                    with m.Else():
                        m.d.sync += status.eq(STATUS["ok"])
                    m.next = "FINISH"
                with m.Elif(rx.error):
                    give_up("line_error")
                with m.Elif(timed_out):
                    give_up("timeout")
            with m.State("FINISH"):                 # complete the image, then queue its reply
                with m.If(beats_sent != self.beats_in):
                    m.d.comb += [images.w_data.eq(0), images.w_en.eq(1)]
                    with m.If(images.w_rdy):
                        m.d.sync += beats_sent.eq(beats_sent + 1)
                with m.Else():
                    m.d.comb += [results.w_data.eq(Cat(seq, status, Const(1, 1))),
                                 results.w_en.eq(1)]
                    with m.If(results.w_rdy):
                        m.next = "HUNT"

        # --- transmitter: results into replies ----------------------------------------------
        r_seq, r_status, r_image = Signal(8), Signal(3), Signal()
        ok = r_status == STATUS["ok"]
        tx_crc = Signal(16)
        send = Signal(8)
        take = tx.i.valid & tx.i.ready
        m.d.comb += tx.i.payload.eq(send)
        count = Signal(range(max(self.beats_out, 2)))
        part_out = Signal(range(max(self.bytes_out, 2)))
        value = Signal(self._out)
        word = Signal(8 * self.bytes_out)
        best = Signal(self._out)
        class_bits = self._out.width if self.argmax else max(1, (self.beats_out - 1).bit_length())
        best_idx = Signal(class_bits)
        cls = Signal(class_bits)
        m.d.comb += self.cls.eq(cls)
        reply_len = Signal(16)
        m.d.comb += reply_len.eq(Mux(ok, self.reply_bytes, 0))

        def emit(data, nxt, *, crc_in=True):
            m.d.comb += [send.eq(data), tx.i.valid.eq(1)]
            with m.If(take):
                if crc_in:
                    m.d.sync += tx_crc.eq(crc16_byte(tx_crc, send))
                m.next = nxt

        with m.FSM(name="replier") as replier:
            with m.State("IDLE"):
                with m.If(results.r_rdy):
                    m.d.comb += results.r_en.eq(1)
                    m.d.sync += [r_seq.eq(results.r_data[:8]), r_status.eq(results.r_data[8:11]),
                                 r_image.eq(results.r_data[11]), count.eq(0)]
                    m.next = "RESULT"
            with m.State("RESULT"):
                with m.If(r_image & ~ok):
                    m.next = "DISCARD"
                with m.Else():
                    m.next = "MAGIC"
            with m.State("DISCARD"):                # the result of a broken frame
                m.d.comb += self.o.ready.eq(1)
                with m.If(self.o.valid):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == self.beats_out - 1):
                        m.next = "MAGIC"
            with m.State("MAGIC"):
                m.d.comb += [send.eq(REPLY_MAGIC), tx.i.valid.eq(1)]
                with m.If(take):
                    m.d.sync += tx_crc.eq(0xFFFF)
                    m.next = "SEQ"
            with m.State("SEQ"):
                emit(r_seq, "STATUS")
            with m.State("STATUS"):
                emit(r_status, "LEN0")
            with m.State("LEN0"):
                emit(reply_len[:8], "LEN1")
            with m.State("LEN1"):
                m.d.comb += [send.eq(reply_len[8:]), tx.i.valid.eq(1)]
                with m.If(take):
                    m.d.sync += [tx_crc.eq(crc16_byte(tx_crc, send)), count.eq(0)]
                    with m.If(~ok):
                        m.next = "CRC0"
                    with m.Else():
                        m.next = "TAKE" if self.argmax else "VALUE"
            if self.argmax:
                with m.State("TAKE"):
                    m.d.comb += self.o.ready.eq(1)
                    with m.If(self.o.valid):
                        m.d.sync += cls.eq(self.o.payload.as_unsigned())
                        m.next = "CLASS0"
            else:
                with m.State("VALUE"):
                    m.d.comb += self.o.ready.eq(1)
                    with m.If(self.o.valid):
                        m.d.sync += [value.eq(self.o.payload), part_out.eq(0),
                                     word.eq(self.o.payload)]    # sign- or zero-extended
                        with m.If((count == 0) | (self.o.payload > best)):
                            m.d.sync += [best.eq(self.o.payload), best_idx.eq(count)]
                        m.next = "BYTES"
                with m.State("BYTES"):
                    m.d.comb += [send.eq(word[:8]), tx.i.valid.eq(1)]
                    with m.If(take):
                        m.d.sync += [tx_crc.eq(crc16_byte(tx_crc, send)),
                                     word.eq(word >> 8), part_out.eq(part_out + 1)]
                        with m.If(part_out == self.bytes_out - 1):
                            m.d.sync += count.eq(count + 1)
                            with m.If(count == self.beats_out - 1):
                                m.d.sync += cls.eq(best_idx)
                                m.next = "CLASS0"
                            with m.Else():
                                m.next = "VALUE"
            with m.State("CLASS0"):
                emit(cls[:8], "CLASS1")
            with m.State("CLASS1"):
                emit(cls[8:] if len(cls) > 8 else Const(0, 8), "CRC0")
            with m.State("CRC0"):
                emit(tx_crc[:8], "CRC1", crc_in=False)
            with m.State("CRC1"):
                emit(tx_crc[8:], "IDLE", crc_in=False)

        m.d.comb += self.busy.eq(~framer.ongoing("HUNT") | results.r_rdy |
                                 ~replier.ongoing("IDLE") | images.r_rdy)
        return m


class BoardCore(wiring.Component):
    """A built network (its emitted Verilog module ``top``, instantiated by name) behind a
    :class:`FrameLink`: the module a board's top instantiates and the serial simulation runs.

    ``interface`` ``"native"``: the network has ``clk``, ``rst``, ``i__*``, ``o__*``.
    """

    def __init__(self, top, in_width, in_signed, beats_in, out_width, out_signed, beats_out, *,
                 divisor_bits=DIVISOR_BITS, timeout_bits=TIMEOUT_BITS):
        self.top = top
        self.link = FrameLink(in_width, in_signed, beats_in, out_width, out_signed, beats_out,
                              divisor_bits=divisor_bits, timeout_bits=timeout_bits)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "divisor": In(divisor_bits),
            "timeout": In(timeout_bits),
            "cls": Out(16),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = self.link
        m.d.comb += [link.rx.eq(self.rx), self.tx.eq(link.tx), link.divisor.eq(self.divisor),
                     link.timeout.eq(self.timeout), self.cls.eq(link.cls),
                     self.busy.eq(link.busy)]
        m.submodules.network = Instance(
            self.top,
            i_clk=ClockSignal(), i_rst=ResetSignal(),
            i_i__payload=link.i.payload, i_i__valid=link.i.valid, o_i__ready=link.i.ready,
            o_o__payload=link.o.payload, o_o__valid=link.o.valid, i_o__ready=link.o.ready)
        return m
