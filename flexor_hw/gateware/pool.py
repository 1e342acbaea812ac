"""Pooling units on ``(y, x, c)`` activation streams."""

from amaranth.hdl import Cat, Module, Mux, Shape, Signal
from amaranth.lib import fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .mul import const_product
from .pipeline import NO_RW_CHECK, copy_register
from .window import SlidingWindow, _positive

__all__ = ["MaxPool", "TiledMaxPool", "BlockMaxPool", "GroupMax", "GlobalAvgPool"]


class GroupMax(wiring.Component):
    """The maximum of each group of ``group`` consecutive beats, one output beat per group.

    ``o.valid`` and ``o.payload`` are registers; a group's maximum leaves one cycle after its
    last beat arrives.
    """

    def __init__(self, shape, group):
        self._shape = Shape.cast(shape)
        self._group = _positive("Group", group)
        super().__init__({"i": In(stream.Signature(self._shape)),
                          "o": Out(stream.Signature(self._shape))})

    def elaborate(self, platform):
        m = Module()
        n = self._group
        best = Signal(self._shape, reset_less=True)
        out = Signal(self._shape, reset_less=True)
        count = Signal(range(max(2, n)))
        m.d.comb += [self.i.ready.eq(~self.o.valid | self.o.ready), self.o.payload.eq(out)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            value = self.i.payload
            running = Mux(count == 0, value, Mux(value > best, value, best))
            with m.If(count == n - 1):
                m.d.sync += [count.eq(0), out.eq(running), self.o.valid.eq(1)]
            with m.Else():
                m.d.sync += [count.eq(count + 1), best.eq(running)]
        return m


class MaxPool(wiring.Component):
    """2-D max pooling (no padding) of a ``(y, x, c)`` stream into a ``(y', x', c)`` stream:
    a :class:`SlidingWindow` presents each pooling window channel by channel and a
    :class:`GroupMax` reduces it. Any kernel and stride; ``kh·kw`` cycles per output."""

    def __init__(self, shape, channels, height, width, kernel, *, stride=None):
        self._window = SlidingWindow(shape, channels, height, width, kernel,
                                     stride=kernel if stride is None else stride)
        kh, kw = self._window._k
        self._max = GroupMax(shape, kh * kw)
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    @property
    def output_size(self):
        return self._window.output_size

    @property
    def beats_per_image(self):
        oh, ow = self.output_size
        return oh * ow * self._window._c

    def elaborate(self, platform):
        m = Module()
        m.submodules.window = self._window
        m.submodules.max = self._max
        wiring.connect(m, wiring.flipped(self.i), self._window.i)
        wiring.connect(m, self._window.o, self._max.i)
        wiring.connect(m, self._max.o, wiring.flipped(self.o))
        return m


class TiledMaxPool(wiring.Component):
    """2-D max pooling whose windows tile the image (kernel = stride, no padding) of a
    ``(y, x, c)`` stream, ``simd`` channels of a pixel per beat in and out.

    One beat per cycle in: each beat is folded into the running maxima of its output pixel,
    kept for one output row (``⌊W/kw⌋·C`` elements, in ``⌊W/kw⌋·C/simd`` words); the beat
    that completes a window leaves through a FIFO of ``out_depth`` beats (three, or an output
    row's and three where the consumer drains a row slower than it comes). No line buffer of
    input rows,
    no window re-read: ``H·W·C/simd`` cycles per image (rows and columns past the last
    whole window are taken and dropped).

    The word read from the maxima is registered before it is compared (a block RAM's data
    comes 5.6 ns after the clock on the ECP5), and the result registered before it is
    written, so a word is written three cycles after its read; a word read again within
    those three cycles (``C ≤ 3·simd``) is forwarded.

    Maxima in LUT RAM (``ram_style="distributed"``) deeper than ``bank_words`` are cut into
    banks of that many words, each read at a copy of the read address of its own (registered
    where a block RAM registers it) and the bank chosen after: one address register into
    all of 448 words' 56 LUT-RAM cells and their 28-way read was the placed LeNet-5's longest
    path (pool1, 7.1 ns of routing). ``emit``: the copies as ``flexor_copy`` instances.
    """

    #: Words of a bank of maxima in LUT RAM: eight TRELLIS_DPR16X4 pages.
    BANK_WORDS = 128

    def __init__(self, shape, channels, height, width, kernel, *, simd=1, ram_style=None,
                 out_depth=3, bank_words=None, emit=False):
        self._shape = Shape.cast(shape)
        self._ram_style = ram_style         # "block", "distributed" or None (the tools')
        self._bank_words = _positive("Bank words", bank_words or self.BANK_WORDS)
        self._emit = emit
        self._out_depth = _positive("Output FIFO depth", out_depth)
        self._c = _positive("Channels", channels)
        self._h, self._w = _positive("Height", height), _positive("Width", width)
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self._k = (_positive("Kernel height", kh), _positive("Kernel width", kw))
        self._p = _positive("SIMD", simd)
        if self._c % self._p:
            raise ValueError(f"SIMD {self._p} must divide the channels ({self._c})")
        if kh > self._h or kw > self._w:
            raise ValueError(f"Kernel {kh}×{kw} is larger than the image {self._h}×{self._w}")
        lanes = self._shape.width * self._p
        super().__init__({"i": In(stream.Signature(lanes)), "o": Out(stream.Signature(lanes))})

    @property
    def output_size(self):
        return self._h // self._k[0], self._w // self._k[1]

    @property
    def beats_per_image(self):
        oh, ow = self.output_size
        return oh * ow * self._c // self._p

    @property
    def cycles_per_image(self):
        return self._h * self._w * self._c // self._p

    def elaborate(self, platform):
        m = Module()
        (kh, kw), P, xw = self._k, self._p, self._shape.width
        H, W, groups = self._h, self._w, self._c // self._p
        oh, ow = self.output_size
        depth = ow * groups

        attrs = {"ram_style": self._ram_style} if self._ram_style else None
        if self._ram_style == "block":
            # a read that meets the write of its place takes the forwarded word (``fwd_c``):
            # Yosys need not give the old one through a multiplexer and a register of the
            # write data behind the block RAM, where the read's register could not go into
            # the DP16KD's output register
            attrs = dict(NO_RW_CHECK, **attrs)
        B = self._bank_words
        banked = self._ram_style == "distributed" and depth > B
        n_banks = self._n_banks = -(-depth // B) if banked else 1       # (for tests)
        if not banked:
            m.submodules.maxima = mem = memory.Memory(shape=P * xw, depth=max(2, depth),
                                                      init=[], attrs=attrs)
            rport, wport = mem.read_port(domain="sync"), mem.write_port()
            self._maxima = mem                                        # for tests
        D = self._out_depth
        # three entries; more (a buffered FIFO, in memory) where the consumer drains slower
        # than an output row leaves (:class:`~flexor_hw.hw.stages.MaxPool`'s ``out_depth``)
        m.submodules.out = out = (fifo.SyncFIFO(width=P * xw, depth=3) if D == 3 else
                                  fifo.SyncFIFOBuffered(width=P * xw, depth=D))
        m.d.comb += [self.o.payload.eq(out.r_data), self.o.valid.eq(out.r_rdy),
                     out.r_en.eq(self.o.ready)]

        # Where the next beat is: channel group, pixel in the window, output column, row.
        cg = Signal(range(max(2, groups)))
        px, ox, x = Signal(range(max(2, kw))), Signal(range(ow + 1)), Signal(range(max(2, W)))
        py, y = Signal(range(max(2, kh))), Signal(range(max(2, H)))
        # Stage 1: the beat taken last cycle, its word arriving from the maxima. Stage 2: that
        # word registered (nothing but wiring behind a block RAM's data), compared, written.
        v1, first1, last1, keep1 = Signal(), Signal(), Signal(), Signal()
        v2, first2, last2, keep2 = Signal(), Signal(), Signal(), Signal()
        addr1, addr2, addr3 = (Signal(range(max(2, depth)), name=f"addr{k}") for k in (1, 2, 3))
        addr4 = Signal(range(max(2, depth)), name="addr4")
        v3, v4 = Signal(), Signal()
        in1, in2, old2 = (Signal(P * xw, name=k, reset_less=True) for k in ("in1", "in2", "old2"))
        new2, new3, new4, new5 = (Signal(P * xw, name=k, reset_less=True)
                                  for k in ("new2", "new3", "new4", "new5"))
        # A word is read the cycle its beat is taken and written three cycles later, from a
        # register (in LUT RAM the compare's result straight into the cells' write data was
        # the placed LeNet-5's longest path), so the reads of the next three beats miss
        # those writes: the newest such word is forwarded.
        fwd_a, fwd_b, fwd_c = Signal(), Signal(), Signal()

        pending = Cat(v1 & last1 & keep1, v2 & last2 & keep2)   # will write the FIFO
        take = Signal()
        # The beat taken now completes a window whose maximum leaves (stage 1's next flags).
        last0 = Signal()
        keep0 = Signal()
        m.d.comb += [last0.eq((px == kw - 1) & (py == kh - 1)),
                     keep0.eq((ox < ow) & (y < oh * kh))]
        # A beat is taken while the FIFO's entries and the maxima on their way to it number
        # fewer than its depth. That count is registered: next cycle's is this one's, plus
        # the beat taken now if it will write, less the entry read now; ``ready`` is a
        # flip-flop (the count's adder and compare ahead of the producer's FIFO were the
        # placed LeNet-5's longest path), and takes the same beats it did.
        ready = Signal(init=1)
        read = Signal()
        m.d.comb += [read.eq(out.r_rdy & out.r_en),
                     self.i.ready.eq(ready), take.eq(self.i.valid & ready)]
        m.d.sync += ready.eq(out.level + pending[0] + pending[1] + (take & last0 & keep0)
                             < D + read)
        addr = Signal(range(max(2, depth)))
        m.d.comb += addr.eq(ox * groups + cg)
        wdata, wen, waddr = Signal(P * xw), Signal(), Signal.like(addr)
        if banked:
            # a bank per B words, each read at its own copy of the registered address; the
            # bank chosen by a copy more
            sel = copy_register(m, addr // B, "bank_sel", emit=self._emit)
            words = []
            for b in range(n_banks):
                size = min(B, depth - b * B)
                bank = memory.Memory(shape=P * xw, depth=max(2, size), init=[], attrs=attrs)
                m.submodules[f"maxima{b}"] = bank
                a = copy_register(m, (addr - b * B)[:max(1, (size - 1).bit_length())],
                                  f"bank{b}_addr", emit=self._emit)
                rp, wp = bank.read_port(domain="comb"), bank.write_port()
                m.d.comb += [rp.addr.eq(a), wp.addr.eq(waddr - b * B), wp.data.eq(wdata),
                             wp.en.eq(wen & (waddr // B == b))]
                words.append(rp.data)
            rdata = Signal(P * xw)
            m.d.comb += rdata.eq(words[0])
            for b in range(1, n_banks):
                with m.If(sel == b):
                    m.d.comb += rdata.eq(words[b])
        else:
            m.d.comb += [rport.addr.eq(addr), rport.en.eq(1), wport.addr.eq(waddr),
                         wport.data.eq(wdata), wport.en.eq(wen)]
            rdata = rport.data
        with m.If(take):
            m.d.sync += cg.eq(Mux(cg == groups - 1, 0, cg + 1))
            with m.If(cg == groups - 1):
                m.d.sync += [x.eq(Mux(x == W - 1, 0, x + 1)),
                             px.eq(Mux((px == kw - 1) | (x == W - 1), 0, px + 1)),
                             ox.eq(Mux(x == W - 1, 0, Mux(px == kw - 1, ox + 1, ox)))]
                with m.If(x == W - 1):
                    m.d.sync += [y.eq(Mux(y == H - 1, 0, y + 1)),
                                 py.eq(Mux((py == kh - 1) | (y == H - 1), 0, py + 1))]
        w2 = v2 & keep2                                 # stage 2 writes its word
        m.d.sync += [v1.eq(take), first1.eq((px == 0) & (py == 0)),
                     last1.eq(last0), keep1.eq(keep0), addr1.eq(addr), in1.eq(self.i.payload),
                     v2.eq(v1), first2.eq(first1), last2.eq(last1), keep2.eq(keep1),
                     addr2.eq(addr1), in2.eq(in1), old2.eq(rdata),
                     v3.eq(w2), addr3.eq(addr2), new3.eq(new2), new4.eq(new3),
                     v4.eq(v3), addr4.eq(addr3), new5.eq(new4),
                     # stages 2 and 3 hold words stage 1's beat read too early, and stage 4
                     # one whose write its read missed
                     fwd_a.eq(w2 & (addr2 == addr1)),
                     fwd_b.eq(v3 & (addr3 == addr1)),
                     fwd_c.eq(v4 & (addr4 == addr1))]

        old = Mux(fwd_a, new3, Mux(fwd_b, new4, Mux(fwd_c, new5, old2)))
        self._ports = (take, addr, wen, waddr, fwd_a | fwd_b | fwd_c)  # for tests
        self._count = (out.level, pending, out.w_en, out.w_rdy)        # for tests
        lanes = []
        for k in range(P):
            a = in2[k * xw:(k + 1) * xw]
            b = old[k * xw:(k + 1) * xw]
            if self._shape.signed:
                a, b = a.as_signed(), b.as_signed()
            lanes.append(Mux(first2 | (a > b), a, b)[:xw])
        m.d.comb += [new2.eq(Cat(*lanes)),
                     waddr.eq(addr3), wdata.eq(new3), wen.eq(v3),
                     out.w_data.eq(new2), out.w_en.eq(v2 & last2 & keep2)]
        return m


def _clamp_shift(value, frac_bits, y_lo, y_hi):
    """``clamp((value + ⌊2^(F−1)⌋) >> F, lo, hi)`` (the contract's requantization)."""
    shifted = (value + ((1 << frac_bits) >> 1)) >> frac_bits
    return Mux(shifted < y_lo, y_lo, Mux(shifted > y_hi, y_hi, shifted))


class BlockMaxPool(wiring.Component):
    """2-D max pooling whose windows tile the image, of a stream in blocks: each pooling
    window's ``kh·kw`` pixels one after another (a :class:`~.window.SlidingWindow` with
    ``block = kernel`` in front of the producing engine emits its pixels so), ``simd``
    channels a beat; out, the pooled ``(y', x', c)`` stream.

    A window's running maxima are a ring of ``C/simd`` words of registers, one per beat of
    a pixel: the beat's word leaves the ring's head, is folded with the beat and goes back
    at its tail, and the window's last pixel sends it out instead. No memory, no forwarding:
    a beat's word is back at the head by the time its channels come again. One beat per
    cycle in; ``o.valid`` and ``o.payload`` are registers, a window's output beat leaving a
    cycle after its last input beat."""

    def __init__(self, shape, channels, kernel, *, simd=1):
        self._shape = Shape.cast(shape)
        self._c = _positive("Channels", channels)
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self._k = (_positive("Kernel height", kh), _positive("Kernel width", kw))
        self._p = _positive("SIMD", simd)
        if self._c % self._p:
            raise ValueError(f"SIMD {self._p} must divide the channels ({self._c})")
        beat = Shape(self._shape.width * self._p)
        super().__init__({"i": In(stream.Signature(beat)), "o": Out(stream.Signature(beat))})

    def elaborate(self, platform):
        m = Module()
        w, n = self._shape.width, self._p
        words, pixels = self._c // n, self._k[0] * self._k[1]
        ring = [Signal(w * n, name=f"maxima{j}", reset_less=True) for j in range(words)]
        pixel = Signal(range(pixels))
        beat = Signal(range(words))
        out = Signal(w * n, reset_less=True)
        take = Signal()
        m.d.comb += [self.i.ready.eq(~self.o.valid | self.o.ready),
                     take.eq(self.i.valid & self.i.ready), self.o.payload.eq(out)]

        def lane(v, k):
            x = v[k * w:(k + 1) * w]
            return x.as_signed() if self._shape.signed else x

        folded = Cat(*[Mux((pixel == 0) | (lane(self.i.payload, k) > lane(ring[0], k)),
                           lane(self.i.payload, k), lane(ring[0], k)) for k in range(n)])
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take):
            m.d.sync += [ring[j].eq(ring[j + 1]) for j in range(words - 1)]
            m.d.sync += [ring[-1].eq(folded), beat.eq(Mux(beat == words - 1, 0, beat + 1))]
            with m.If(beat == words - 1):
                m.d.sync += pixel.eq(Mux(pixel == pixels - 1, 0, pixel + 1))
            with m.If(pixel == pixels - 1):
                m.d.sync += [out.eq(folded), self.o.valid.eq(1)]
        return m


class GlobalAvgPool(wiring.Component):
    """Global average pooling of a ``(y, x, c)`` stream: one accumulator per channel, then
    ``clamp((A · Σ_hw x + round) >> F, lo, hi)`` per channel, in channel order.

    The accumulators are one memory (LUT RAM: a read, then the add and write a cycle later
    from registers), not a register per channel behind a ``C``-way multiplexer, in two banks:
    while one image's sums are given out, the next image accumulates in the other bank, so
    the input takes a beat every cycle, one image after another (a unit that took no input
    while it gave its ``C`` results held the unit before it back: a ResNet's last conv, at the
    network's rate, lost the cycles it waited). Gives ``channels`` beats an image,
    :data:`EMIT_CYCLES` cycles each (read, product, clamp), starting three cycles after the
    image's last beat; an image whose beats all arrive before the last one's results are
    given waits (:meth:`cycles_per_image`). Parameters are plain integers: ``A`` and
    ``frac_bits`` from the host's constants (:class:`flexor_hw.ops.pool.PoolConstants`), the
    clamp ``y_lo, y_hi``.
    """

    #: Cycles per output beat: the accumulator read into a register, its product with ``A``
    #: registered, the clamped result into the output register.
    EMIT_CYCLES = 3

    def __init__(self, in_shape, out_shape, channels, pixels, A, frac_bits, y_lo, y_hi, *,
                 emit=False, lut=False):
        self._in, self._out = Shape.cast(in_shape), Shape.cast(out_shape)
        self._emit = emit
        self._lut = lut
        self._c = _positive("Channels", channels)
        self._n = _positive("Pixels", pixels)
        self._A, self._f, self._lo, self._hi = int(A), int(frac_bits), int(y_lo), int(y_hi)
        super().__init__({"i": In(stream.Signature(self._in)),
                          "o": Out(stream.Signature(self._out))})

    @staticmethod
    def cycles(channels, pixels):
        """Cycles per image, unstalled: a beat a cycle, or, where an image has fewer beats
        than its results take, the results and the start of their read (measured)."""
        return max(channels * pixels, GlobalAvgPool.EMIT_CYCLES * channels + 1)

    @staticmethod
    def accumulator_depth(channels):
        """Words of the accumulator memory: two banks, bank b's channel c at
        ``b·2^w + c`` (``w`` the channel counter's bits)."""
        return 2 << Shape.cast(range(max(2, channels))).width

    def elaborate(self, platform):
        from amaranth.hdl import signed
        m = Module()
        C, n = self._c, self._n
        width, is_signed = self._in.width, self._in.signed
        lo = -(1 << (width - 1)) if is_signed else 0
        hi = (1 << (width - is_signed)) - 1
        acc_shape = signed(max(-lo * n, hi * n).bit_length() + 1)
        cw = Shape.cast(range(max(2, C))).width
        m.submodules.accs = accs = memory.Memory(shape=acc_shape,
                                                 depth=self.accumulator_depth(C), init=[])
        rport, eport = accs.read_port(domain="comb"), accs.read_port(domain="comb")
        wport = accs.write_port()
        c = Signal(range(max(2, C)))
        pix = Signal(range(max(2, n)))
        bank = Signal()                 # the bank the input accumulates in
        emitting = Signal()
        e_bank = Signal()               # the bank being given out
        done = Signal()                 # an image's last beat was taken; its write is pending
        pending = Signal()              # an image's sums wait to be given out
        take = Signal()
        # the input waits only where it would accumulate in the bank being given out
        m.d.comb += [self.i.ready.eq(~(emitting & (bank == e_bank))),
                     take.eq(self.i.valid & self.i.ready)]
        # Read, then add and write a cycle later from registers (a channel's next beat comes
        # C beats later; with one channel, the pending sum is forwarded).
        v_r, first_r = Signal(), Signal()
        a_r = Signal(cw + 1)
        acc_r = Signal(acc_shape, reset_less=True)
        x_r = Signal.like(self.i.payload, reset_less=True)
        total = Signal(acc_shape)
        m.d.comb += [total.eq(Mux(first_r, 0, acc_r) + x_r), rport.addr.eq(Cat(c, bank))]
        read = rport.data if C > 1 else Mux(v_r, total, rport.data)
        m.d.sync += [v_r.eq(take), first_r.eq(pix == 0), a_r.eq(Cat(c, bank)),
                     acc_r.eq(read), x_r.eq(self.i.payload), done.eq(0)]
        m.d.comb += [wport.addr.eq(a_r), wport.data.eq(total), wport.en.eq(v_r)]
        with m.If(take):
            m.d.sync += c.eq(Mux(c == C - 1, 0, c + 1))
            with m.If(c == C - 1):
                m.d.sync += pix.eq(Mux(pix == n - 1, 0, pix + 1))
                with m.If(pix == n - 1):
                    m.d.sync += [done.eq(1), bank.eq(~bank)]

        # Emit, one channel at a time: the accumulator read into the multiplier's operand
        # register, the product into its output register (both inside a MULT18X18D on the
        # ECP5: a bare one between fabric registers took 4.5 ns of logic), the clamp into the
        # output register. The address holds through the first two. An image's results start
        # once its last write is done and the image before has given all of its own.
        e = Signal(range(max(2, C)))
        m.d.comb += eport.addr.eq(Cat(e, e_bank))
        prod = const_product(m, eport.data, self._A, "mul", self._emit, lut=self._lut)
        phase = Signal(2)                       # 0 read, 1 product, 2 output
        with m.If(done):
            m.d.sync += pending.eq(1)
        with m.If(pending & ~emitting):
            # the pending image's bank is the one the input left (its next image cannot
            # end while the results are given out)
            m.d.sync += [emitting.eq(1), pending.eq(0), e_bank.eq(~bank)]
        with m.If(emitting):
            with m.If(phase != 2):
                m.d.sync += phase.eq(phase + 1)
            with m.Elif(~self.o.valid | self.o.ready):
                m.d.sync += [self.o.valid.eq(1), phase.eq(0),
                             self.o.payload.eq(_clamp_shift(prod, self._f, self._lo, self._hi)),
                             e.eq(Mux(e == C - 1, 0, e + 1))]
                with m.If(e == C - 1):
                    m.d.sync += emitting.eq(0)
        with m.If(self.o.valid & self.o.ready & ~(emitting & (phase == 2))):
            m.d.sync += self.o.valid.eq(0)
        return m
