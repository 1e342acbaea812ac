"""Sliding-window unit: zero padding and a line buffer in memory, presenting each output
pixel's window in the trained weights' fan-in order ``(c, ky, kx)``."""

import operator
from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, ResetSignal, Shape, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .pipeline import (Credits, OutputFifo, SkidBuffer, copy_register, flag_copy,
                       kept_register, no_rw_check_attrs)

__all__ = ["SlidingWindow", "RowWindow", "GroupWindow", "KernelWindow", "line_buffer_rows",
           "window_rows"]


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


#: Beats of slack a line buffer keeps beyond its windows' rows where its writer and reader
#: run at nearly one rate (:func:`window_rows`): the flow control's flags follow the state a
#: cycle late, and a row passes from one side to the other in a few cycles.
SLACK_BEATS = 8


def window_rows(style, channels, height, width, kernel, stride, padding, block=(1, 1)):
    """Rows a window's line buffer holds: ``kh + sh`` for a :class:`SlidingWindow` (``sh``
    more than a window needs, so the writer fills the next rows while the reader walks
    these), ``2·kh + sh`` for a :class:`RowWindow` and a :class:`KernelWindow` (a kernel row
    or a kernel a cycle outruns a beat a cycle: the writer must be able to fill the next
    image's first rows while the reader walks this image's last output row); a row or more
    where the writer's rows and the reader's output rows take about as many beats (within
    :data:`SLACK_BEATS`) and the rows beyond a window's hold fewer beats than that; at most
    the map's and a kernel's more (the writer fills the next image's first rows while the
    reader finishes this one); for a kernel window a multiple of ``kh`` (row ``g`` in row
    bank ``g mod kh``: any ``kh`` rows in a row are then in ``kh`` different banks).
    ``style``: ``"element"``, ``"row"`` or ``"kernel"``. ``block``: ``(by, bx)``, output
    pixels in blocks of ``by`` rows (:class:`SlidingWindow`'s ``block``): the reader's row
    is ``by`` output rows, a window ``kh + (by − 1)·sh`` rows high stepping ``by·sh``."""
    (kh, kw), (sh, sw), pw = kernel, stride, padding[1]
    by = block[0]
    ow = (width + 2 * pw - kw) // sw + 1
    row = width * channels
    out_row = by * ow * channels * {"element": kh * kw, "row": kh, "kernel": 1}[style]
    banks = kh
    kh, sh = kh + (by - 1) * sh, by * sh        # the reader's rows
    rows = kh + sh if style == "element" else 2 * kh + sh
    held = (rows - kh - sh) * row
    if abs(out_row - sh * row) < SLACK_BEATS and held < SLACK_BEATS:
        rows += -(-(SLACK_BEATS - held) // row)
    rows = min(height + kh, rows)
    if style == "kernel":
        rows = -(-rows // banks) * banks
    return rows


def line_buffer_rows(height, kernel_h, stride_h):
    """Rows a max pool's line buffer holds (:class:`~.pool.MaxPool`): ``kh + sh``."""
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
    and an output row's windows are read once all their rows are complete. Rows run on around
    the buffer from
    one image to the next, so the writer starts the next image while the reader finishes this
    one. The writer waits (``i.ready`` low) only where it would overwrite a row still in use;
    the rows the reader waits for are always ones the writer may fill, so the unit never
    deadlocks, whatever the stalls. ``i.ready`` is a register (:func:`_flow_control`).

    One output beat per cycle while ``o`` takes them; ``o.valid`` and ``o.payload`` come from
    registers (the head of the reader's output FIFO, :class:`_Reader`). Latency: an output
    row's first element is taken, at the earliest, three cycles after the write of the beat
    that completes its last row (the writer's row count, the flag, ``avail``), and leaves
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
                 block=1, emit=False):
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
        self._b = _pair("Block", block, 1)
        if self._b != (1, 1):
            if self._style == "kernel":
                raise ValueError("A kernel window emits its output pixels in raster order "
                                 "only, not in blocks")
            if oh % self._b[0] or ow % self._b[1]:
                raise ValueError(f"Block {list(self._b)} must divide the {oh}×{ow} output "
                                 f"pixels")
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

    _style = "element"

    @property
    def buffer_rows(self):
        """Rows of line buffer (:func:`window_rows`)."""
        return window_rows(self._style, self._c, self._h, self._w, self._k, self._s,
                           self._p, self._b)

    def elaborate(self, platform):
        m = Module()
        xw = self._shape.width
        self._writer = writer = _Writer(m, self)
        inp, write = writer.inp, writer.write
        C, H, W = self._c, self._h, self._w
        (kh, kw), (sh, sw), (ph, pw) = self._k, self._s, self._p
        oh, ow = self.output_size
        R = self.buffer_rows
        blk = _Block(self)

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
        oy = Signal(range(blk.oh))             # the reader's row: ``by`` output rows
        ox = Signal(range(blk.ow))             # its block of ``bx`` output pixels
        c = Signal(range(C))
        ky = Signal(range(kh))
        kx = Signal(range(kw))
        low = Signal(range(-ph, (oh - 1) * sh - ph + 1), init=-ph)        # oy·by·sh − ph
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

        # Reader: an output row's elements are ready once all its rows are complete
        # (``avail``, a register: :func:`_flow_control`); ``pad``: the element is padding.
        pad = Signal()
        m.d.comb += pad.eq(_outside(iy, H) | _outside(ix, W))
        reader = _Reader(m, self, avail_init=int(blk.kh <= ph))
        self._reader, step = reader, reader.step    # a copy of ``take``: the counters' enable
        pad_a = Signal(reset_less=True)
        pad_reg = Signal(reset_less=True)
        # The read address (slot·W + ix)·C + c, slot = (base_slot + ky) mod R: the row's
        # slot (row_slot) through a table of slot·W·C, plus col_addr = ix·C + c, a register
        # that follows the counters (any value on padding). No multiplier sits between the
        # counters and the memory (one did, and it set Fmax).
        WC = W * C
        row_slot = Signal(range(R), init=base_slot.init)
        col_lo, col_hi = -pw * C, ((ow - 1) * sw - pw + kw) * C
        col_addr = Signal(range(min(0, col_lo), col_hi + 1), init=col_lo)
        ix0c = Signal(range(min(0, col_lo), col_hi + 1), init=col_lo)  # ix0·C

        rows = _Rows(R, H, blk.sh, ph, oy, low, r_done, ahead, img_slot, base_slot, row_slot,
                     **blk.rows_fields(base_slot, low, R))
        steps = _row_steps(m, rows, blk.by * ow * C * kh * kw)

        # The read address and the padding flag follow the reader's state every cycle (no
        # enable): what a take reads is the state's at the take (:class:`_Reader`).
        r_addr = Signal.like(rd.addr, reset_less=True)
        m.d.comb += [rd.addr.eq(r_addr), rd.en.eq(1)]
        m.d.sync += [pad_a.eq(pad),
                     r_addr.eq(_slot_words(m, row_slot, R, WC, "row_words") + col_addr),
                     pad_reg.eq(pad_a)]
        # the element as read and whether it is padding
        reader.output(m, Cat(rd.data, pad_reg), lambda bits: Mux(bits[xw], 0, bits[:xw]))

        last_kx, last_ky, last_c = kx == kw - 1, ky == kh - 1, c == C - 1
        last_ox, last_oy = ox == blk.ow - 1, oy == blk.oh - 1
        with m.If(step):
            m.d.sync += kx.eq(Mux(last_kx, 0, kx + 1))
            with m.If(~last_kx):
                m.d.sync += col_addr.eq(col_addr + C)
            with m.Else():
                m.d.sync += ky.eq(Mux(last_ky, 0, ky + 1))
                with m.If(~last_ky):
                    m.d.sync += [col_addr.eq(ix0c + c),
                                 row_slot.eq(_wrap(row_slot + 1, R))]
                with m.Else():
                    m.d.sync += [c.eq(Mux(last_c, 0, c + 1)), row_slot.eq(blk.row_base)]
                    with m.If(~last_c):
                        m.d.sync += col_addr.eq(ix0c + c + 1)
                    with m.Else():
                        def next_block():
                            m.d.sync += [ox.eq(Mux(last_ox, 0, ox + 1)),
                                         ix0.eq(Mux(last_ox, -pw, ix0 + sw)),
                                         ix0c.eq(Mux(last_ox, col_lo, ix0c + sw * C)),
                                         col_addr.eq(Mux(last_ox, col_lo, ix0c + sw * C))]
                            with m.If(last_ox):
                                _next_output_row(m, rows, steps, last_oy)

                        def move(cols):
                            # ``cols`` columns on (or back) within the block
                            m.d.sync += [ix0.eq(ix0 + cols), ix0c.eq(ix0c + cols * C),
                                         col_addr.eq(ix0c + cols * C)]
                        blk.next_pixel(m, rows, row_slot, next_block, move, sw)
        with m.If(step):
            with m.If(~last_kx):
                m.d.sync += ix.eq(ix + 1)
            with m.Elif(last_ky & last_c):
                m.d.sync += ix.eq(blk.next_ix0(ix0, Mux(last_ox, -pw, ix0 + sw), sw))
            with m.Else():
                m.d.sync += ix.eq(ix0)
            with m.If(last_kx):
                blk.next_iy(m, iy, low, last_ky, last_c, last_ox, last_oy, sh, ph)
        # (A switch comes only once the reader is done: no take in the same cycle.)
        w_last = _ends_next(m, write, [(w_px, W * C)], "w_last")
        wr_end, wr_end_rows = write & w_last, writer.rows & w_last
        with m.If(switch):
            _hand_over(m, rows, steps, w_row, wr_end)
        self._ahead = (ahead, _reader_ahead(m, self, ahead_rows, switch, wr_end_rows, w_row, H))
        row_end = _ends_next(m, step, [(ox, blk.ow), *blk.counters, (c, C), (ky, kh),
                                       (kx, kw)], "r_last")
        self._flow = _flow_control(
            m, writer, reader, w_row=w_row, low=low, ahead=ahead, ahead_rows=ahead_rows,
            r_done=r_done, switch=switch, w_end=wr_end,
            oy=oy, oh=blk.oh, r_end=reader.rows & row_end, H=H, R=R, kh=blk.kh, sh=blk.sh,
            ph=ph, w_beats=W * C, r_beats=blk.by * ow * C * kh * kw)
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

    _style = "row"

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
        blk = _Block(self)
        Wb = -(-W // kw)                        # column groups: pixel x in group x // kw
        xw = self._shape.width
        rw = Shape.cast(range(kw)).width

        def finish(bits):
            """The banks' data, the rotations and the padding flags, as read, into the kernel
            row: element kx from bank (rot + kx) mod kw, by a copy of rot of its own (a
            group window's 32-bit elements: 160 bits selected), or 0 where it is
            padding."""
            data = [bits[b * xw:(b + 1) * xw] for b in range(kw)]
            rots, pads = bits[kw * xw:kw * (xw + rw)], bits[kw * (xw + rw):]
            elements = []
            for kx in range(kw):
                rot = rots[kx * rw:(kx + 1) * rw]
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
        w_slot = Signal(range(R))               # the writer's row's slot
        oy = Signal(range(blk.oh))             # the reader's row: ``by`` output rows
        ox = Signal(range(blk.ow))             # its block of ``bx`` output pixels
        c = Signal(range(C))
        ky = Signal(range(kh))
        low = Signal(range(-ph, (oh - 1) * sh - ph + 1), init=-ph)        # oy·by·sh − ph
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

        next_slot = Mux(w_slot == R - 1, 0, w_slot + 1)
        _banked_writer(m, write, ahead, w_row, w_c, w_x, w_b, w_grp, C, H, W, kw,
                       [w_slot.eq(next_slot),
                        w_grp.eq(_slot_words(m, next_slot, R, BWC, "w_row_words"))])

        # Reader: one kernel row (c, ky) per beat; bank b holds column ix0 + ((b − r0) mod kw)
        # at group q0 + (b < r0), with ix0 = q0·kw + r0.
        q_lo, q_hi = (-pw) // kw, ((ow - 1) * sw - pw) // kw + 1
        r0 = Signal(range(kw), init=(-pw) % kw)
        qc = Signal(range(min(0, q_lo * C), q_hi * C + C + 1), init=((-pw) // kw) * C)
        q0c = Signal.like(qc, init=((-pw) // kw) * C)             # q0·C
        row_slot = Signal(range(R), init=base_slot.init)     # the kernel row's slot
        reader = _Reader(m, self, avail_init=int(blk.kh <= ph))
        self._reader, step = reader, reader.step    # a copy of ``take``: the counters' enable
        row_pad = _outside(iy, H)
        pads_a = Signal(kw, reset_less=True)    # element kx of the beat is padding
        rot_a = Signal(range(kw), reset_less=True)
        pads = Signal(kw, reset_less=True)
        # The read addresses, padding flags and rotation follow the reader's state every
        # cycle (no enable): what a take reads is the state's at the take (:class:`_Reader`).
        m.d.sync += [pads_a.eq(Cat(*[row_pad | _outside(ix0, W, kx)
                                     for kx in range(kw)])), rot_a.eq(r0),
                     pads.eq(pads_a)]
        rots = [copy_register(m, rot_a, f"rot{kx}", emit=self._emit) for kx in range(kw)]
        row_words = _slot_words(m, row_slot, R, BWC, "row_words")
        for b, (_, rd) in enumerate(banks):
            # columns left of the rotation point sit one group further on
            addr = Signal.like(rd.addr, name=f"r_addr{b}", reset_less=True)
            m.d.sync += addr.eq(row_words + qc + (Mux(r0 > b, C, 0) if b < kw - 1 else 0))
            m.d.comb += [rd.addr.eq(addr), rd.en.eq(1)]
        reader.output(m, Cat(*[rd.data for _, rd in banks], *rots, pads), finish)

        rows = _Rows(R, H, blk.sh, ph, oy, low, r_done, ahead, img_slot, base_slot, row_slot,
                     **blk.rows_fields(base_slot, low, R))
        steps = _row_steps(m, rows, blk.by * ow * C * kh)
        last_ky, last_c = ky == kh - 1, c == C - 1
        last_ox, last_oy = ox == blk.ow - 1, oy == blk.oh - 1
        col_next = _column_step(ix0, r0, q0c, C, kw, sw)    # a pixel on: ix0, r0, q0c
        if blk.on:
            # the block's first column, kept to come back to on its next row
            b_col = [Signal.like(v, name=f"block_{v.name}") for v in (ix0, r0, q0c)]

        def next_block():
            if blk.on:      # the next block starts a pixel on from the block's last
                m.d.sync += [b.eq(Mux(last_ox, v.init, n))
                             for b, v, n in zip(b_col, (ix0, r0, q0c), col_next)]
            _next_pixel(m, rows, steps, ox, ix0, r0, q0c, qc, last_ox, last_oy, C, kw, sw, pw,
                        col_next)

        def move(cols):
            # a pixel on within the block's row, or back to the block's first column
            ix0_n, r0_n, q0c_n = col_next if cols > 0 else b_col
            m.d.sync += [ix0.eq(ix0_n), r0.eq(r0_n), q0c.eq(q0c_n), qc.eq(q0c_n)]
        with m.If(step):
            m.d.sync += ky.eq(Mux(last_ky, 0, ky + 1))
            with m.If(~last_ky):
                m.d.sync += row_slot.eq(_wrap(row_slot + 1, R))
            with m.Else():
                m.d.sync += [c.eq(Mux(last_c, 0, c + 1)), row_slot.eq(blk.row_base)]
                with m.If(~last_c):
                    m.d.sync += qc.eq(qc + 1)
                with m.Else():
                    blk.next_pixel(m, rows, row_slot, next_block, move, sw)
        with m.If(step):
            blk.next_iy(m, iy, low, last_ky, last_c, last_ox, last_oy, sh, ph)
        w_last = _ends_next(m, write, [(w_x, W), (w_c, C)], "w_last")
        wr_end, wr_end_rows = write & w_last, writer.rows & w_last
        with m.If(switch):
            _hand_over(m, rows, steps, w_row, wr_end)
        self._ahead = (ahead, _reader_ahead(m, self, ahead_rows, switch, wr_end_rows, w_row, H))
        row_end = _ends_next(m, step, [(ox, blk.ow), *blk.counters, (c, C), (ky, kh)],
                             "r_last")
        self._flow = _flow_control(
            m, writer, reader, w_row=w_row, low=low, ahead=ahead, ahead_rows=ahead_rows,
            r_done=r_done, switch=switch, w_end=wr_end,
            oy=oy, oh=blk.oh, r_end=reader.rows & row_end, H=H, R=R, kh=blk.kh, sh=blk.sh,
            ph=ph, w_beats=W * C, r_beats=blk.by * ow * C * kh)
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

    _style = "kernel"

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
        w_brow = Signal(range(Rk))              # slot // kh, the writer's row of its bank
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

        next_brow = Mux(w_rb == kh - 1, Mux(w_brow == Rk - 1, 0, w_brow + 1), w_brow)
        _banked_writer(m, write, ahead, w_row, w_c, w_x, w_b, w_grp, C, H, W, kw,
                       [w_brow.eq(next_brow),
                        w_grp.eq(_slot_words(m, next_brow, Rk, BWC, "w_row_words")),
                        w_rb.eq(Mux(w_rb == kh - 1, 0, w_rb + 1))])

        # Reader: one channel's kernel per beat. Column bank b holds column
        # ix0 + ((b − r0) mod kw) at group q0 + (b < r0), with ix0 = q0·kw + r0 (as in
        # :class:`RowWindow`); row bank rb holds kernel row (rb − base_slot) mod kh at
        # that slot's row of the bank, from a table of base_slot.
        q_lo, q_hi = (-pw) // kw, ((ow - 1) * sw - pw) // kw + 1
        r0 = Signal(range(kw), init=(-pw) % kw)
        qc = Signal(range(min(0, q_lo * C), q_hi * C + C + 1), init=((-pw) // kw) * C)
        q0c = Signal.like(qc, init=((-pw) // kw) * C)             # q0·C
        reader = _Reader(m, self, avail_init=int(kh <= ph), middle=True)
        self._reader, step = reader, reader.step    # a copy of ``take``: the counters' enable

        def by_slot(values, name):
            """``values[base_slot]`` as a register that moves with ``base_slot``, loaded
            from registers that follow its next values (:func:`_row_steps`: they move at
            least ``ow·C`` cycles apart, and these follow them a cycle later still). Read
            from ``base_slot`` through a case, then added into every bank's read address,
            Yosys made a select of every sum (a 5 × 5 kernel's: 6,576 LUT4)."""
            if ow * C < 3:
                return _slot_table(m, values, base_slot)
            reg = Signal(range(max(values) + 1), init=values[base_slot.init], name=name)
            nxt = Signal.like(reg, name=f"{name}_next", reset_less=True)
            img = Signal.like(reg, name=f"{name}_img", reset_less=True)
            m.d.sync += [nxt.eq(_slot_table(m, values, steps["next_slot"])),
                         img.eq(_slot_table(m, values, steps["base_slot"]))]
            with m.If(step & last_c & last_ox & ~last_oy):
                m.d.sync += reg.eq(nxt)
            with m.If(switch):
                m.d.sync += reg.eq(img)
            return reg

        def bank_row(rb, s_):
            """The row of row bank ``rb`` that holds kernel row ``(rb − s_) mod kh`` of a
            window whose first row is in slot ``s_``."""
            return ((s_ + (rb - s_) % kh) % R) // kh

        rows = _Rows(R, H, sh, ph, oy, low, r_done, ahead, img_slot, base_slot)
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
        w_last = _ends_next(m, write, [(w_x, W), (w_c, C)], "w_last")
        wr_end, wr_end_rows = write & w_last, writer.rows & w_last
        with m.If(switch):
            _hand_over(m, rows, steps, w_row, wr_end)
        self._ahead = (ahead, _reader_ahead(m, self, ahead_rows, switch, wr_end_rows, w_row, H))
        row_end = _ends_next(m, step, [(ox, ow), (c, C)], "r_last")
        self._flow = _flow_control(
            m, writer, reader, w_row=w_row, low=low, ahead=ahead, ahead_rows=ahead_rows,
            r_done=r_done, switch=switch, w_end=wr_end,
            oy=oy, oh=oh, r_end=reader.rows & row_end, H=H, R=R, kh=kh, sh=sh, ph=ph,
            w_beats=W * C,
            r_beats=ow * C)
        return m


class GroupWindow(wiring.Component):
    """Windows of a feature map, the kernels of a group of ``g`` channels per beat: the
    ``g·kh·kw`` elements ``(c, ky, kx)`` for ``c`` from ``g·cg`` to ``g·cg + g − 1`` of each
    output pixel's window leave together, in the same ``(c, ky, kx)`` order as
    :class:`SlidingWindow` (element ``(j, ky, kx)`` of the group at bits
    ``((j·kh + ky)·kw + kx)·w``), a beat every ``kh`` cycles: ``g·kw`` elements a cycle,
    for a matrix-vector unit whose SIMD is a multiple of ``g·kh·kw``.

    A :class:`RowWindow` over words of ``g`` channels: its line buffer's ``kw`` column banks
    hold a pixel's ``g`` channels in a word (LeNet-5's conv2, 32 channels of 8 bits in
    groups of 4: five 264 × 32-bit banks, a block RAM each, as a row window's five of
    8 bits, at four times its rate, where a channel's kernel a beat takes 25). In front, a
    :class:`~.repack.Repack` packs each pixel's channels into words; behind, another
    gathers a group's ``kh`` kernel rows (``(ky, kx, j)`` as read) into a beat, whose
    elements are wired into the weights' order. Flow control is the parts': each takes a
    beat a cycle and its ``ready`` is a register.

    Parameters
    ----------
    As :class:`SlidingWindow`'s, and:

    group : int
        Channels a word holds, ``g``: at least 2, dividing ``channels``.
    in_beat : int
        Elements of an input beat, dividing ``g`` (a pixel's channels in order).
    pieces : bool
        The gather's word in pieces (:class:`~.repack.Repack`).
    """

    def __init__(self, shape, channels, height, width, kernel, *, group, stride=1,
                 padding=0, block=1, in_beat=1, pieces=True, emit=False):
        self._shape = Shape.cast(shape)
        c = _positive("Channels", channels)
        self._g = g = _positive("Group", group, 2)
        if c % g:
            raise ValueError(f"Group {g} must divide the {c} channels")
        self._in = _positive("Input beat", in_beat)
        if g % in_beat:
            raise ValueError(f"Input beat {in_beat} must divide the group of {g} channels")
        self._c = c
        self._k = _pair("Kernel", kernel, 1)
        self._pieces, self._emit = pieces, emit
        xw = self._shape.width
        self._rows = RowWindow(g * xw, c // g, height, width, kernel, stride=stride,
                               padding=padding, block=block, emit=emit)
        super().__init__({"i": In(stream.Signature(in_beat * xw)),
                          "o": Out(stream.Signature(g * self._k[0] * self._k[1] * xw))})

    @property
    def simd(self):
        return self._g * self._k[0] * self._k[1]

    @property
    def output_size(self):
        return self._rows.output_size

    @property
    def window_beats(self):
        """Beats per output pixel: ``channels / g``."""
        return self._c // self._g

    @property
    def beats_per_image(self):
        oh, ow = self.output_size
        return oh * ow * self.window_beats

    @property
    def buffer_rows(self):
        return self._rows.buffer_rows

    def elaborate(self, platform):
        from .repack import Repack
        m = Module()
        g, (kh, kw), xw = self._g, self._k, self._shape.width
        m.submodules.pack = pack = Repack(self._shape, self._c, self._in, g,
                                          pieces=self._pieces, emit=self._emit)
        m.submodules.rows = rows = self._rows
        m.submodules.gather = gather = Repack(self._shape, self._c * kh * kw, g * kw,
                                              self.simd, pieces=self._pieces, emit=self._emit)
        wiring.connect(m, wiring.flipped(self.i), pack.i)
        wiring.connect(m, pack.o, rows.i)
        wiring.connect(m, rows.o, gather.i)
        # gathered: kernel row ky's beat at ky·kw·g, its column kx's word at kx·g, channel j
        # of the word at j; out: (j, ky, kx)
        word = gather.o.payload
        m.d.comb += [
            self.o.payload.eq(Cat(*[word[((ky * kw + kx) * g + j) * xw:][:xw]
                                    for j in range(g) for ky in range(kh)
                                    for kx in range(kw)])),
            self.o.valid.eq(gather.o.valid), gather.o.ready.eq(self.o.ready)]
        return m


def _slot_table(m, values, slot, name="slot_table"):
    """``values[slot]`` for a slot register: a case of it, a LUT per bit."""
    out = Signal(range(max(values) + 1), name=name)
    with m.Switch(slot):
        for s_, v in enumerate(values):
            with m.Case(s_):
                m.d.comb += out.eq(v)
    return out


def _slot_words(m, slot, R, words, name):
    """``slot·words`` for a slot register (``0 … R − 1``) from a table of ``R`` constants,
    where the rows' addresses were registers stepped by ``words`` and wrapped around the
    buffer (an adder, a compare and a subtraction each, in carry chains)."""
    return _slot_table(m, [s_ * words for s_ in range(R)], slot, name)


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
    (:func:`_flow_control`; from the producer's output FIFO, placed by the producer, the
    handshake ran into the writer's row end and the reader's ``avail``: the placed
    ResNet-20's longest path, 10.2 ns of routing). Full rate; the skid holds up to two beats,
    which the skip FIFO sizing counts.

    ``write`` enables the writer's counters, the line buffer's write and the room; ``rows``,
    a copy of it from copies of those two registers (``flexor_copy`` cells, each following
    the reset through its input), moves the reader's copy of ``ahead``, which sits by the
    reader (from the skid's ``valid`` across the window into the reader's registers was the
    placed ResNet-20's longest path, 2.2 ns of logic, 8.7 of routing)."""

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
    the writer's own ``ahead`` clears with it, unless the writer has completed that image
    too: :func:`_hand_over`). The hand-over and ``avail``'s flags read it, so their logic
    stays by the reader: through the writer's ``ahead``,
    the reader's row address was the placed ResNet-20's longest path (a window's ``c``
    through the hand-over's select by ``ahead`` and back, 8.8 ns of routing). Equal to
    ``ahead`` in every cycle (a switch needs ``ahead``, the writer's set its absence).
    Returns it."""
    full = Mux(wr_end_rows, w_row == H - 1, w_row == H)    # as the writer's (:func:`_hand_over`)
    return flag_copy(m, wr_end_rows & (w_row == H - 1), switch & ~full, "ahead_rows",
                     emit=unit._emit, flag=ahead_rows)


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
        self.avail = Signal(init=avail_init, name="avail")     # :func:`_flow_control`
        self.take = Signal(name="take")
        m.d.comb += self.take.eq(self.avail & credits.room)
        # copies of ``take`` (:meth:`set_avail`): the counters' and read addresses' enable,
        # and the flow control's (its output row end)
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
        flip-flops) and the flow control each take their own copy, so ``take``
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


def _outside(v, n, k=0):
    """Whether ``v + k`` falls outside ``0 … n − 1``, as compares of ``v`` with constants
    (no adder in front of the compare)."""
    return (v < -k) | (v >= n - k)


def _flow_control(m, writer, reader, *, w_row, low, ahead, ahead_rows, r_done, switch, oy,
                  oh, w_end, r_end, H, R, kh, sh, ph, w_beats, r_beats):
    """The writer's room (``can_write``) and the reader's ``avail``, each a register, from
    flags that are registers themselves, a cycle behind the state they read: every compare
    sits between flip-flops, and ``write`` and ``take`` reach only the last gate in front
    of the room and ``avail``.

    A flag a cycle old is safe because it can only turn from false to true while its side
    stands still: the writer's rows done only grow, and the reader's rows only move on. So
    a flag is kept for where each side stands and for where its next row end takes it (and
    the one after, where a row is a single beat); an event chooses the next one's flag in
    its cycle and in the cycle after, while the flags still read the state before it.

    The reader takes a window once every row of its output row's windows is complete
    (rows ``low … low + kh − 1`` of its image that lie in the map: ``w_row`` counts them,
    or the writer has moved on to the next image, ``ahead``). The writer fills row ``w`` of
    its image when the row's slot holds no row the reader still needs: the rows before the
    reader's ``low`` are free; while the writer is ahead, its row ``w`` is row ``H + w`` of
    the reader's image and must not overwrite a row of its own image either (``w < R −
    ph``: the reader starts that image at ``-ph``), and once the reader is done that alone
    counts, so the writer goes on through the hand-over. ``w_beats`` and ``r_beats``: the
    beats of a writer's row and of a reader's output row. Returns the state the flags
    read, for tests."""

    def reg(value, init, name):
        r = Signal(init=int(init), name=name)
        m.d.sync += r.eq(value)
        return r

    def pick(event, event_d, flags, single):
        """The flag for the state after ``event`` (this cycle's, ``event_d`` the cycle
        before's): ``flags`` for no step, one and two steps on."""
        now, one, two = flags
        if not single:                      # two events never come in two cycles in a row
            return Mux(event | event_d, one, now)
        return Mux(event, Mux(event_d, two, one), Mux(event_d, one, now))

    # -- the reader
    def rows_ok(first):
        return ahead_rows | (w_row >= first + kh) | (w_row == H)

    single_r = r_beats < 2
    ok = [reg(~r_done & rows_ok(low), kh <= ph, "avail_ok"),
          reg((oy != oh - 1) & rows_ok(low + sh), False, "avail_ok_next"),
          reg((oy < oh - 2) & rows_ok(low + 2 * sh), False, "avail_ok_next2")
          if single_r else None]
    # the hand-over: the first output row of the writer's image (the next), from before it
    ok_img = reg(ahead_rows & (w_row >= min(kh - ph, H)), False, "avail_ok_image")
    r_end_d = reg(r_end, False, "r_end_d")
    switch_d = reg(switch, False, "switch_d")
    reader.set_avail(m, Mux(switch | switch_d, ok_img, pick(r_end, r_end_d, ok, single_r)))

    # -- the writer
    def room(w, ahead_x):
        """The writer may fill row ``w`` of its image (the next one, with ``ahead_x``)."""
        cur = (w < H) & (r_done | (w < low + R))
        nxt = (w < H) & (w < R - ph) & (r_done | (w + H < low + R))
        return Mux(ahead_x, nxt, cur)

    def step(ahead_x, w):
        """The writer's image and row after a row end."""
        wraps = ~ahead_x & (w == H - 1)
        return ahead_x | wraps, Mux(wraps, 0, w + 1)

    single_w = w_beats < 2
    a1, w1 = step(ahead, w_row)
    a2, w2 = step(a1, w1)
    room_init = [0 < H and 0 < R - ph,
                 (H > 1 and 1 < R - ph) or (H == 1 and H < R - ph), False]
    rooms = [reg(room(w_row, ahead), room_init[0], "room_ok"),
             reg(room(w1, a1), room_init[1], "room_ok_next"),
             reg(room(w2, a2), False, "room_ok_next2") if single_w else None]
    w_end_d = reg(w_end, False, "w_end_d")
    writer.set_room(m, pick(w_end, w_end_d, rooms, single_w))
    return {"w_row": w_row, "low": low, "r_done": r_done}


def _wrap(value, n):
    """``value mod n`` for ``0 ≤ value < 2·n``."""
    return Mux(value >= n, value - n, value)


@dataclass
class _Rows:
    """A window reader's row bookkeeping over its circular line buffer of ``R`` rows, in
    slots: ``img_slot`` holds its image's row 0, ``base_slot`` its output row's first row
    (``low``), ``row_slot`` the row it reads (None where the reader reads every row of a
    window at once); in blocks of output pixels (:class:`_Block`), ``pix_slot`` and
    ``pix_low`` the slot and row of the pixel's first row."""

    R: int
    H: int
    sh: int
    ph: int
    oy: object
    low: object
    r_done: object
    ahead: object
    img_slot: object
    base_slot: object
    row_slot: object = None
    pix_slot: object = None
    pix_low: object = None


class _Block:
    """A window reader's place in its block of output pixels (:class:`SlidingWindow`'s
    ``block``, ``(by, bx)``): the reader's row is ``by`` output rows (``kh + (by − 1)·sh``
    input rows, ``by·sh`` on to the next), each walked block by block, a block's pixels
    row by row (``dy``, ``dx``). The first row of the pixel's window, ``pix_low``, and its
    slot, ``pix_slot``, are registers: one output row on (``+ sh``) within the block, back
    to the block's first (``low``, ``base_slot``) at its end. Unblocked (``1 × 1``), the
    reader's raster order, and none of these."""

    def __init__(self, unit):
        (kh, _), (sh, _) = unit._k, unit._s
        oh, ow = unit.output_size
        self.by, self.bx = unit._b
        self.on = unit._b != (1, 1)
        self.oh, self.ow = oh // self.by, ow // self.bx
        self.kh, self.sh = kh + (self.by - 1) * sh, self.by * sh
        self._sh = sh
        self.dy = Signal(range(self.by), name="block_dy")
        self.dx = Signal(range(self.bx), name="block_dx")
        self.counters = [(self.dy, self.by), (self.dx, self.bx)] if self.on else []

    def rows_fields(self, base_slot, low, R):
        """``pix_slot`` and ``pix_low`` for :class:`_Rows` (none unblocked); sets
        :attr:`row_base`, the slot a pixel's window starts in."""
        self._R = R
        if not self.on:
            self.row_base = base_slot
            return {}
        self.pix_slot = Signal(range(R), init=base_slot.init, name="pix_slot")
        self.pix_low = Signal.like(low, name="pix_low")
        self.row_base = self.pix_slot
        return {"pix_slot": self.pix_slot, "pix_low": self.pix_low}

    def next_pixel(self, m, rows, row_slot, next_block, move, sw):
        """The reader moves on from a pixel's last element (under its step): ``move(cols)``
        along the block's row, or back to its first column on the next row, or
        ``next_block()`` (the raster order's next pixel, unblocked)."""
        if not self.on:
            next_block()
            return
        last_dx, last_dy = self.dx == self.bx - 1, self.dy == self.by - 1
        m.d.sync += self.dx.eq(Mux(last_dx, 0, self.dx + 1))
        with m.If(~last_dx):
            move(sw)
        with m.Elif(~last_dy):
            nxt = _wrap(self.pix_slot + self._sh, self._R)
            m.d.sync += [self.dy.eq(self.dy + 1), self.pix_slot.eq(nxt), row_slot.eq(nxt),
                         self.pix_low.eq(self.pix_low + self._sh)]
            move(-(self.bx - 1) * sw)
        with m.Else():
            m.d.sync += [self.dy.eq(0), self.pix_slot.eq(rows.base_slot),
                         row_slot.eq(rows.base_slot), self.pix_low.eq(rows.low)]
            next_block()

    def next_ix0(self, ix0, raster, sw):
        """The next pixel's first column: ``raster``'s (the next block's) at a block's
        end."""
        if not self.on:
            return raster
        return Mux(self.dx != self.bx - 1, ix0 + sw,
                   Mux(self.dy != self.by - 1, ix0 - (self.bx - 1) * sw, raster))

    def next_iy(self, m, iy, low, last_ky, last_c, last_ox, last_oy, sh, ph):
        """``iy``, the row read, as it follows a step of ``ky`` (:func:`_next_iy`)."""
        if not self.on:
            _next_iy(m, iy, low, last_ky, last_c & last_ox, last_oy, sh, ph)
            return
        with m.If(~last_ky):
            m.d.sync += iy.eq(iy + 1)
        with m.Elif(~last_c | (self.dx != self.bx - 1)):
            m.d.sync += iy.eq(self.pix_low)
        with m.Elif(self.dy != self.by - 1):
            m.d.sync += iy.eq(self.pix_low + sh)
        with m.Elif(~last_ox):
            m.d.sync += iy.eq(low)
        with m.Else():
            m.d.sync += iy.eq(Mux(last_oy, -ph, low + self.sh))


def _row_steps(m, r, beats_per_row):
    """The slots the reader moves to next, each ``(slot + k) mod R``: registers that follow
    ``base_slot`` and ``img_slot`` a cycle late (row addresses stepped this way through
    compares, subtractions and muxes in carry chains, 13 levels from one back into it, were
    a row window's longest path), or the expressions themselves where an output row takes
    one beat (the next row end would come before the register follows). Those move only at
    an output row's end or at the hand-over, at least ``beats_per_row`` cycles apart."""
    R, H, ph, sh = r.R, r.H, r.ph, r.sh
    steps = {"next_slot": (r.base_slot, _wrap(r.base_slot + sh % R, R)),
             "img_slot": (r.img_slot, _wrap(r.img_slot + H % R, R)),
             "base_slot": (r.base_slot, _wrap(r.img_slot + (H - ph) % R, R))}
    if beats_per_row < 2:
        return {k: expr for k, (_, expr) in steps.items()}
    regs = {}
    for k, (like, expr) in steps.items():
        regs[k] = Signal.like(like, name=f"step_{k}", reset_less=True)
        m.d.sync += regs[k].eq(expr)
    return regs


def _column_step(ix0, r0, q0c, C, kw, sw):
    """A column-banked reader's first column ``ix0 = q0·kw + r0`` (``q0c = q0·C``), ``sw``
    columns on: the three next values."""
    t = r0 + sw % kw
    carry = sw // kw + (t >= kw)
    return ix0 + sw, Mux(t >= kw, t - kw, t), q0c + carry * C


def _next_pixel(m, rows, steps, ox, ix0, r0, q0c, qc, last_ox, last_oy, C, kw, sw, pw,
                col_next=None):
    """A column-banked reader moves to its next output pixel, ``sw`` columns on: the first
    column ``ix0 = q0·kw + r0`` (``q0c = q0·C``; ``qc``, the read group, back to it), or the
    next output row's first. ``col_next``: :func:`_column_step`'s values, if made already."""
    ix0_n, r0_n, q0c_n = col_next or _column_step(ix0, r0, q0c, C, kw, sw)
    m.d.sync += [ox.eq(Mux(last_ox, 0, ox + 1)),
                 ix0.eq(Mux(last_ox, -pw, ix0_n)),
                 r0.eq(Mux(last_ox, r0.init, r0_n)),
                 q0c.eq(Mux(last_ox, q0c.init, q0c_n)),
                 qc.eq(Mux(last_ox, q0c.init, q0c_n))]
    with m.If(last_ox):
        _next_output_row(m, rows, steps, last_oy)


def _next_output_row(m, r, steps, last_oy):
    """The reader moves to the next output row (or is done with the image)."""
    m.d.sync += [r.oy.eq(Mux(last_oy, 0, r.oy + 1)),
                 r.low.eq(Mux(last_oy, -r.ph, r.low + r.sh))]
    if r.pix_low is not None:
        m.d.sync += r.pix_low.eq(Mux(last_oy, -r.ph, r.low + r.sh))
    with m.If(last_oy):
        m.d.sync += r.r_done.eq(1)
    with m.Else():
        m.d.sync += r.base_slot.eq(steps["next_slot"])
        for slot in (r.row_slot, r.pix_slot):
            if slot is not None:
                m.d.sync += slot.eq(steps["next_slot"])


def _hand_over(m, r, steps, w_row, w_end):
    """The reader, done, takes over the writer's image: rows run on around the buffer.
    Where the writer has completed that image too (its ``H`` rows, with this cycle's row end
    ``w_end`` or before), it stands at row 0 of the next one, ahead again (its row count
    stays below ``H``)."""
    full = Mux(w_end, w_row == r.H - 1, w_row == r.H)
    with m.If(full):
        m.d.sync += w_row.eq(0)
    m.d.sync += [r.ahead.eq(full), r.r_done.eq(0),
                 r.img_slot.eq(steps["img_slot"]), r.base_slot.eq(steps["base_slot"])]
    for slot in (r.row_slot, r.pix_slot):
        if slot is not None:
            m.d.sync += slot.eq(steps["base_slot"])
