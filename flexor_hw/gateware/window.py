"""Sliding-window unit: zero padding and a line buffer in memory, presenting each output
pixel's window in the trained weights' fan-in order ``(c, ky, kx)``."""

import operator
from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, ResetSignal, Shape, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .pipeline import (Credits, OutputFifo, SkidBuffer, copy_register, flag_copy,
                       kept_register, no_rw_check_attrs)

__all__ = ["SlidingWindow", "RowWindow", "KernelWindow", "line_buffer_rows"]


def _positive(name, value, minimum=1):
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {value!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value


def _pair(name, value, minimum):
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise TypeError(f"{name} must be an integer or a pair of integers, not {value!r}")
        return tuple(_positive(name, v, minimum) for v in value)
    v = _positive(name, value, minimum)
    return (v, v)


def row_window_rows(height, kernel_h, stride_h):
    """Rows a :class:`RowWindow`'s line buffer holds: ``2·kh + sh``."""
    return min(height, 2 * kernel_h + stride_h)


def kernel_window_rows(height, kernel_h, stride_h):
    """Rows a :class:`KernelWindow`'s line buffer holds: ``2·kh + sh``, or the map's and a
    kernel's more where that is fewer (the writer fills the next image's first rows while
    the reader waits for this one's last), rounded up to a multiple of ``kh`` (row ``g`` in
    row bank ``g mod kh``: any ``kh`` rows in a row are then in ``kh`` different banks)."""
    rows = min(height + kernel_h, 2 * kernel_h + stride_h)
    return -(-rows // kernel_h) * kernel_h


def line_buffer_rows(height, kernel_h, stride_h):
    """Rows a :class:`SlidingWindow`'s line buffer holds: ``kh + sh`` (``sh`` more than a
    window needs, so the writer fills the next rows while the reader walks these)."""
    return min(height, kernel_h + stride_h)


class SlidingWindow(wiring.Component):
    """Windows of a feature map, one activation per beat.

    Input ``i``: an image of ``height × width`` pixels of ``channels`` activations, in
    ``(y, x, c)`` order (the order engines emit: one output pixel after another, channels in
    order). Output ``o``: for each output pixel ``(oy, ox)`` in raster order, its
    ``channels · kh · kw`` window in ``(c, ky, kx)`` order — the fan-in order of a PyTorch conv
    weight ``[out, in, kh, kw]`` — with zeros where the window covers padding. Images follow
    one another without gaps.

    The input is kept in a line buffer of ``kh + sh`` rows (a memory, block RAM on FPGAs): the
    writer may fill the rows the next output row needs while the reader walks the current one,
    and a window element is read once its row is complete. Rows run on around the buffer from
    one image to the next, so the writer starts the next image while the reader finishes this
    one. The writer waits (``i.ready`` low) only where it would overwrite a row still in use;
    the rows the reader waits for are always ones the writer may fill, so the unit never
    deadlocks, whatever the stalls. ``i.ready`` is a register (:func:`_write_room`).

    One output beat per cycle while ``o`` takes them; ``o.valid`` and ``o.payload`` come from
    registers (the head of the reader's output FIFO, :class:`_Reader`). Latency: a window
    element is taken a cycle after the write of the beat that completes its row, and leaves
    five cycles later (its read address, the read, the read data's register, the
    finished payload's, the FIFO).

    Parameters
    ----------
    shape : Shape-castable
        Of one activation.
    channels, height, width : int
    kernel, stride, padding : int or (int, int)
        ``(h, w)``; ``padding`` is zero padding on both sides.
    emit : bool
        The line buffer's registered write port (:func:`_registered_write`) as
        ``flexor_copy`` instances, which Yosys keeps apart (Verilog); else plain registers.
    """

    def __init__(self, shape, channels, height, width, kernel, *, stride=1, padding=0,
                 emit=False):
        self._shape = Shape.cast(shape)
        self._emit = emit
        self._c = _positive("Channels", channels)
        self._h = _positive("Height", height)
        self._w = _positive("Width", width)
        self._k = _pair("Kernel", kernel, 1)
        self._s = _pair("Stride", stride, 1)
        self._p = _pair("Padding", padding, 0)
        oh, ow = self.output_size
        if oh < 1 or ow < 1:
            raise ValueError(f"Kernel {list(self._k)} with padding {list(self._p)} does not fit "
                             f"a {height}×{width} map")
        super().__init__({"i": In(stream.Signature(self._shape)),
                          "o": Out(stream.Signature(self._out_width()))})

    def _out_width(self):
        return self._shape

    @property
    def output_size(self):
        """``(OH, OW)``."""
        return tuple((n + 2 * p - k) // s + 1
                     for n, k, s, p in zip((self._h, self._w), self._k, self._s, self._p))

    @property
    def window_beats(self):
        """Beats per output pixel: ``channels · kh · kw``."""
        return self._c * self._k[0] * self._k[1]

    @property
    def beats_per_image(self):
        """Output beats per image: ``OH · OW · channels · kh · kw``."""
        oh, ow = self.output_size
        return oh * ow * self.window_beats

    @property
    def buffer_rows(self):
        return line_buffer_rows(self._h, self._k[0], self._s[0])

    def elaborate(self, platform):
        m = Module()
        xw = self._shape.width
        self._writer = writer = _Writer(m, self)
        inp, write = writer.inp, writer.write
        C, H, W = self._c, self._h, self._w
        (kh, kw), (sh, sw), (ph, pw) = self._k, self._s, self._p
        oh, ow = self.output_size
        R = self.buffer_rows
        d = _rows_done(H, R, sh, ph)
        flags = _RowsDoneFlags(d)

        m.submodules.mem = mem = memory.Memory(shape=self._shape, depth=R * W * C, init=[],
                                               attrs=no_rw_check_attrs(R * W * C,
                                                                       self._shape.width))
        wr = mem.write_port()
        rd = mem.read_port(domain="sync")

        # Rows run on around the circular buffer from image to image (row g of the stream
        # sits in slot g mod R), so the writer may start the next image while the reader
        # finishes this one: ``ahead`` says it has. w_row: rows of the writer's image done.
        ahead = Signal()
        w_row = Signal(range(H + 1))
        w_px = Signal(range(W * C))             # position within the row
        w_addr = Signal(range(R * W * C))
        # Reader: the output pixel and window element it asks for next.
        oy = Signal(range(oh))
        ox = Signal(range(ow))
        c = Signal(range(C))
        ky = Signal(range(kh))
        kx = Signal(range(kw))
        low = Signal(range(-ph, (oh - 1) * sh - ph + 1), init=-ph)        # oy·sh − ph
        img_slot = Signal(range(R))                                       # slot of row 0
        base_slot = Signal(range(R), init=(-ph) % R)                      # slot of row low
        ix0 = Signal(range(-pw, (ow - 1) * sw - pw + 1), init=-pw)        # ox·sw − pw
        r_done = Signal()          # the reader has read its whole image
        # iy = low + ky and ix = ix0 + kx: registers that follow the counters (their adders
        # sat on the path from the counters through ``avail`` and ``take`` to every
        # counter's enable: LeNet-5's longest, placed on the ECP5-25k)
        iy = Signal(range(-ph, (oh - 1) * sh - ph + kh), init=-ph)
        ix = Signal(range(-pw, (ow - 1) * sw - pw + kw), init=-pw)

        # The writer may fill a row unless its slot still holds a row the reader needs
        # (stream rows before the reader's ``low`` are free: row r of the next image is row
        # H + r of this one). Once the reader is done, every row of its image is free.
        _registered_write(m, wr, w_addr, inp.payload, write, "", self._emit)

        # The reader hands its image over to the writer's when it is done and the writer has
        # moved on (one cycle; the reader's counters are already back at the start).
        switch = Signal()
        ahead_rows = Signal(name="ahead_rows")  # the reader's copy (:func:`_reader_ahead`)
        m.d.comb += switch.eq(r_done & ahead_rows)
        with m.If(write):
            m.d.sync += [w_px.eq(Mux(w_px == W * C - 1, 0, w_px + 1)),
                         w_addr.eq(Mux(w_addr == R * W * C - 1, 0, w_addr + 1))]
            with m.If(w_px == W * C - 1):
                with m.If(~ahead & (w_row == H - 1)):
                    m.d.sync += [ahead.eq(1), w_row.eq(0)]
                with m.Else():
                    m.d.sync += w_row.eq(w_row + 1)

        # Reader: an element is ready when it is padding or its row is complete (``avail``,
        # a register: :func:`_registered_avail`).
        pad = Signal()
        m.d.comb += pad.eq(_outside(iy, H) | _outside(ix, W))
        reader = _Reader(m, self, avail_init=int(ph > 0 or pw > 0))
        self._reader, step = reader, reader.step    # a copy of ``take``: the counters' enable
        pad_a = Signal(reset_less=True)
        pad_reg = Signal(reset_less=True)
        # The read address (slot·W + ix)·C + c, slot = (base_slot + ky) mod R, as the sum of
        # two registers that follow the counters: row_addr = slot·W·C and col_addr = ix·C + c
        # (any value on padding). No multiplier sits between the counters and the memory
        # (one did, and it set Fmax).
        RWC, WC = R * W * C, W * C
        row_addr = Signal(range(RWC), init=base_slot.init * WC)
        base_row = Signal(range(RWC), init=base_slot.init * WC)        # base_slot·W·C
        img_row = Signal(range(RWC))                                  # img_slot·W·C
        col_lo, col_hi = -pw * C, ((ow - 1) * sw - pw + kw) * C
        col_addr = Signal(range(min(0, col_lo), col_hi + 1), init=col_lo)
        ix0c = Signal(range(min(0, col_lo), col_hi + 1), init=col_lo)  # ix0·C

        def wrap(value):
            """``value mod R·W·C`` for ``0 ≤ value < 2·R·W·C``."""
            return Mux(value >= RWC, value - RWC, value)

        rows = _Rows(R, H, sh, ph, WC, wrap, oy, low, r_done, ahead, img_slot, img_row,
                     base_slot, base_row, row_addr)
        steps = _row_steps(m, rows, ow * C * kh * kw)

        # The read address and the padding flag follow the reader's state every cycle (no
        # enable): what a take reads is the state's at the take (:class:`_Reader`).
        r_addr = Signal.like(rd.addr, reset_less=True)
        m.d.comb += [rd.addr.eq(r_addr), rd.en.eq(1)]
        m.d.sync += [pad_a.eq(pad), r_addr.eq(row_addr + col_addr), pad_reg.eq(pad_a)]
        # the element as read and whether it is padding
        reader.output(m, Cat(rd.data, pad_reg), lambda bits: Mux(bits[xw], 0, bits[:xw]))

        last_kx, last_ky, last_c = kx == kw - 1, ky == kh - 1, c == C - 1
        last_ox, last_oy = ox == ow - 1, oy == oh - 1
        with m.If(step):
            m.d.sync += kx.eq(Mux(last_kx, 0, kx + 1))
            with m.If(~last_kx):
                m.d.sync += col_addr.eq(col_addr + C)
            with m.Else():
                m.d.sync += ky.eq(Mux(last_ky, 0, ky + 1))
                with m.If(~last_ky):
                    m.d.sync += [col_addr.eq(ix0c + c),
                                 row_addr.eq(wrap(row_addr + WC))]
                with m.Else():
                    m.d.sync += [c.eq(Mux(last_c, 0, c + 1)), row_addr.eq(base_row)]
                    with m.If(~last_c):
                        m.d.sync += col_addr.eq(ix0c + c + 1)
                    with m.Else():
                        m.d.sync += [ox.eq(Mux(last_ox, 0, ox + 1)),
                                     ix0.eq(Mux(last_ox, -pw, ix0 + sw)),
                                     ix0c.eq(Mux(last_ox, col_lo, ix0c + sw * C)),
                                     col_addr.eq(Mux(last_ox, col_lo, ix0c + sw * C))]
                        with m.If(last_ox):
                            _next_output_row(m, rows, steps, last_oy)
        with m.If(step):
            with m.If(~last_kx):
                m.d.sync += ix.eq(ix + 1)
            with m.Elif(last_ky & last_c):
                m.d.sync += ix.eq(Mux(last_ox, -pw, ix0 + sw))
            with m.Else():
                m.d.sync += ix.eq(ix0)
            with m.If(last_kx):
                _next_iy(m, iy, low, last_ky, last_c & last_ox, last_oy, sh, ph)
        # (A switch comes only once the reader is done: no take in the same cycle.)
        with m.If(switch):
            _hand_over(m, rows, steps)
        w_last = _ends_next(m, write, [(w_px, W * C)], "w_last")
        wr_end, wr_end_rows = write & w_last, writer.rows & w_last
        self._ahead = (ahead, _reader_ahead(m, self, ahead_rows, switch, wr_end_rows, w_row, H))
        row_end = _ends_next(m, step, [(ox, ow), (c, C), (ky, kh), (kx, kw)], "r_last")
        d_next_of = _write_room(m, writer, wr_end, wr_end_rows, reader.rows & row_end,
                                last_oy, switch, ahead, ahead_rows, w_row, low, r_done, d, H,
                                R, sh, ph, flags)

        # The next element's padding after a take (iy and ix as they step), for ``avail``.
        row_pad1 = Mux(last_kx, Mux(~last_ky, _outside(iy, H, 1),
                                    Mux(last_c & last_ox,
                                        Mux(last_oy, ph > 0, _outside(low, H, sh)),
                                        _outside(low, H))), _outside(iy, H))
        col_pad1 = Mux(~last_kx, _outside(ix, W, 1),
                       Mux(last_ky & last_c, Mux(last_ox, pw > 0, _outside(ix0, W, sw)),
                           _outside(ix0, W)))
        self._avail_check = _registered_avail(
            m, reader, wr_end_rows, switch, ahead_rows, r_done, d, w_row, kh, H, sh, ph,
            pad=pad,
            ky=ky, ky_moves=last_kx, last_ky=last_ky, row_end=row_end, last_oy=last_oy,
            pad1=row_pad1 | col_pad1, flags=flags)
        flags.update(m, d_next_of)
        self._flags = flags
        return m


class RowWindow(SlidingWindow):
    """Windows of a feature map, one kernel row per beat: the ``kw`` elements
    ``(c, ky, 0 … kw−1)`` of each output pixel's window leave together (element ``kx`` at bits
    ``kx·w``), in the same ``(c, ky, kx)`` order as :class:`SlidingWindow` — ``kw`` times its
    rate, for a matrix-vector unit whose SIMD is a multiple of ``kw``.

    The line buffer is split into ``kw`` banks by column (pixel ``x`` in bank ``x mod kw``), so
    the ``kw`` columns of a kernel row are read in one cycle, one from each bank, and rotated
    into place. Flow control and image hand-over are :class:`SlidingWindow`'s: the writer waits
    only where it would overwrite a row still in use, and never deadlocks.
    """

    @property
    def simd(self):
        return self._k[1]

    def _out_width(self):
        return self._k[1] * self._shape.width

    @property
    def buffer_rows(self):
        """``2·kh + sh`` rows: a kernel row a cycle outruns a beat a cycle, so the writer
        must be able to fill the next image's first rows while the reader walks this image's
        last output row, or the unit idles at every image boundary."""
        return row_window_rows(self._h, self._k[0], self._s[0])

    @property
    def beats_per_image(self):
        oh, ow = self.output_size
        return oh * ow * self._c * self._k[0]

    def elaborate(self, platform):
        m = Module()
        C, H, W = self._c, self._h, self._w
        (kh, kw), (sh, sw), (ph, pw) = self._k, self._s, self._p
        oh, ow = self.output_size
        R = self.buffer_rows
        d = _rows_done(H, R, sh, ph)
        flags = _RowsDoneFlags(d)
        Wb = -(-W // kw)                        # column groups: pixel x in group x // kw
        xw = self._shape.width
        rw = Shape.cast(range(kw)).width

        def finish(bits):
            """The banks' data, the rotation and the padding flags, as read, into the kernel
            row: element kx from bank (rot + kx) mod kw, or 0 where it is padding."""
            data = [bits[b * xw:(b + 1) * xw] for b in range(kw)]
            rot, pads = bits[kw * xw:kw * xw + rw], bits[kw * xw + rw:]
            elements = []
            for kx in range(kw):
                picked = data[kx % kw]
                for r in range(1, kw):
                    picked = Mux(rot == r, data[(r + kx) % kw], picked)
                elements.append(Mux(pads[kx], 0, picked))
            return Cat(*elements)

        self._writer = writer = _Writer(m, self)
        inp, write = writer.inp, writer.write
        BWC = Wb * C                            # one row of one bank
        RBC = R * BWC

        banks = []
        for b in range(kw):
            mem = memory.Memory(shape=self._shape, depth=RBC, init=[],
                                attrs=no_rw_check_attrs(RBC, self._shape.width))
            m.submodules[f"bank{b}"] = mem
            banks.append((mem.write_port(), mem.read_port(domain="sync")))

        # Writer: (row, x, c) in stream order; bank x mod kw at (slot·Wb + x // kw)·C + c.
        ahead = Signal()
        w_row = Signal(range(H + 1))
        w_c = Signal(range(C))
        w_x = Signal(range(W))
        w_b = Signal(range(kw))                 # x mod kw
        w_grp = Signal(range(RBC + 1))          # (slot·Wb + x // kw)·C
        w_rowbase = Signal(range(RBC + 1))      # slot·Wb·C
        oy = Signal(range(oh))
        ox = Signal(range(ow))
        c = Signal(range(C))
        ky = Signal(range(kh))
        low = Signal(range(-ph, (oh - 1) * sh - ph + 1), init=-ph)        # oy·sh − ph
        img_slot = Signal(range(R))
        base_slot = Signal(range(R), init=(-ph) % R)
        ix0 = Signal(range(-pw, (ow - 1) * sw - pw + 1), init=-pw)        # ox·sw − pw
        r_done = Signal()
        iy = Signal(range(-ph, (oh - 1) * sh - ph + kh), init=-ph)     # low + ky, a register

        for b, (wr, _) in enumerate(banks):
            _registered_write(m, wr, w_grp + w_c, inp.payload, write & (w_b == b), str(b),
                              self._emit)
        switch = Signal()
        ahead_rows = Signal(name="ahead_rows")  # the reader's copy (:func:`_reader_ahead`)
        m.d.comb += switch.eq(r_done & ahead_rows)

        def wrap(value, n=RBC):
            return Mux(value >= n, value - n, value)

        next_row = wrap(w_rowbase + BWC)
        _banked_writer(m, write, ahead, w_row, w_c, w_x, w_b, w_grp, C, H, W, kw,
                       [w_rowbase.eq(next_row), w_grp.eq(next_row)])

        # Reader: one kernel row (c, ky) per beat; bank b holds column ix0 + ((b − r0) mod kw)
        # at group q0 + (b < r0), with ix0 = q0·kw + r0.
        q_lo, q_hi = (-pw) // kw, ((ow - 1) * sw - pw) // kw + 1
        r0 = Signal(range(kw), init=(-pw) % kw)
        qc = Signal(range(min(0, q_lo * C), q_hi * C + C + 1), init=((-pw) // kw) * C)
        q0c = Signal.like(qc, init=((-pw) // kw) * C)             # q0·C
        row_addr = Signal(range(RBC), init=base_slot.init * BWC)
        base_row = Signal(range(RBC), init=base_slot.init * BWC)
        img_row = Signal(range(RBC))
        reader = _Reader(m, self, avail_init=int(ph > 0))
        self._reader, step = reader, reader.step    # a copy of ``take``: the counters' enable
        row_pad = _outside(iy, H)
        pads_a = Signal(kw, reset_less=True)    # element kx of the beat is padding
        rot_a = Signal(range(kw), reset_less=True)
        pads = Signal(kw, reset_less=True)
        rot = Signal(range(kw), reset_less=True)
        # The read addresses, padding flags and rotation follow the reader's state every
        # cycle (no enable): what a take reads is the state's at the take (:class:`_Reader`).
        m.d.sync += [pads_a.eq(Cat(*[row_pad | _outside(ix0, W, kx)
                                     for kx in range(kw)])), rot_a.eq(r0),
                     pads.eq(pads_a), rot.eq(rot_a)]
        for b, (_, rd) in enumerate(banks):
            # columns left of the rotation point sit one group further on
            addr = Signal.like(rd.addr, name=f"r_addr{b}", reset_less=True)
            m.d.sync += addr.eq(row_addr + qc + (Mux(r0 > b, C, 0) if b < kw - 1 else 0))
            m.d.comb += [rd.addr.eq(addr), rd.en.eq(1)]
        reader.output(m, Cat(*[rd.data for _, rd in banks], rot, pads), finish)

        rows = _Rows(R, H, sh, ph, BWC, wrap, oy, low, r_done, ahead, img_slot, img_row,
                     base_slot, base_row, row_addr)
        steps = _row_steps(m, rows, ow * C * kh)
        last_ky, last_c = ky == kh - 1, c == C - 1
        last_ox, last_oy = ox == ow - 1, oy == oh - 1
        with m.If(step):
            m.d.sync += ky.eq(Mux(last_ky, 0, ky + 1))
            with m.If(~last_ky):
                m.d.sync += row_addr.eq(wrap(row_addr + BWC))
            with m.Else():
                m.d.sync += [c.eq(Mux(last_c, 0, c + 1)), row_addr.eq(base_row)]
                with m.If(~last_c):
                    m.d.sync += qc.eq(qc + 1)
                with m.Else():
                    _next_pixel(m, rows, steps, ox, ix0, r0, q0c, qc, last_ox, last_oy, C,
                                kw, sw, pw)
        with m.If(step):
            _next_iy(m, iy, low, last_ky, last_c & last_ox, last_oy, sh, ph)
        with m.If(switch):
            _hand_over(m, rows, steps)
        w_last = _ends_next(m, write, [(w_x, W), (w_c, C)], "w_last")
        wr_end, wr_end_rows = write & w_last, writer.rows & w_last
        self._ahead = (ahead, _reader_ahead(m, self, ahead_rows, switch, wr_end_rows, w_row, H))
        row_end = _ends_next(m, step, [(ox, ow), (c, C), (ky, kh)], "r_last")
        d_next_of = _write_room(m, writer, wr_end, wr_end_rows, reader.rows & row_end,
                                last_oy, switch, ahead, ahead_rows, w_row, low, r_done, d, H,
                                R, sh, ph, flags)
        pad1 = Mux(~last_ky, _outside(iy, H, 1),
                   Mux(last_c & last_ox, Mux(last_oy, ph > 0, _outside(low, H, sh)),
                       _outside(low, H)))
        self._avail_check = _registered_avail(
            m, reader, wr_end_rows, switch, ahead_rows, r_done, d, w_row, kh, H, sh, ph,
            pad=row_pad, ky=ky, ky_moves=Const(1), last_ky=last_ky, row_end=row_end,
            last_oy=last_oy, pad1=pad1, flags=flags)
        flags.update(m, d_next_of)
        self._flags = flags
        return m


class KernelWindow(SlidingWindow):
    """Windows of a feature map, one channel's whole kernel per beat: the ``kh·kw`` elements
    ``(c, 0 … kh−1, 0 … kw−1)`` of each output pixel's window leave together (element
    ``(ky, kx)`` at bits ``(ky·kw + kx)·w``), in the same ``(c, ky, kx)`` order as
    :class:`SlidingWindow` — ``kh`` times :class:`RowWindow`'s rate, for a matrix-vector
    unit whose SIMD is a multiple of ``kh·kw`` (FINN's SWU emits a window position's
    channels at once; FleXOR's weights, encrypted in ``(c, ky, kx)`` order, need a
    channel's kernel instead).

    The line buffer is split into ``kh × kw`` banks, by row (stream row ``g`` in row bank
    ``g mod kh``, the buffer's rows a multiple of ``kh``: :func:`kernel_window_rows`) and by
    column (pixel ``x`` in column bank ``x mod kw``), so the ``kh·kw`` elements of a kernel
    are read in one cycle, one from each bank, and rotated into place. A beat is taken once
    its last kernel row is complete (or, below the map, once the image is). Flow control and
    image hand-over are :class:`SlidingWindow`'s: the writer waits only where it would
    overwrite a row still in use, and never deadlocks.
    """

    @property
    def simd(self):
        return self._k[0] * self._k[1]

    def _out_width(self):
        return self._k[0] * self._k[1] * self._shape.width

    @property
    def buffer_rows(self):
        return kernel_window_rows(self._h, self._k[0], self._s[0])

    @property
    def beats_per_image(self):
        oh, ow = self.output_size
        return oh * ow * self._c

    def elaborate(self, platform):
        m = Module()
        C, H, W = self._c, self._h, self._w
        (kh, kw), (sh, sw), (ph, pw) = self._k, self._s, self._p
        oh, ow = self.output_size
        R = self.buffer_rows
        Rk = R // kh                            # rows of one row bank
        d = _rows_done(H, R, sh, ph)
        flags = _RowsDoneFlags(d)
        Wb = -(-W // kw)                        # column groups: pixel x in group x // kw
        xw = self._shape.width
        rw, hw_ = Shape.cast(range(kw)).width, Shape.cast(range(kh)).width

        n = kh * kw * xw

        def middle(bits):
            """The banks' data, as read, rows rotated: kernel row ky from row bank
            (rot_y + ky) mod kh, each column bank's by a copy of rot_y of its own; the
            column rotations and the padding flags passed on. (With one rot_y for the
            200 bits of a 5 × 5 kernel, Yosys decoded it once, and the decode's net to
            the selects was the placed 45k design's longest path: 6.7 ns of routing.)"""
            at = n
            out = [[None] * kw for _ in range(kh)]
            for cb in range(kw):
                column = [bits[(rb * kw + cb) * xw:(rb * kw + cb + 1) * xw] for rb in range(kh)]
                for ky, e in enumerate(_rotate(column, bits[at:at + hw_])):
                    out[ky][cb] = e
                at += hw_
            return Cat(*[e for row in out for e in row], bits[at:])

        def finish(bits):
            """The rows, columns rotated (element kx from column bank (rot + kx) mod kw, each
            row by a copy of rot of its own), and 0 where an element is padding, into the
            kernel. (The rotations in one step, a kh·kw-way select of every bit, took a
            5 × 5 kernel of 8-bit elements 4,357 LUT4; as two, registered between, about
            1,700.)"""
            rots, pads = bits[n:n + kh * rw], bits[n + kh * rw:]
            elements = []
            for ky in range(kh):
                row = [bits[(ky * kw + cb) * xw:(ky * kw + cb + 1) * xw] for cb in range(kw)]
                row = _rotate(row, rots[ky * rw:(ky + 1) * rw])
                elements += [Mux(pads[ky * kw + kx], 0, row[kx]) for kx in range(kw)]
            return Cat(*elements)

        self._writer = writer = _Writer(m, self)
        inp, write = writer.inp, writer.write
        BWC = Wb * C                            # one row of one bank
        RBC = Rk * BWC                          # one bank

        banks = {}
        for rb in range(kh):
            for cb in range(kw):
                mem = memory.Memory(shape=self._shape, depth=RBC, init=[],
                                    attrs=no_rw_check_attrs(RBC, self._shape.width))
                m.submodules[f"bank{rb}_{cb}"] = mem
                banks[rb, cb] = (mem.write_port(), mem.read_port(domain="sync"))

        # Writer: (row, x, c) in stream order; row bank slot mod kh, column bank x mod kw,
        # at ((slot // kh)·Wb + x // kw)·C + c.
        ahead = Signal()
        w_row = Signal(range(H + 1))
        w_c = Signal(range(C))
        w_x = Signal(range(W))
        w_b = Signal(range(kw))                 # x mod kw
        w_rb = Signal(range(kh))                # slot mod kh
        w_grp = Signal(range(RBC + 1))          # ((slot // kh)·Wb + x // kw)·C
        w_rowbase = Signal(range(RBC + 1))      # (slot // kh)·Wb·C
        oy = Signal(range(oh))
        ox = Signal(range(ow))
        c = Signal(range(C))
        low = Signal(range(-ph, (oh - 1) * sh - ph + 1), init=-ph)        # oy·sh − ph
        img_slot = Signal(range(R))
        base_slot = Signal(range(R), init=(-ph) % R)
        ix0 = Signal(range(-pw, (ow - 1) * sw - pw + 1), init=-pw)        # ox·sw − pw
        r_done = Signal()

        # The line buffer's write a cycle after the beat (:func:`_registered_write`): the
        # address and data registers one pair per column bank, shared by its row banks.
        for cb in range(kw):
            for rb in range(kh):
                wr = banks[rb, cb][0]
                if rb == 0:
                    width = len(wr.addr)
                    w_addr = copy_register(m, (w_grp + w_c)[:width], f"w_addr{cb}_q",
                                           emit=self._emit)
                    w_data = copy_register(m, inp.payload, f"w_data{cb}_q", emit=self._emit)
                m.d.comb += [
                    wr.addr.eq(w_addr), wr.data.eq(w_data),
                    wr.en.eq(copy_register(m, write & (w_b == cb) & (w_rb == rb),
                                           f"w_en{rb}_{cb}_q", emit=self._emit))]
        switch = Signal()
        ahead_rows = Signal(name="ahead_rows")  # the reader's copy (:func:`_reader_ahead`)
        m.d.comb += switch.eq(r_done & ahead_rows)

        def wrap(value, n=RBC):
            return Mux(value >= n, value - n, value)

        next_row = Mux(w_rb == kh - 1, wrap(w_rowbase + BWC), w_rowbase)
        _banked_writer(m, write, ahead, w_row, w_c, w_x, w_b, w_grp, C, H, W, kw,
                       [w_rowbase.eq(next_row), w_grp.eq(next_row),
                        w_rb.eq(Mux(w_rb == kh - 1, 0, w_rb + 1))])

        # Reader: one channel's kernel per beat. Column bank b holds column
        # ix0 + ((b − r0) mod kw) at group q0 + (b < r0), with ix0 = q0·kw + r0 (as in
        # :class:`RowWindow`); row bank rb holds kernel row (rb − base_slot) mod kh at
        # that slot's row of the bank, from a table of base_slot.
        q_lo, q_hi = (-pw) // kw, ((ow - 1) * sw - pw) // kw + 1
        r0 = Signal(range(kw), init=(-pw) % kw)
        qc = Signal(range(min(0, q_lo * C), q_hi * C + C + 1), init=((-pw) // kw) * C)
        q0c = Signal.like(qc, init=((-pw) // kw) * C)             # q0·C
        # the rows' bookkeeping in slots (:class:`_Rows`; its row addresses are the slots)
        base_row = Signal(range(R), init=base_slot.init)
        row_addr = Signal(range(R), init=base_slot.init)
        img_row = Signal(range(R))
        reader = _Reader(m, self, avail_init=int(kh - 1 < ph), middle=True)
        self._reader, step = reader, reader.step    # a copy of ``take``: the counters' enable

        def table(values, slot):
            """``values[slot]``: a case of a slot register."""
            out = Signal(range(max(values) + 1), name="slot_table")
            with m.Switch(slot):
                for s_, v in enumerate(values):
                    with m.Case(s_):
                        m.d.comb += out.eq(v)
            return out

        def by_slot(values, name):
            """``values[base_slot]`` as a register that moves with ``base_slot``, loaded
            from registers that follow its next values (:func:`_row_steps`: they move at
            least ``ow·C`` cycles apart, and these follow them a cycle later still). Read
            from ``base_slot`` through a case, then added into every bank's read address,
            Yosys made a select of every sum (a 5 × 5 kernel's: 6,576 LUT4)."""
            if ow * C < 3:
                return table(values, base_slot)
            reg = Signal(range(max(values) + 1), init=values[base_slot.init], name=name)
            nxt = Signal.like(reg, name=f"{name}_next", reset_less=True)
            img = Signal.like(reg, name=f"{name}_img", reset_less=True)
            m.d.sync += [nxt.eq(table(values, steps["next_slot"])),
                         img.eq(table(values, steps["base_slot"]))]
            with m.If(step & last_c & last_ox & ~last_oy):
                m.d.sync += reg.eq(nxt)
            with m.If(switch):
                m.d.sync += reg.eq(img)
            return reg

        def bank_row(rb, s_):
            """The row of row bank ``rb`` that holds kernel row ``(rb − s_) mod kh`` of a
            window whose first row is in slot ``s_``."""
            return ((s_ + (rb - s_) % kh) % R) // kh

        rows = _Rows(R, H, sh, ph, 1, lambda v: Mux(v >= R, v - R, v), oy, low, r_done, ahead,
                     img_slot, img_row, base_slot, base_row, row_addr)
        steps = _row_steps(m, rows, ow * C)
        last_c = c == C - 1
        last_ox, last_oy = ox == ow - 1, oy == oh - 1
        pads_a = Signal(kh * kw, reset_less=True)   # element (ky, kx) of the beat is padding
        rot_a = Signal(range(kw), reset_less=True)
        roty_a = Signal(range(kh), reset_less=True)
        pads = Signal(kh * kw, reset_less=True)
        row_pads = [_outside(low, H, ky) for ky in range(kh)]
        col_pads = [_outside(ix0, W, kx) for kx in range(kw)]
        # The read addresses, padding flags and rotations follow the reader's state every
        # cycle (no enable): what a take reads is the state's at the take (:class:`_Reader`).
        m.d.sync += [pads_a.eq(Cat(*[row_pads[ky] | col_pads[kx] for ky in range(kh)
                                     for kx in range(kw)])),
                     rot_a.eq(r0), roty_a.eq(by_slot([s_ % kh for s_ in range(R)], "rot_y")),
                     pads.eq(pads_a)]
        # the rotations in copies of their own: rot_y one per column bank, rot one per
        # kernel row (``middle``, ``finish``)
        rot_y = [copy_register(m, roty_a, f"rot_y{cb}", emit=self._emit) for cb in range(kw)]
        rot = [copy_register(m, rot_a, f"rot{ky}", emit=self._emit) for ky in range(kh)]
        for rb in range(kh):
            rows_base = by_slot([bank_row(rb, s_) * BWC for s_ in range(R)], f"row_base{rb}")
            for cb in range(kw):
                rd = banks[rb, cb][1]
                addr = Signal.like(rd.addr, name=f"r_addr{rb}_{cb}", reset_less=True)
                m.d.sync += addr.eq(rows_base + qc + (Mux(r0 > cb, C, 0) if cb < kw - 1
                                                      else 0))
                m.d.comb += [rd.addr.eq(addr), rd.en.eq(1)]
        reader.output(m, Cat(*[banks[rb, cb][1].data for rb in range(kh) for cb in range(kw)],
                             *rot_y, *rot, pads), finish, middle)

        with m.If(step):
            m.d.sync += c.eq(Mux(last_c, 0, c + 1))
            with m.If(~last_c):
                m.d.sync += qc.eq(qc + 1)
            with m.Else():
                _next_pixel(m, rows, steps, ox, ix0, r0, q0c, qc, last_ox, last_oy, C, kw,
                            sw, pw)
        with m.If(switch):
            _hand_over(m, rows, steps)
        w_last = _ends_next(m, write, [(w_x, W), (w_c, C)], "w_last")
        wr_end, wr_end_rows = write & w_last, writer.rows & w_last
        self._ahead = (ahead, _reader_ahead(m, self, ahead_rows, switch, wr_end_rows, w_row, H))
        row_end = _ends_next(m, step, [(ox, ow), (c, C)], "r_last")
        d_next_of = _write_room(m, writer, wr_end, wr_end_rows, reader.rows & row_end,
                                last_oy, switch, ahead, ahead_rows, w_row, low, r_done, d, H,
                                R, sh, ph, flags)
        # A beat needs its last kernel row (``ky = kh − 1``): below the map, that is a
        # padding row, and the beat waits for the image's last row, ``ahead``.
        self._avail_check = _registered_avail(
            m, reader, wr_end_rows, switch, ahead_rows, r_done, d, w_row, kh, H, sh, ph,
            pad=Const(0), ky=kh - 1, ky_moves=Const(0), last_ky=Const(1), row_end=row_end,
            last_oy=last_oy, pad1=Const(0), flags=flags, ky_first=kh - 1)
        flags.update(m, d_next_of)
        self._flags = flags
        return m


def _rotate(items, amount):
    """``items`` rotated left by ``amount`` places: ``out[i] = items[(i + amount) mod n]``."""
    n = len(items)
    out = []
    for i in range(n):
        picked = items[i]
        for r in range(1, n):
            picked = Mux(amount == r, items[(i + r) % n], picked)
        out.append(picked)
    return out


def _banked_writer(m, write, ahead, w_row, w_c, w_x, w_b, w_grp, C, H, W, kw,
                   row_end):
    """A column-banked line buffer's writer counters (:class:`RowWindow`,
    :class:`KernelWindow`): ``(row, x, c)`` in stream order, ``x`` in bank ``x mod kw`` at
    group ``x // kw`` of the row (``w_grp``); ``row_end``, the statements that move it to the
    next row's slot."""
    with m.If(write):
        m.d.sync += w_c.eq(Mux(w_c == C - 1, 0, w_c + 1))
        with m.If(w_c == C - 1):
            m.d.sync += [w_x.eq(Mux(w_x == W - 1, 0, w_x + 1)),
                         w_b.eq(Mux((w_b == kw - 1) | (w_x == W - 1), 0, w_b + 1))]
            with m.If(w_x == W - 1):            # the row is complete: the next slot
                m.d.sync += row_end
                with m.If(~ahead & (w_row == H - 1)):
                    m.d.sync += [ahead.eq(1), w_row.eq(0)]
                with m.Else():
                    m.d.sync += w_row.eq(w_row + 1)
            with m.Elif(w_b == kw - 1):
                m.d.sync += w_grp.eq(w_grp + C)


class _Writer:
    """A window writer's handshake. The input comes through a skid buffer (its ``ready`` and
    the beat registers), so ``write`` (the input's beat taken) is a gate of the window's own
    flip-flops: the skid's ``valid`` and ``can_write``, the room register
    (:func:`_write_room`; from the producer's output FIFO, placed by the producer, the
    handshake ran into the writer's row end and the reader's ``avail``: the placed
    ResNet-20's longest path, 10.2 ns of routing). Full rate; the skid holds up to two beats,
    which the skip FIFO sizing counts.

    ``write`` enables the writer's counters, the line buffer's write and the room; ``rows``,
    a copy of it from copies of those two registers (``flexor_copy`` cells, each following
    the reset through its input), moves the rows-done bookkeeping (``d``, its flags, the
    reader's ``avail`` and its copies), which sits by the reader: from the skid's ``valid``
    across the window into ``avail``'s copies was the placed ResNet-20's longest path in
    turn (2.2 ns of logic, 8.7 of routing)."""

    def __init__(self, m, unit):
        m.submodules.inp = skid = SkidBuffer(unit.i.payload.shape(), emit=unit._emit)
        wiring.connect(m, wiring.flipped(unit.i), skid.i)
        self.inp = skid.o
        self.can_write = Signal(init=1, name="can_write")
        self.write, self.rows = Signal(name="write"), Signal(name="write_rows")
        m.d.comb += [skid.o.ready.eq(self.can_write),
                     self.write.eq(skid.o.valid & self.can_write)]
        self._emit = unit._emit
        self._valid = kept_register(m, skid.valid_next, "inp_valid_rows", emit=self._emit)

    def set_room(self, m, can_write_next):
        """``can_write`` follows ``can_write_next``, and so does its copy for ``rows``."""
        m.d.comb += self.can_write.eq(kept_register(m, can_write_next, "can_write_q",
                                                    emit=self._emit, init=1))
        self._room = kept_register(m, can_write_next, "can_write_rows", emit=self._emit,
                                   init=1)
        m.d.comb += self.rows.eq(self._valid & self._room)


def _reader_ahead(m, unit, ahead_rows, switch, wr_end_rows, w_row, H):
    """``ahead_rows``, the reader's copy of the writer's ``ahead`` (the writer has moved on to
    the next image), a ``flexor_copy`` that holds through itself and follows the reset
    through its input: set by the writer's last row end of its image (``wr_end_rows``, from
    the writer's copy of ``write``), cleared by the hand-over (``switch``, which it gates:
    the writer's own ``ahead`` clears with it). The hand-over, ``avail`` and the rows-done
    bookkeeping read it, so their logic stays by the reader: through the writer's ``ahead``,
    the reader's row address was the placed ResNet-20's longest path (a window's ``c``
    through the hand-over's select by ``ahead`` and back, 8.8 ns of routing). Equal to
    ``ahead`` in every cycle (a switch needs ``ahead``, the writer's set its absence).
    Returns it."""
    return flag_copy(m, wr_end_rows & (w_row == H - 1), switch, "ahead_rows", emit=unit._emit,
                     flag=ahead_rows)


def _registered_write(m, port, addr, data, en, name, emit):
    """A line buffer's write a cycle after the writer's beat: its address, data and enable
    each a register of the port's own (a kept copy, one per bank), so the writer's counters
    stay by the input and the copies by the block RAMs (the writer's registers, pulled
    between its input and banks in several block RAM rows, had nets of 10 ns on the
    placed ResNet-20). A row is read at the earliest two cycles after the beat that
    completes it (``avail`` is a register, the read address another), so the write a cycle
    late is in the memory first, and never in the cycle a take reads the same place (the
    banks read every cycle; a read no take asked for is dropped). A write
    that waits as the reset comes lands in its first cycle, before any new one."""
    width = len(port.addr)
    m.d.comb += [
        port.addr.eq(copy_register(m, addr[:width], f"w_addr{name}_q", emit=emit)),
        port.data.eq(copy_register(m, data, f"w_data{name}_q", emit=emit)),
        port.en.eq(copy_register(m, en, f"w_en{name}_q", emit=emit)),
    ]


class _Reader:
    """A window reader's flow control: a credit per place of an output FIFO (FINN's and
    this package's engines' scheme, :class:`~.pipeline.Credits`), so that nothing between
    the reader's state and the FIFO ever stalls. ``take`` (the reader's next element is
    available and a place is free) is a gate of two registers (``avail``, the credits'
    ``room``) and enables the reader's counters alone. The read addresses follow the state
    every cycle without an enable (the registers by the block RAMs), the block RAMs read
    every cycle, and four stages (address, read, the read data's register, the finished
    payload's) carry a take to the FIFO: neither a take nor the consumer's ``ready`` fans
    out to the banks. (A stall signal to every bank's address register and read enable, the
    banks placed in block RAM rows apart, was the placed ResNet-20's longest path: the
    output's ready into a row window's enables, 12.1 ns of routing.)

    The read data's register is fed by the block RAMs' data alone (``synth`` moves it into
    their output registers on the ECP5); ``finish`` makes the output's payload from it (the
    padding and the kernel row's rotation) into the FIFO, whose head is a register."""

    #: Stages from a take to the FIFO's write: the read address, the block RAM's read, the
    #: read data's register, the finished payload's register (and, made with ``middle``,
    #: one between those two).
    STAGES = 4
    #: A place reserved at a take returns to ``room`` ``STAGES`` + 3 cycles later (the
    #: FIFO's head register, the returned credit, the room register): that many places keep
    #: an element a cycle going.
    DEPTH = STAGES + 3

    def __init__(self, m, unit, *, avail_init, middle=False):
        # ``middle``: a register between the read data's and the finished payload's
        # (:meth:`output`), a stage and a place more
        self.stages = self.STAGES + bool(middle)
        self.depth = self.stages + 3
        width = Shape.cast(unit.o.payload.shape()).width
        # a wide head (a kernel window's) in pieces of at most 64 bits
        m.submodules.out = self.fifo = OutputFifo(
            unit.o.payload.shape(), self.depth,
            pieces=-(-width // 64) if middle else 1, emit=unit._emit)
        wiring.connect(m, self.fifo.o, wiring.flipped(unit.o))
        self._credits = credits = Credits(self.depth, name="read_credits", emit=unit._emit)
        self._avail_init, self._emit = avail_init, unit._emit
        self.avail = Signal(init=avail_init, name="avail")     # :func:`_registered_avail`
        self.take = Signal(name="take")
        m.d.comb += self.take.eq(self.avail & credits.room)
        # copies of ``take`` (:meth:`set_avail`): the counters' and read addresses' enable,
        # and the rows-done bookkeeping's (``d``, its flags, the writer's room)
        self.step, self.rows = Signal(name="take_step"), Signal(name="take_rows")
        credits.count(m, self.take, unit.o.valid & unit.o.ready)
        self._staged = self.take
        for k in range(self.stages):
            staged = Signal(name=f"read_v{k + 1}")
            m.d.sync += staged.eq(self._staged)
            self._staged = staged

    def set_avail(self, m, avail_next):
        """``avail`` follows ``avail_next``; so do copies of it and of the credits' ``room``
        (``flexor_copy`` cells, each following the reset through its input), one pair for
        each copy of ``take`` (``step``, ``rows``). The counters' and addresses' enables (some 55
        flip-flops) and the rows-done bookkeeping each take their own copy, so ``take``
        itself reaches only ``avail``'s next value, the credits and the stages: with every
        enable on it, ``avail``'s loop through ``take`` was the placed ResNet-20's longest
        path (its first window, 2.4 ns of logic and 11.5 of routing)."""
        m.d.comb += self.avail.eq(kept_register(m, avail_next, "avail_q", emit=self._emit,
                                                init=self._avail_init))
        rst = ResetSignal("sync")
        for name, take in (("step", self.step), ("rows", self.rows)):
            avail = kept_register(m, avail_next, f"avail_{name}", emit=self._emit,
                                  init=self._avail_init)
            room = copy_register(m, self._credits.room_next | rst, f"room_{name}",
                                 emit=self._emit, init=1)
            m.d.comb += take.eq(avail & room)

    def output(self, m, bits, finish, middle=None):
        """The raw ``bits`` a take reads (the block RAMs' read data beside the flags staged
        to them: two stages after the take) into the read data's register, then through
        ``finish`` into a register of the payload, then into the FIFO (the block RAMs' data
        through the kernel row's rotation into the FIFO's LUT RAM was LeNet-5's longest path
        at two seeds of three, 9.6 ns of routing). ``middle`` (with a reader made with
        ``middle``): a step of ``finish``'s work into a register between them."""
        read = Signal(len(bits), name="read_data", reset_less=True)
        done = Signal(self.fifo.w_data.shape(), name="finished", reset_less=True)
        m.d.sync += read.eq(bits)
        if middle is not None:
            # ``middle`` of the read data into a register of its own, then ``finish``
            between = middle(read)
            mid = Signal(len(between), name="read_mid", reset_less=True)
            m.d.sync += mid.eq(between)
            read = mid
        m.d.sync += done.eq(finish(read))
        m.d.comb += [self.fifo.w_en.eq(self._staged), self.fifo.w_data.eq(done)]


def _ends_next(m, step, counters, name):
    """Whether mixed-radix ``counters`` (``[(value, size)]``, outer to inner, each stepping
    past its last value back to 0 as the one inside it does) stand at their last
    combination, as a register that follows their ``step``: after a step, whether they stood
    one before it. A writer's and a reader's row end are then a gate of flip-flops: they
    select among the next values of ``d``, the room and ``avail``, whose compares of each
    counter in front of those selects were LeNet-5's longest paths at two seeds."""
    last = Signal(init=all(size == 1 for _, size in counters), name=name)
    before = Const(1)
    for k in reversed(range(len(counters))):
        value, size = counters[k]
        if size >= 2:
            before = Cat(value == size - 2,
                         *[v == sz - 1 for v, sz in counters[:k] if sz > 1]).all()
            break
    with m.If(step):
        m.d.sync += last.eq(before)
    return last


def _next_iy(m, iy, low, last_ky, row_end, last_oy, sh, ph):
    """``iy = low + ky`` as it follows a step of ``ky`` (under the caller's condition): the
    next kernel row, or the window's first row of the same output row, of the next one
    (``row_end``), or of the next image."""
    with m.If(~last_ky):
        m.d.sync += iy.eq(iy + 1)
    with m.Elif(row_end):
        m.d.sync += iy.eq(Mux(last_oy, -ph, low + sh))
    with m.Else():
        m.d.sync += iy.eq(low)


def _rows_done(H, R, sh, ph):
    """``d = w_row − low``: the rows the writer has completed from the reader's ``low`` on
    (when it is not ahead), a register that follows both (:func:`_write_room`; its adder
    was on the path into the room's compares)."""
    return Signal(range(-((H + 1) * sh + ph + R + 1), H + ph + R + 2), init=ph, name="d")


def _ky_below(ky, d, kh):
    """Whether the reader's row ``iy = low + ky`` is complete, ``iy < w_row``, as
    ``ky < d`` (0 ≤ ky < kh) in LUTs: ``d`` at least ``2^b`` (b the bits of ``ky``), or
    non-negative below it with its low bits above ``ky``. The compare of ``iy`` with
    ``w_row``, a carry chain, led the reader's ``take`` into every counter's enable and
    the line buffer's read enable (the placed ResNet-20's longest path)."""
    b = max(1, (kh - 1).bit_length())
    width = len(d)
    sign = d[width - 1]
    high = d[b:width - 1].any() if width - 1 > b else Const(0)
    low = d[:b]

    def at_least(c):                    # low ≥ c, by its values: no adder
        return Cat(*[low == v for v in range(c, 1 << b)]).any()

    low_above = Cat(*[(ky == j) & at_least(j + 1) for j in range(kh) if j + 1 < 1 << b]).any()
    return ~sign & (high | low_above)


def _rows_done_after(d, w_row, H, sh, ph, w_end, r_end):
    """``d``'s next value (:func:`_rows_done`) after the writer's row end (``w_end``) and
    the reader's (``r_end``: None, ``"row"``, or ``"image"``, whose next ``low`` is the
    next image's ``-ph``), as ``(when the writer's row end wraps to the next image's row 0,
    otherwise)``, each a ``(register, constant)`` sum (register None: the constant alone),
    so that its users may add or compare it as they need (:func:`_write_room` sums it,
    :func:`_registered_avail` compares ``ky`` with it in LUTs)."""
    if r_end == "image":
        return ((None, ph), (w_row, 1 + ph)) if w_end else ((w_row, ph),) * 2
    k = -sh if r_end == "row" else 0
    return ((d, k + 1 - H), (d, k + 1)) if w_end else ((d, k),) * 2


def _by_wraps(wraps, cases, value):
    """``value`` of :func:`_rows_done_after`'s two cases, chosen by ``wraps`` (one where
    they are the same)."""
    wrapped, plain = cases
    return value(plain) if wrapped is plain else Mux(wraps, value(wrapped), value(plain))


def _outside(v, n, k=0):
    """Whether ``v + k`` falls outside ``0 … n − 1``, as compares of ``v`` with constants
    (no adder in front of the compare)."""
    return (v < -k) | (v >= n - k)


def _bounds(x):
    """The least and greatest values of ``x``'s shape."""
    shape = x.shape()
    if shape.signed:
        return -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    return 0, (1 << shape.width) - 1


def _at_least(x, c):
    """``x ≥ c`` for a register ``x`` and a constant ``c``, in LUTs: an equality per value
    on the shorter side (no carry chain; ``x`` is a few bits wide)."""
    lo, hi = _bounds(x)
    if c <= lo:
        return Const(1)
    if c > hi:
        return Const(0)
    if hi - c + 1 <= c - lo:
        return Cat(*[x == v for v in range(c, hi + 1)]).any()
    return ~Cat(*[x == v for v in range(lo, c)]).any()


def _below_sum(ky, x, k, kh, at_least=None):
    """``ky < x + k`` for a counter ``ky`` (0 … kh − 1, or a constant), a register ``x`` and
    a constant ``k``, in LUTs: for each value ``j`` of ``ky``, ``x ≥ j − k + 1``
    (``at_least(x, c)``: :func:`_at_least`, or a register that holds it)."""
    at_least = at_least or _at_least
    if isinstance(ky, int):
        return at_least(x, ky - k + 1)
    return Cat(*[(ky == j) & at_least(x, j - k + 1) for j in range(kh)]).any()


class _RowsDoneFlags:
    """``d ≥ c`` (:func:`_rows_done`) for the constants ``c`` a reader's ``avail`` compares
    ``d`` with, each a register that follows ``d`` (:meth:`update`), so that ``avail``'s
    next value reads flags, not ``d``'s compares: those compares, equalities of ``d``'s
    bits with every value on one side of ``c``, then the cases and the events, were
    LeNet-5's longest paths at two seeds (conv1's window, 3.8 ns of logic)."""

    def __init__(self, d):
        self.d, self.flags = d, {}

    def __call__(self, x, c):
        """``x ≥ c``: a flag where ``x`` is ``d``, else :func:`_at_least`."""
        lo, hi = _bounds(x)
        if x is not self.d or c <= lo or c > hi:
            return _at_least(x, c)
        if c not in self.flags:
            self.flags[c] = Signal(init=int(self.d.init >= c),
                                   name=f"d_ge_{c}".replace("-", "m"))
        return self.flags[c]

    def update(self, m, d_next_of):
        """Each flag's next value, case by case as ``d``'s (``d_next_of``, from
        :func:`_write_room`): ``reg + k ≥ c`` as ``reg ≥ c − k``, a flag of its own where
        there is one, else a compare of the register."""
        flags = dict(self.flags)
        for c, flag in flags.items():
            def at_least(case, c=c):
                reg, k = case
                if reg is None:
                    return Const(int(k >= c))
                if reg is self.d and c - k in flags:
                    return flags[c - k]
                return _at_least(reg, c - k)
            m.d.sync += flag.eq(d_next_of(at_least))


def _registered_avail(m, reader, wr_end, switch, ahead, r_done, d, w_row, kh, H, sh,
                      ph, *, pad, ky, ky_moves, last_ky, row_end, last_oy, pad1, flags,
                      ky_first=0):
    """A reader's ``avail`` (its next element is padding, or its row is complete, and the
    image is not done: ``~r_done & (pad | ahead | ky < d)``) as a register holding its value
    for the next cycle's state, so that ``take`` is one gate of flip-flops: ``take``
    enables every counter and address register of the reader, and the compares behind
    ``avail`` in front of that fan-out were the longest path of LeNet-5 and ResNet-20
    placed on the ECP5 (conv2's window: ``ky`` through ``avail`` and ``take`` into its
    row registers' enables, 8.2 of 10.3 ns routing).

    The value is evaluated for each case of the events (a take, the writer's row end, the
    hand-over) from registers, each compare one of a register with a constant, and the
    events choose last (as in :func:`_write_room`). ``pad``, ``ky``: the state's; after a
    take, ``ky`` steps with ``ky_moves`` (to 0 with ``last_ky``), the reader ends an output
    row with ``row_end`` (the image with ``last_oy``; ``ky`` is then 0), and ``pad1`` is
    its next element's padding. With no event the state, and ``avail``, stay. ``take`` and
    ``avail`` are ``reader``'s (:class:`_Reader`). Returns ``(avail, its combinational
    definition)`` for tests."""
    avail, take = reader.avail, reader.take
    wraps = ~ahead & (w_row == H - 1)           # the writer's row end starts the next image

    def ok(ky_x, w_end, r_end):
        """``ky_x < d'`` (``ky_x``: ``ky``, ``ky + 1`` as ``(ky, 1)``, or 0) with ``d'``
        after the events (:func:`_rows_done_after`), each case a compare in LUTs of a
        register with a constant: no adder and no carry chain (their chains in series were
        this register's longest path)."""
        ky_x, step = ky_x if isinstance(ky_x, tuple) else (ky_x, 0)

        def below(case):
            reg, k = case
            if reg is None:                     # the reader's next image: ky is 0
                return Const(int(ky_x < k))
            return _below_sum(ky_x, reg, k - step, kh, flags)
        return _by_wraps(wraps, _rows_done_after(d, w_row, H, sh, ph, w_end, r_end), below)

    def rows_ok(w_end, moved):
        """After the writer's event, with the reader's ``ky`` stepped (``moved``) or not,
        and no row end."""
        if not moved:
            return ok(ky, w_end, None)
        return Mux(last_ky, ok(0, w_end, None), ok((ky, 1), w_end, None))

    def after_take(w_end):
        ahead_x = ahead | wraps if w_end else ahead
        ok_row = Mux(last_oy, ok(ky_first, w_end, "image"), ok(ky_first, w_end, "row"))
        ok_x = Mux(row_end, ok_row, Mux(ky_moves, rows_ok(w_end, True), rows_ok(w_end, False)))
        return ~(row_end & last_oy) & (pad1 | ahead_x | ok_x)

    # no take: the writer's row end (or nothing: the state stays), or the hand-over, where
    # the reader, done and back at its image's start, takes the writer's image
    idle_w = ~r_done & (pad | ahead | wraps | rows_ok(True, False))
    handed = [pad | rows_ok(w, False) for w in (False, True)]
    reader.set_avail(m, Mux(switch, Mux(wr_end, handed[1], handed[0]),
                            Mux(take, Mux(wr_end, after_take(True), after_take(False)),
                                Mux(wr_end, idle_w, avail))))
    comb = Signal(name="avail_comb")
    ky_now = Const(ky, range(kh)) if isinstance(ky, int) else ky
    m.d.comb += comb.eq(~r_done & (pad | ahead | _ky_below(ky_now, d, kh)))
    return avail, comb


def _write_room(m, writer, wr_end, wr_end_rows, rd_end, last_oy, switch, ahead, ahead_rows,
                w_row, low, r_done, d, H, R, sh, ph, flags):
    """``writer.can_write`` as a register (:meth:`_Writer.set_room`): the writer may fill a
    row unless its slot still holds a row the reader needs (stream rows before the reader's
    ``low`` are free: row r of the next image is row H + r of this one; once the reader is
    done, every row of its image is free). The input's ``ready`` is then a flip-flop: the
    compare of the writer's row with the reader's (an adder and a compare) drove it, and
    through the producer's handshake it reached the FIFO before it (the placed ResNet-20's
    longest path on the ECP5-85k).

    The register holds the room of the next cycle's state, exactly: the writer's row after a
    write that ends one (``wr_end``), the reader's after a take that ends an output row
    (``rd_end``, the image with ``last_oy``), and the hand-over (``switch``). A value a cycle
    old would cost a cycle whenever the reader frees a row the writer waits for; where the
    units run at the window's rate, that reaches the window's own reader. ``d`` (and
    through the returned ``d_next_of`` its flags) follows ``wr_end_rows``, the same event
    from the writer's copy of ``write`` for the rows-done bookkeeping (:class:`_Writer`).
    The room compares ``d`` with constants as ``flags`` (:class:`_RowsDoneFlags`, shared
    with ``avail``): registers, where the compares in LUTs (3.4 ns of logic) were the
    longest path of ResNet-20 placed on the ECP5-85k at one seed (conv5's window)."""
    # The next state differs from this one by the writer's row end (its row + 1, or row 0
    # of the next image) and the reader's (low + sh, or -ph at the image's end), so the
    # room is evaluated for each case beside the events, which then choose (the compare of
    # next-state values behind the events' muxes was the placed LeNet-5's longest path).
    # Every compare of a register with a constant is the sign of a register of its own
    # (``x − K``, or ``K − x``), which follows ``x`` by the same steps: the compares' carry
    # chains were the rest of the path into the flip-flop.
    signs = {}

    def below(kind, k):
        """Whether ``w_row < k`` (kind "w") or ``low > k`` ("low"): the sign of a
        register."""
        if (kind, k) in signs:
            return signs[kind, k]
        lo, hi = {"w": (-k, H - k), "low": (k - lows[1], k - lows[0])}[kind]
        if lo >= 0 or hi < 0:
            signs[kind, k] = Const(int(hi < 0))
            return signs[kind, k]
        init = {"w": -k, "low": k + ph}[kind]
        reg = Signal(range(lo, hi + 1), init=init, name=f"room_{kind}_{k}".replace("-", "m"))
        updates.append((kind, k, reg))
        signs[kind, k] = reg[-1]
        return reg[-1]

    lows = (-ph, (H + 1) * sh)                  # a bound on low's range (low = oy·sh − ph)
    updates = []
    # the writer's next row is the next image's (for ``d``, by the reader: from its copy of
    # ``ahead``)
    wraps = ~ahead & ~below("w", H - 1) & below("w", H)
    wraps_rows = ~ahead_rows & ~below("w", H - 1) & below("w", H)
    # d = w_row − low (:func:`_rows_done`) follows both: its values after each case of
    # events are summed from registers, and the events choose among them (the sum behind
    # the events' step was the longest path of ResNet-20 placed on the ECP5-85k: all six
    # endpoints over 10 ns were windows' d, from the input's handshake)
    def value(case):
        reg, k = case
        if reg is None:
            return k
        return reg + k if k else reg

    def d_next_of(fn):
        """``fn`` of ``d``'s next value, ``fn((register, constant))`` for each case of the
        events, the events choosing (``fn`` of ``(d, 0)``: no event)."""
        def after(w_end, r_end):
            return _by_wraps(wraps_rows, _rows_done_after(d, w_row, H, sh, ph, w_end, r_end),
                             fn)
        return Mux(rd_end, Mux(last_oy, Mux(wr_end_rows, after(True, "image"),
                                            after(False, "image")),
                               Mux(wr_end_rows, after(True, "row"), after(False, "row"))),
                   Mux(wr_end_rows, after(True, None), fn((d, 0))))

    m.d.sync += d.eq(d_next_of(value))

    def lt(wk, lk, c):
        """``W + c < L``: W the writer's next row (``w_row + wk``, or 0 for None), L the
        reader's next ``low`` (``low + lk``, or -ph for None)."""
        if wk is not None and lk is not None:
            return ~flags(d, lk - wk - c)
        if wk is None and lk is not None:
            return below("low", c - lk)
        if wk is not None:
            return below("w", -ph - wk - c)
        return Const(int(c < -ph))

    # The events come last: each of the four cases (writer's row end or not, reader's row
    # end or not) is evaluated from registers, and the events choose among them in the
    # last gates before the flip-flop (they come through the handshakes: the input's valid,
    # the reader's take). With neither event nor hand-over the state stays, and so does
    # the room.
    def after(w_end, r_end):
        """The room after the writer's event (False: none; else a row end, which wraps
        to the next image with ``wraps``) and the reader's (likewise, the image's end with
        ``last_oy``)."""
        ahead_e = Mux(switch, 0, ahead | wraps) if w_end else Mux(switch, 0, ahead)
        r_done_e = Mux(switch, 0, r_done | last_oy) if r_end else Mux(switch, 0, r_done)

        def at(wk, lk):
            below_h = Const(1) if wk is None else below("w", H - wk)
            return Mux(ahead_e, ~r_done_e & lt(wk, lk, H - R),
                       below_h & (r_done_e | lt(wk, lk, -R)))

        def by_reader(wk):
            if not r_end:
                return at(wk, 0)
            return Mux(last_oy, at(wk, None), at(wk, sh))

        if not w_end:
            return by_reader(0)
        return Mux(wraps, by_reader(None), by_reader(1))

    stay = Mux(switch, after(False, False), writer.can_write)
    writer.set_room(m, Mux(rd_end, Mux(wr_end, after(True, True), after(False, True)),
                           Mux(wr_end, after(True, False), stay)))
    # the registers follow w_row (+1 at the writer's row end, 0 when it wraps) and low (+sh
    # at the reader's, -ph at the image's end)
    for kind, k, reg in updates:
        if kind == "w":
            m.d.sync += reg.eq(Mux(wr_end, Mux(wraps, -k, reg + 1), reg))
        else:
            m.d.sync += reg.eq(Mux(rd_end, Mux(last_oy, k + ph, reg - sh), reg))
    return d_next_of


@dataclass
class _Rows:
    """A window reader's row bookkeeping over its circular line buffer of ``R`` rows of
    ``row_words`` words, shared by :class:`SlidingWindow` and :class:`RowWindow`."""

    R: int
    H: int
    sh: int
    ph: int
    row_words: int
    wrap: object
    oy: object
    low: object
    r_done: object
    ahead: object
    img_slot: object
    img_row: object
    base_slot: object
    base_row: object
    row_addr: object


def _row_steps(m, r, beats_per_row):
    """The slots and row addresses the reader moves to next, each ``(slot + k) mod R`` and its
    row's address: registers that follow ``base_*`` and ``img_*`` a cycle late (a compare,
    subtraction and mux through carry chains, 13 levels from ``img_row`` back into it, were a
    row window's longest path), or the expressions themselves where an output row takes one
    beat (the next row end would come before the register follows). Those move only at an
    output row's end or at the hand-over, at least ``beats_per_row`` cycles apart."""
    R, H, ph, sh = r.R, r.H, r.ph, r.sh

    def slot_plus(slot, k):
        s = slot + k % R
        return Mux(s >= R, s - R, s)

    steps = {"next_slot": (r.base_slot, slot_plus(r.base_slot, sh)),
             "next_row": (r.base_row, r.wrap(r.base_row + (sh % R) * r.row_words)),
             "img_slot": (r.img_slot, slot_plus(r.img_slot, H)),
             "img_row": (r.img_row, r.wrap(r.img_row + (H % R) * r.row_words)),
             "base_slot": (r.base_slot, slot_plus(r.img_slot, H - ph)),
             "base_row": (r.base_row, r.wrap(r.img_row + ((H - ph) % R) * r.row_words))}
    if beats_per_row < 2:
        return {k: expr for k, (_, expr) in steps.items()}
    regs = {}
    for k, (like, expr) in steps.items():
        regs[k] = Signal.like(like, name=f"step_{k}", reset_less=True)
        m.d.sync += regs[k].eq(expr)
    return regs


def _next_pixel(m, rows, steps, ox, ix0, r0, q0c, qc, last_ox, last_oy, C, kw, sw, pw):
    """A column-banked reader moves to its next output pixel, ``sw`` columns on: the first
    column ``ix0 = q0·kw + r0`` (``q0c = q0·C``; ``qc``, the read group, back to it), or the
    next output row's first."""
    t = r0 + sw % kw
    carry = sw // kw + (t >= kw)
    next_q0c = q0c + carry * C
    m.d.sync += [ox.eq(Mux(last_ox, 0, ox + 1)),
                 ix0.eq(Mux(last_ox, -pw, ix0 + sw)),
                 r0.eq(Mux(last_ox, r0.init, Mux(t >= kw, t - kw, t))),
                 q0c.eq(Mux(last_ox, q0c.init, next_q0c)),
                 qc.eq(Mux(last_ox, q0c.init, next_q0c))]
    with m.If(last_ox):
        _next_output_row(m, rows, steps, last_oy)


def _next_output_row(m, r, steps, last_oy):
    """The reader moves to the next output row (or is done with the image)."""
    m.d.sync += [r.oy.eq(Mux(last_oy, 0, r.oy + 1)),
                 r.low.eq(Mux(last_oy, -r.ph, r.low + r.sh))]
    with m.If(last_oy):
        m.d.sync += r.r_done.eq(1)
    with m.Else():
        m.d.sync += [r.base_slot.eq(steps["next_slot"]), r.base_row.eq(steps["next_row"]),
                     r.row_addr.eq(steps["next_row"])]


def _hand_over(m, r, steps):
    """The reader, done, takes over the writer's image: rows run on around the buffer."""
    m.d.sync += [r.ahead.eq(0), r.r_done.eq(0),
                 r.img_slot.eq(steps["img_slot"]), r.img_row.eq(steps["img_row"]),
                 r.base_slot.eq(steps["base_slot"]), r.base_row.eq(steps["base_row"]),
                 r.row_addr.eq(steps["base_row"])]
