"""Layer engine: weight ROM → XOR decoders → binary-code MAC, streaming activations in and out."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .mac import BinaryCodeMac, _shape, output_shape
from .rom import Rom
from .vector_buffer import VectorBuffer
from .weight_stream import PRIME_CYCLES, WeightStream
from .xor_decoder import XorDecoderArray

__all__ = ["LayerEngine"]


class _PassThrough(wiring.Component):
    def __init__(self, width):
        super().__init__({"i": In(width), "o": Out(width)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.o.eq(self.i)
        return m


def _select(index, values):
    """``values[index]`` as one expression (a Mux chain; the last value is the default)."""
    expr = values[-1]
    for i in range(len(values) - 2, -1, -1):
        expr = Mux(index == i, values[i], expr)
    return expr


class LayerEngine(wiring.Component):
    """One FleXOR layer in hardware.

    Activations arrive one per beat on ``i`` (a vector is ``fan_in`` beats, in column order);
    requantized outputs leave one per beat on ``o`` (``out`` beats per vector, row order).
    With ``params.double_buffer`` the next vector loads into a shadow register while one is
    computed; without it (layers that are not bottlenecks) loading and computing take turns.
    A stream of vectors runs at :attr:`cycles_per_inference` cycles each; when the output is
    not stalled the engine takes one ROM word (or one sub-step of it) per cycle.

    The activation vector sits in a register that rotates by the step size after each step, so
    lane ``m`` always sees the activation of the weight it multiplies: rotation by a constant is
    wiring, not multiplexers, and rows starting or ending inside a slice need no special case.

    Parameters
    ----------
    params : :class:`flexor_hw.gateware.params.EngineParams`
        Plain numbers: shape, options, constants, M⊕, and the ROM contents for simulation.
    init_files : tuple of str, optional
        ``(weights, constants)`` ``$readmemh`` file names: emit ROMs as ``flexor_rom``
        instances (for Verilog). Without them the ROMs are Amaranth memories (for simulation).
    logic_rom_bits : int
        With ``init_files``: ROMs of at most this many bits are asked to be logic, not block
        RAM (0: every ROM in block RAM).
    """

    def __init__(self, params, *, init_files=None, logic_rom_bits=0):
        self._params = params
        self._init_files = init_files
        self._logic_rom_bits = logic_rom_bits
        c = params.consts
        super().__init__({
            "i": In(stream.Signature(_shape(c.x_lo, c.x_hi))),
            "o": Out(stream.Signature(output_shape(params))),
        })

    @property
    def params(self):
        return self._params

    @property
    def cycles_per_inference(self):
        return self._params.cycles_per_inference

    @property
    def latency(self):
        return self._params.latency_cycles

    def elaborate(self, platform):
        m = Module()
        params, c = self._params, self._params.consts
        f, q, n_words = params.fan_in, params.q, params.n_words
        lanes_m, window, t_steps = params.step_lanes, params.window, params.steps_per_word
        sizes = params.step_sizes
        x_shape = _shape(c.x_lo, c.x_hi)
        xw = x_shape.width

        if self._init_files is None:
            if params.rom_words is None or params.const_words is None:
                raise ValueError("Without init_files the engine needs the ROM contents: "
                                 "params.rom_words and params.const_words")
            rom = Rom(params.rom_width, words=params.rom_words, latency=2)
            mac = BinaryCodeMac(params)
        else:
            rom = Rom(params.rom_width, depth=n_words, init_file=self._init_files[0],
                      logic=params.rom_bits <= self._logic_rom_bits, latency=2)
            mac = BinaryCodeMac(params, const_init_file=self._init_files[1],
                                logic_rom_bits=self._logic_rom_bits)
        m.submodules.rom = rom
        m.submodules.weights = weights = WeightStream(rom)
        # A vector shorter than the stream's priming could load before it: such an engine
        # takes no input until the stream is primed. Longer ones need no gate (and their
        # input's enable, which fans out to every activation register, no extra input).
        primed = weights.primed if f < PRIME_CYCLES else Const(1)
        if params.baseline:       # the ROM already holds decrypted bits
            dec = _PassThrough(params.rom_width)
        else:
            dec = XorDecoderArray(params.xor, params.lanes)
        m.submodules.decoders = dec
        m.submodules.mac = mac
        wiring.connect(m, wiring.flipped(self.o), mac.o)
        active = Signal()
        if params.act_memory and any(size != lanes_m for size in sizes):
            raise ValueError(f"An activation memory needs steps of equal size: the window "
                             f"({params.window} bits) a multiple of the MAC lanes ({lanes_m})")

        # Input side: the next vector loads (into the shadow register, or the vector buffer's
        # other half) while this one is computed, summed on the way. A layer that is not a
        # bottleneck has no shadow: it loads x_reg while it is idle.
        xsum_shape = _shape(f * c.x_lo, f * c.x_hi)
        shadow_sum = Signal(xsum_shape)
        if params.act_memory:
            m.submodules.vectors = buf = VectorBuffer(x_shape, f, lanes_m,
                                                      double=params.double_buffer)
            full = buf.full
            m.d.comb += [buf.i.valid.eq(self.i.valid & primed),
                         buf.i.payload.eq(self.i.payload),
                         self.i.ready.eq(buf.i.ready & primed), buf.hold.eq(active)]
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += shadow_sum.eq(shadow_sum + self.i.payload)
        else:
            x_reg = Signal(f * xw)
            shadow = Signal(f * xw) if params.double_buffer else x_reg
            count = Signal(range(max(2, f)))
            full = Signal()
            taken = Signal()
            accept = primed & (~full if params.double_buffer else ~full & ~active)
            m.d.comb += [self.i.ready.eq(accept), taken.eq(self.i.valid & accept)]
            if params.double_buffer:
                with m.If(taken):
                    m.d.sync += shadow.eq(Cat(shadow[xw:], self.i.payload))
            with m.If(taken):
                m.d.sync += shadow_sum.eq(shadow_sum + self.i.payload)
                with m.If(count == f - 1):
                    m.d.sync += [count.eq(0), full.eq(1)]
                with m.Else():
                    m.d.sync += count.eq(count + 1)

        # Compute side: the vector under work, rotated so lane m sees column (r + m) mod f.
        x_sum = Signal(xsum_shape)
        first = Signal()
        addr = Signal(range(max(2, n_words)))
        k = Signal(range(max(2, t_steps)))
        k_last = Signal(init=t_steps == 1)      # k == t_steps − 1, kept as a register
        rem = Signal(range(f + 1), init=f)
        head = Signal(lanes_m + 1, init=(1 << min(lanes_m + 1, f)) - 1)   # head[m] = m < rem

        def move_rem(offset):
            """rem += offset; head[m] = (rem + offset > m) is compared as rem > m − offset: the
            register against constants, with no adder on the way."""
            bits = [Const(1) if m - offset < 0 else Const(0) if m - offset >= f    # rem ≤ f
                    else rem > m - offset for m in range(lanes_m + 1)]
            return [rem.eq(rem + offset), head.eq(Cat(*bits))]

        # Each signal is driven by one statement: Yosys then emits `assign`, never an
        # `always @*` that Icarus would not evaluate at time 0 (the step payload once came
        # out as four partial always blocks and read X until its inputs changed).
        bits = Signal(q * lanes_m)
        count_now = Signal(range(lanes_m + 1))
        bits_k, count_k = [], []
        for step_k, size in enumerate(sizes):
            parts = []
            for p in range(q):
                lo = p * window + step_k * lanes_m
                parts.append(dec.o[lo:lo + size])
                if size < lanes_m:
                    parts.append(Const(0, lanes_m - size))
            bits_k.append(Cat(*parts))
            count_k.append(Const(size, len(count_now)))
        m.d.comb += [bits.eq(_select(k, bits_k)), count_now.eq(_select(k, count_k)),
                     mac.i.valid.eq(active),
                     mac.i.payload.eq(Cat(bits, buf.o if params.act_memory else x_reg[:lanes_m * xw],
                                          count_now, rem, head,
                                          first, x_sum))]

        # The step decision (active & the MAC's ready) is itself a register, set from both
        # their next values: it enables the activation register's rotation, the bookkeeping
        # and the weight queue's pop, and a register drives that fan-out best.
        stepping = Signal()
        # The weight stream reads the ROM ahead, in the same cyclic order: its head is always
        # word `addr` (a vector's last step and a load both leave `addr` at 0), and it is
        # taken with a word's last step. No vector loads before it is primed (see `primed`
        # above); from then on it is never empty when a step needs it.
        m.d.comb += [dec.i.eq(weights.o.payload),
                     weights.o.ready.eq(stepping & k_last)]
        active_next = Signal()
        # Whether (addr, k) is a vector's last step, as a register: the compare stays off the
        # load enable's path. Its value after a step is worked out from registers only, so
        # the step decision (the MAC's ready) just selects it.
        at_start = int(n_words == 1 and t_steps == 1)
        last_step = Signal(init=at_start)
        after_step = Signal()
        penultimate_word = (addr == n_words - 2) if n_words >= 2 else Const(0)
        penultimate_k = (k == t_steps - 2) if t_steps >= 2 else Const(0)
        m.d.comb += after_step.eq(Mux(
            k_last,
            Mux(last_step, at_start, penultimate_word if t_steps == 1 else 0),
            (addr == n_words - 1) & penultimate_k))
        load = Signal()
        m.d.sync += [last_step.eq(Mux(load, at_start, Mux(stepping, after_step, last_step))),
                     stepping.eq(active_next & mac.ready_next)]      # = active & mac.i.ready
        m.d.comb += [
            active_next.eq(Mux(load, 1, Mux(stepping & k_last & last_step, 0,
                                           active))),
            load.eq(full & (~active | (stepping & last_step))
                    if params.double_buffer
                    else full & ~active),
        ]
        m.d.sync += active.eq(active_next)
        # `addr` counts the words of a vector (the queue's head is word `addr`); a vector's
        # last step leaves it at 0, where an idle engine sits.
        with m.If(stepping & k_last):
            m.d.sync += addr.eq(Mux(last_step, 0, addr + 1))
        if params.act_memory:
            m.d.comb += [buf.swap.eq(load), buf.step.eq(stepping)]
        else:
            # x_reg's next value in one enabled mux, so synthesis maps it to one LUT per bit:
            # rotate after a step; load the shadow (or shift in a beat, without a shadow).
            rotated = _select(k, [x_reg.rotate_right((size % f) * xw) for size in sizes])
            # (With a shadow, the load wins over the vector's last step in the same cycle;
            # without one, beats are taken only while idle, so the two never meet.)
            if params.double_buffer:
                with m.If(stepping | load):
                    m.d.sync += x_reg.eq(Mux(load, shadow, rotated))
            else:
                with m.If(stepping | taken):
                    m.d.sync += x_reg.eq(Mux(stepping, rotated,
                                             Cat(x_reg[xw:], self.i.payload)))
        with m.If(stepping):
            m.d.sync += first.eq(0)
            for step_k, size in enumerate(sizes):
                with m.If(k == step_k):
                    with m.If(rem > size):
                        m.d.sync += move_rem(-size)
                    with m.Else():
                        m.d.sync += move_rem(f - size)
            with m.If(k_last):
                m.d.sync += [k.eq(0), k_last.eq(t_steps == 1)]
            with m.Else():
                m.d.sync += [k.eq(k + 1), k_last.eq(k == t_steps - 2)]
        with m.If(load):
            m.d.sync += [x_sum.eq(shadow_sum), shadow_sum.eq(0), first.eq(1), k.eq(0),
                         k_last.eq(t_steps == 1),
                         rem.eq(f), head.eq(head.init)]
            if not params.act_memory:
                m.d.sync += full.eq(0)
        return m
