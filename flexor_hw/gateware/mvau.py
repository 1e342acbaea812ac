"""Matrix-vector unit folded in two dimensions (FINN's MVAU): ``PE`` output rows × ``SIMD``
fan-in elements per cycle, each activation shared by the ``PE`` rows, FleXOR weights decoded
from a ROM image tiled for that folding."""

from dataclasses import dataclass
from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, ResetSignal, Shape, Signal, signed, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .madd import masked_add
from .mul import MUL_WIDTH, Multiplier, lut_product, lut_product_terms
from .pipeline import (NO_RW_CHECK, Credits, OutputFifo, copy_register, delay, flag_copy,
                       int_shape, kept_register, mux_tree, pipelined_sum, ram_style_attr)
from .repack import shift_in
from .rom import Rom, flat_group_bits, rom_banked
from .weight_stream import WeightStream
from .xor_decoder import XorDecoder

__all__ = ["MvauParams", "MatrixVectorUnit", "TREE_LEVELS_PER_REGISTER", "hold_steps",
           "mvau_cycles", "stationary_refusal", "MAX_STATIONARY_GROUPS",
           "xor_offset", "xor_refusal"]

#: Adder-tree levels between pipeline registers: a register on every level costs about as many
#: flip-flops per lane as the lane has LUTs, and flip-flops then become the limit.
TREE_LEVELS_PER_REGISTER = 2

#: PE rows whose first adders read one copy of the vector word's register.
X_COPY_ROWS = 4

#: Bits of an input-stationary unit's word register under one enable.
X_PIECE_BITS = 64


def mvau_cycles(fan_in, out_features, pe, simd, out_simd, in_simd=None):
    """Steady-state cycles per vector of a unit: its row groups (each ``SF`` steps, or the
    ``PE/R`` beats it takes to serialize), or loading the vector (``⌈F/in_simd⌉`` beats:
    ``SF`` of ``SIMD`` elements by default, ``F`` when it scatters one element a beat; and the
    hand-over); the next vector loads while this one is computed."""
    sf, nf = -(-fan_in // simd), -(-out_features // pe)
    return max(nf * max(sf, pe // out_simd), -(-fan_in // (in_simd or simd)) + 1)


def hold_steps(fan_in, n_out, pe, simd, plain=False):
    """Steps a weight word serves: ``n_out / SIMD`` where ``SIMD`` divides both ``n_out``
    and ``F`` and every PE row meets its slices at the same steps (one row, whose row groups
    follow each other through the slices, or ``n_out | F``); else 1. Such a unit reads a
    word of slices once and keeps it while its rows take their bits ``SIMD`` at a time, so
    each slice is stored once (LeNet-5's fc2 at ``1 × 4``: 256 words, not 1,280)."""
    if plain or simd >= n_out or n_out % simd or fan_in % simd or (pe > 1 and fan_in % n_out):
        return 1
    return n_out // simd


def xor_offset(x_shape):
    """``K`` of an activation's complement within its shape, ``~x = K − x``: ``2^w − 1``
    unsigned, ``−1`` signed. A row whose lanes add ``w ? x : ~x`` sums
    ``T + K·N₀ − (Σx − T) = S + K·N₀`` (``N₀`` its −1 weights)."""
    return -1 if x_shape.signed else (1 << x_shape.width) - 1


def xor_refusal(p):
    """Why the unit of params ``p`` cannot complement its activations (``xor_masks``), or
    None: the masks must be in the adders (``masked_adders``), the planes ±1 (not
    ``unipolar``), ``Σx`` not summed as the vector is written (those units start from
    ``−Σx``), and every lane a weight (``SIMD`` divides the fan-in: a lane past it would add
    a complement of its zero)."""
    if not p.masked_adders:
        return "needs the masks in the adders (masked_adders)"
    if p.unipolar:
        return "needs ±1 planes, not unipolar ones"
    if p.x_sum_written:
        return "sums Σx as the vector is written"
    if p.fan_in % p.simd:
        return f"needs SIMD ({p.simd}) to divide the fan-in ({p.fan_in})"
    return None


#: Most row groups an input-stationary unit keeps running sums for (a ring of registers each).
MAX_STATIONARY_GROUPS = 32


def stationary_refusal(p):
    """Why the unit of params ``p`` cannot be input-stationary, or None. It takes its input a
    word of ``SIMD`` activations a beat and holds it while its ``NF`` row groups take it, a
    step each, so a word of weights is read per step in column-block-major order: not where
    a word serves several steps (:func:`hold_steps`) or carries a slice from the word before
    (those follow a row group's words in turn), nor a scattered or narrow input, nor the
    iCE40's registered read address; its row groups' sums wait in a ring of registers, a
    group's beats in a buffer of LUT RAM (at most :data:`MAX_STATIONARY_GROUPS` groups), and
    a vector's ``NF`` groups end a step apart: the serializer takes one every ``G = PE/R``
    cycles, at most ``SF`` of them."""
    if p.carry:
        return "cannot carry slices from the word before (its words are not read in a row)"
    if hold_steps(p.fan_in, p.n_out, p.pe, p.simd, p.plain) > 1:
        return "cannot hold a word of slices for several steps"
    if p.scatter is not None or (p.in_simd or p.simd) != p.simd:
        return f"takes its input a word of SIMD ({p.simd}) elements a beat"
    if p.address_register:
        return "has no registered read address (it has no vector memory)"
    if -(-p.out_features // p.pe) > MAX_STATIONARY_GROUPS:
        return (f"keeps at most {MAX_STATIONARY_GROUPS} row groups' sums, not "
                f"{-(-p.out_features // p.pe)}")
    if p.pe // p.out_simd > -(-p.fan_in // p.simd):
        return (f"serializes a row group's {p.pe // p.out_simd} beats within its "
                f"{-(-p.fan_in // p.simd)} steps")
    return None


@dataclass(frozen=True, eq=False)
class MvauParams:
    """What a :class:`MatrixVectorUnit` is built from: plain numbers.

    Shape: ``fan_in`` (F) and ``out_features`` (O) of the weight matrix, ``q`` planes of
    ``n_out``-bit slices decrypted from ``n_in`` stored bits by ``xor`` (``[q, n_out, n_in]``).
    Folding: ``pe`` rows × ``simd`` columns per cycle; ``out_simd`` (R) results per output
    beat, which must divide both ``pe`` and O. ``plain``: the ROM holds weight bits as they
    are (the 1-bit baseline, or an int layer's bit-planes), no XOR network.
    Tile geometry (from the host's tiling, :func:`flexor_hw.fold.tile_geometry`):
    ``slots`` encrypted slices per PE row and plane in a word and, per PE row, the bit
    ``offsets`` at which its ``simd`` columns start in its decoded slots; ``carry``: a word
    stores ``slots − 1`` of them, slot 0 being the last slice of the word before, or at a
    row group's first word its ``head_words`` entry (:mod:`flexor_hw.rom_image`).
    Input: ``SIMD`` elements a beat, a word of the vector memory; or ``in_simd`` (a divisor
    of ``SIMD``) elements a beat, written straight into their lanes of a word in LUT RAM (a
    write enable per lane) or shifted into the block RAM's write data register, so no width
    converter assembles the word first (FINN's MVAU takes its input ``SIMD`` wide behind a
    DWC); or ``scatter = (C, HW)``: the vector one
    element a beat in ``(pixel, c)`` order (a conv's output), element ``(p, c)`` written to
    column ``c·HW + p`` (PyTorch's flatten), so no frame buffer reorders it first.
    Memories: ``rom_logic`` asks for the weight ROM in logic, ``rom_block`` for one that is
    small enough to be logic by default in block RAM; ``vectors_lutram`` asks for the
    vector memory in LUT RAM (True) or block RAM (False) (:attr:`vectors_style`, a
    ``ram_style`` in the Verilog), or leaves it to the tools (None).
    ``bits_register``: the decoded weight bits are registered before they mask the
    activations (the masks' resets then come from flip-flops; False: a stage shorter).
    ``masked_adders``: the weight bits mask the activations inside the adder tree's first
    level (:func:`~flexor_hw.gateware.madd.masked_add`: the ECP5's carry-chain LUTs take
    them), whose sums are registered, instead of in the synchronous reset of a register of
    each activation (for the iCE40, whose carry logic reads the adder's inputs as they are).
    ``address_register`` (with ``bits_register``): the vector word is not registered after
    the memory; its read address is registered once more instead, from the step's address
    register, so the issue logic ends in registers beside the unit's control and not at the
    block RAMs' address pins (the same latency; on the iCE40 the placed digits MLP's longest
    paths ran from the step logic to the block RAMs' address registers, 16–21 ns of
    routing). For memories without an output register of their own that is slow to leave
    (iCE40 SB_RAM40); the ECP5's DP16KD keeps the word register. ``rom_page_words``: a
    weight ROM in logic decodes pages of that many words, registered, then chooses the page
    (:class:`~flexor_hw.gateware.rom.Rom`; None: in one cycle).
    ``stationary``: the unit holds each input word while every row group takes it (weights
    read column block major, :func:`stationary_refusal`) and keeps each group's sums in a
    ring of registers, instead of a vector memory that every group re-reads.
    Arithmetic: ``consts`` (:class:`flexor_hw.ops.weighted.LayerConstants`), ``unipolar``
    (``S = T`` for 0/1 planes instead of ``2T − Σx``). ``xor_masks`` (with
    ``masked_adders``): each lane adds its activation, or its complement where the weight is
    −1 (:func:`~flexor_hw.gateware.madd.masked_add`), so a row sums ``S + K·N₀``
    (:func:`xor_offset`) and no tree of ``Σx`` is built; ``consts`` are then the unit's own
    (:func:`~flexor_hw.rom_image.xor_constants`: ``β`` less ``Σ_i A_i·K·N₀_i``).
    Contents for simulation: ``rom_words``, ``const_words`` (Python ints).
    """

    fan_in: int
    out_features: int
    q: int
    n_in: int
    n_out: int
    pe: int
    simd: int
    out_simd: int
    consts: object
    xor: object
    plain: bool = False
    unipolar: bool = False
    slots: int = 0
    offsets: tuple = ()
    carry: bool = False
    head_words: tuple = None
    rom_logic: bool = False
    rom_block: bool = False
    vectors_lutram: bool = None
    scatter: tuple = None
    in_simd: int = None
    bits_register: bool = True
    address_register: bool = False
    masked_adders: bool = False
    rom_page_words: int = None
    lut_multipliers: bool = False
    stationary: bool = False
    xor_masks: bool = False
    rom_words: tuple = None
    const_words: tuple = None

    def __post_init__(self):
        for name in ("pe", "simd", "out_simd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise TypeError(f"{name.upper()} must be a positive integer, not {value!r}")
        if self.pe % self.out_simd or self.out_features % self.out_simd:
            raise ValueError(f"Output SIMD {self.out_simd} must divide both PE ({self.pe}) and "
                             f"the rows ({self.out_features})")
        if not self.plain and (self.slots < 1 or len(self.offsets) != self.pe):
            raise ValueError(f"A FleXOR MVAU needs its tile geometry: slots ≥ 1 and one offset "
                             f"set per PE row, not slots {self.slots} and "
                             f"{len(self.offsets)} sets")
        if self.scatter is not None and (len(self.scatter) != 2 or
                                         self.scatter[0] * self.scatter[1] != self.fan_in):
            raise ValueError(f"Scatter (C, HW) must multiply to the fan-in {self.fan_in}, not "
                             f"{self.scatter!r}")
        if self.in_simd is not None and (
                not isinstance(self.in_simd, int) or self.in_simd < 1
                or self.simd % self.in_simd or (self.scatter is not None and self.in_simd != 1)):
            raise ValueError(f"Input SIMD {self.in_simd!r} must be a positive divisor of SIMD "
                             f"({self.simd})" + (" and 1 with scatter" if self.scatter else ""))
        if self.carry and (self.plain or self.slots < 2 or self.head_words is None
                           or len(self.head_words) != self.nf):
            raise ValueError(f"A carrying MVAU needs at least 2 slots and one head word per "
                             f"row group ({self.nf})")
        if self.stationary:
            why = stationary_refusal(self)
            if why:
                raise ValueError(f"An input-stationary MVAU {why}")
        if self.xor_masks:
            why = xor_refusal(self)
            if why:
                raise ValueError(f"An MVAU with complemented activations (xor_masks) {why}")
        if self.address_register and not self.bits_register:
            raise ValueError("A registered vector read address (address_register) takes the "
                             "place of the word's register beside the registered weight bits: "
                             "it needs bits_register")

    @property
    def vectors_in_block_ram(self):
        """Where the vector memory goes: asked, or as the tools put it
        (:func:`flexor_hw.hw.cost.ram_style`)."""
        from ..hw.cost import ram_style
        return ram_style(2 * self.sf, self.simd * self.x_width, self.vectors_style) == "block"

    @property
    def vectors_style(self):
        """``"distributed"`` (LUT RAM), ``"block"``, or None (the tools choose)."""
        return ram_style_attr(self.vectors_lutram)

    # -- folding ---------------------------------------------------------------------------
    @property
    def sf(self):
        """Synapse folds: input beats (and weight words) per row group."""
        return -(-self.fan_in // self.simd)

    @property
    def nf(self):
        """Neuron folds: row groups per vector."""
        return -(-self.out_features // self.pe)

    @property
    def group_beats(self):
        """Output beats a row group takes to serialize (G = PE / R)."""
        return self.pe // self.out_simd

    @property
    def last_group_beats(self):
        return (self.out_features - (self.nf - 1) * self.pe) // self.out_simd

    @property
    def group_interval(self):
        """Cycles between two row groups' ends: the fan-in's steps, or the serializer's beats."""
        return max(self.sf, self.group_beats)

    @property
    def x_shape(self):
        return int_shape(self.consts.x_lo, self.consts.x_hi)

    @property
    def x_width(self):
        return self.x_shape.width

    @property
    def y_width(self):
        return int_shape(self.consts.y_lo, self.consts.y_hi).width

    # -- the weight ROM --------------------------------------------------------------------
    @property
    def offset_bits(self):
        """Bits of a PE row's offset counter (0 when every row has one offset): offsets are
        counted in the unit, not stored in the ROM."""
        if self.plain or all(len(o) == 1 for o in self.offsets):
            return 0
        return ceil_log2(self.n_out)

    @property
    def row_bits(self):
        """Stored bits of one PE row and plane in a word."""
        return self.simd if self.plain else (self.slots - self.carry) * self.n_in

    @property
    def weight_bits(self):
        """Every stored weight bit: the ROM and a carrying unit's row-group heads."""
        return self.rom_bits + self.head_width * self.nf

    @property
    def heads_prefetched(self):
        """The row groups' heads are read a group ahead (:func:`_head_prefetch`): more than
        :data:`HEAD_PREFETCH_WORDS` of them, in groups of three steps or more."""
        return self.carry and self.sf >= 3 and self.nf > HEAD_PREFETCH_WORDS

    @property
    def head_width(self):
        """Bits of a row group's head word (a carrying unit's): a slice per PE row and plane."""
        return self.q * self.pe * self.n_in if self.carry else 0

    @property
    def rom_width(self):
        return self.q * self.pe * self.row_bits

    @property
    def hold(self):
        """Steps each weight word serves (:func:`hold_steps`)."""
        return hold_steps(self.fan_in, self.n_out, self.pe, self.simd, self.plain)

    @property
    def rom_depth(self):
        """A word per step, or per :attr:`hold` steps."""
        return -(-self.nf * self.sf // self.hold)

    @property
    def rom_bits(self):
        return self.rom_width * self.rom_depth

    # -- the constants ---------------------------------------------------------------------
    @property
    def const_fields(self):
        """Widths of one row's constants: ``A_0 … A_{q−1}`` then ``β``, LSB first."""
        return [self.consts.a_width] * self.q + [self.consts.beta_width]

    @property
    def const_row_width(self):
        return sum(self.const_fields)

    @property
    def const_width(self):
        """A constant word holds the ``R`` rows of one output beat."""
        return self.out_simd * self.const_row_width

    @property
    def const_depth(self):
        return self.nf * self.group_beats

    # -- pipeline --------------------------------------------------------------------------
    @property
    def tree_stages(self):
        """Registers from the stage-1 word to a row's sum: the decoded weight bits, the
        masked activations (with ``masked_adders``, the first level's masked sums), then one
        every :data:`TREE_LEVELS_PER_REGISTER` levels of the adder tree (and its output)."""
        return 1 + self.bits_register + _tree_registers(self.tree_terms)

    @property
    def x_copies(self):
        """Copies of the vector word's register, one for every :data:`X_COPY_ROWS` rows,
        where the masked adders read it (1: the register alone)."""
        if not (self.masked_adders and self.bits_register and not self.address_register):
            return 1
        return -(-self.pe // X_COPY_ROWS)

    @property
    def tree_terms(self):
        """Terms of a row's adder tree after its first register: the masked activations,
        or the first level's masked pair sums."""
        return -(-self.simd // 2) if self.masked_adders else self.simd

    @property
    def product_pieces(self):
        """The widths ``(a, s)`` of each registered partial product of a plane's ``A_i·S_i``
        (:func:`_chunks`: each operand cut into multiplier-sized pieces)."""
        return [(ahi - alo, shi - slo) for alo, ahi in _chunks(self.consts.a_width)
                for slo, shi in _chunks(self.consts.s_width)]

    @property
    def product_terms(self):
        """Registered partial products per plane's ``A_i·S_i``: a multiplier's each, or with
        ``lut_multipliers`` the terms of :func:`~flexor_hw.gateware.mul.lut_product`."""
        if self.lut_multipliers:
            return lut_product_terms(self.consts.a_width, self.consts.s_width)
        return len(self.product_pieces)

    @property
    def dsps(self):
        """Multipliers (DSP blocks) of the unit: none with ``lut_multipliers``."""
        return 0 if self.lut_multipliers else self.out_simd * self.q * self.product_terms

    @property
    def sum_stages(self):
        return max(1, (self.q * self.product_terms).bit_length())

    @property
    def const_latency(self):
        """Cycles of the constants' read: 2, through a register (in block RAM its output
        register), where that leaves the ROM in one bank; else 1."""
        return 1 if rom_banked(self.const_depth, self.const_width, 2) else 2

    @property
    def requant_latency(self):
        """Serializer beat to FIFO write: operand, the constants' read (and its output
        register), aligned operand, product, sum tree, shift."""
        return 2 + self.const_latency + self.sum_stages + 1

    @property
    def fifo_depth(self):
        """Output FIFO beats: a group's beats for every group that can be in flight while
        its credits go round, and one group more."""
        if self.stationary:     # reserved as the serializer reads a group from its buffer
            in_flight = 2 + self.group_beats + self.requant_latency + 3
            return self.group_beats * (-(-in_flight // self.group_beats) + 1)
        in_flight = 2 + self.tree_stages + 2 + self.group_beats + self.requant_latency + 3
        return self.group_beats * (-(-in_flight // self.group_interval) + 1)

    @property
    def in_beat(self):
        """Elements of an input beat: ``in_simd``, 1 with ``scatter``, else ``SIMD``."""
        return 1 if self.scatter is not None else (self.in_simd or self.simd)

    @property
    def term_range(self):
        """``(lo, hi)`` of a lane's term: an activation masked (0 or ``x``), or with
        ``xor_masks`` an activation or its complement."""
        c = self.consts
        if self.xor_masks:
            k = xor_offset(self.x_shape)
            return min(c.x_lo, k - c.x_hi), max(c.x_hi, k - c.x_lo)
        return min(0, c.x_lo), max(0, c.x_hi)

    @property
    def total_shape(self):
        """Of a sum of up to ``F`` terms: a row's ``T`` (``S + K·N₀`` with ``xor_masks``),
        or the vector's ``Σx``."""
        lo, hi = self.term_range
        return int_shape(self.fan_in * min(0, lo), self.fan_in * max(0, hi))

    @property
    def writer(self):
        """How the vector memory is written: ``"scatter"`` (an element a beat to its
        flattened column), ``"word"`` (a word a beat), ``"lanes"`` (a narrow beat into its
        lanes of a word in LUT RAM) or ``"assemble"`` (narrow beats shifted into a word of
        block RAM)."""
        if self.scatter is not None:
            return "scatter"
        if self.in_beat == self.simd:
            return "word"
        return "assemble" if self.vectors_in_block_ram else "lanes"

    @property
    def x_sum_written(self):
        """Σx of a vector is summed as its beats are written (:meth:`MatrixVectorUnit._write_sum`:
        a tree of ``in_beat`` elements and an accumulator) instead of from every word the
        issue reads (a tree of ``SIMD`` and an accumulator per row group): a unit that takes
        narrow beats (``"lanes"``, ``"assemble"``, ``"scatter"``, signed planes), where the
        vector takes at least ``tree_stages + 1 − L`` beats (``L`` the tree's registers), so
        that its sum is still held when the vector's first row group starts. Its rows then
        accumulate ``S = 2·T − Σx`` itself, from ``−Σx`` (no subtractor a row)."""
        if self.unipolar or self.writer == "word":
            return False
        written = _tree_registers(self.in_beat, first=1)
        return self.tree_stages + 1 <= -(-self.fan_in // self.in_beat) + written

    @property
    def cycles_per_vector(self):
        """See :func:`mvau_cycles`; an input-stationary unit: ``SF·NF`` steps, a word taken
        with the last of its ``NF`` (no hand-over), and ``NF·G`` output beats."""
        if self.stationary:
            return self.nf * max(self.sf, self.group_beats)
        return mvau_cycles(self.fan_in, self.out_features, self.pe, self.simd, self.out_simd,
                           self.in_beat)

    @property
    def latency_cycles(self):
        """From a vector's last input beat to its last output beat (idle unit, ready consumer)."""
        if self.stationary:     # the last word, taken with its first group's step: its
            # NF groups end a step apart, then queue for the serializer
            return (self.nf + self.tree_stages + 3 + max(self.nf * self.group_beats - self.nf + 1,
                                                    self.group_beats)
                    + self.requant_latency + 1)
        last_end = (self.nf - 1) * self.group_interval + self.sf - 1
        return (1 + last_end + 1 + self.tree_stages + 2
                + self.last_group_beats + self.requant_latency + 1)

    @property
    def activation_memory_bits(self):
        """Two vectors of ``SF`` words of ``SIMD`` activations (none input-stationary)."""
        return 0 if self.stationary else 2 * self.sf * self.simd * self.x_width

    @property
    def group_slots(self):
        """An input-stationary unit's places for finished row groups, reserved by a group's
        last step and free again ``tree_stages + 5`` cycles later at the soonest (its sums,
        the buffer's write and read, the count): a vector's ``NF`` groups end a step apart,
        and where fewer steps than that separate them from the next vector's, as many
        places as steps (at least 2)."""
        if not self.stationary:
            return 0
        loop = self.tree_stages + 5
        return max(2, self.nf + max(0, loop - self.sf * self.nf))

    @property
    def ring_bits(self):
        """An input-stationary unit's running sums: ``NF`` groups of ``PE`` rows and ``q``
        planes, each of the accumulator's width."""
        return self.nf * self.pe * self.q * self.acc_shape.width if self.stationary else 0

    @property
    def acc_shape(self):
        """A row's running sum: ``T`` (or ``2·T − Σx`` from ``−Σx``, written sums)."""
        if self.x_sum_written:
            c = self.consts
            fm = self.fan_in * max(abs(c.x_lo), abs(c.x_hi))
            return int_shape(-fm, fm)
        return self.total_shape

    @property
    def lanes(self):
        return self.pe * self.simd


class MatrixVectorUnit(wiring.Component):
    """``y = requant(W·x)`` for a stream of vectors, ``PE × SIMD`` multiply-accumulates per
    cycle.

    Input ``i``: a vector is ``SF = ⌈F/SIMD⌉`` beats of ``SIMD`` activations (element ``s`` of
    beat ``b`` at bits ``s·xw``, column ``b·SIMD + s``; columns past F are zero). Output ``o``:
    ``O/R`` beats of ``R`` requantized results, rows in order.

    The vector is kept as ``SF`` words in one half of a two-vector memory and re-read once per
    row group (``NF = ⌈O/PE⌉`` groups) while the next vector fills the other half, its
    ``Σ x`` summed on the way. Each cycle one weight word (all ``PE`` rows' bits for ``SIMD``
    columns, every plane) comes from the ROM through the weight stream; each PE row decodes
    its slots of encrypted slices, takes its ``SIMD`` bits at its offset, masks the shared
    activations with them and sums them in a pipelined adder tree, accumulating
    ``2·Σ_{w=1} x − Σ x`` over the row's ``SF`` words. A finished group is latched and
    serialized ``R`` rows per cycle through ``R`` requantizers (``Σ_i A_i·S_i + β``, round,
    clamp: the arithmetic contract) into an output FIFO. A group's beats are reserved in the
    FIFO (credits) before its last word is taken, so nothing after the issue ever stalls and
    the consumer's ``ready`` reaches only the FIFO.

    Parameters
    ----------
    params : :class:`MvauParams`
    init_files : tuple of str, optional
        ``(weights, constants)`` ``$readmemh`` files, for emission.
    logic_rom_bits : int
        With ``init_files``: ROMs of at most this many bits are logic.
    """

    def __init__(self, params, *, init_files=None, logic_rom_bits=0):
        if init_files is None and (params.rom_words is None or params.const_words is None):
            raise ValueError("Without init_files the unit needs the ROM contents: "
                             "params.rom_words and params.const_words")
        self._params = params
        self._init_files = init_files
        self._logic_rom_bits = logic_rom_bits
        super().__init__({
            "i": In(stream.Signature(params.in_beat * params.x_width)),
            "o": Out(stream.Signature(params.out_simd * params.y_width)),
        })

    @property
    def params(self):
        return self._params

    @property
    def cycles_per_inference(self):
        return self._params.cycles_per_vector

    @property
    def latency(self):
        return self._params.latency_cycles

    def elaborate(self, platform):
        m = Module()
        p, c = self._params, self._params.consts
        sf, nf, pe, simd, q = p.sf, p.nf, p.pe, p.simd, p.q
        xs, xw = p.x_shape, p.x_width
        G = p.group_beats

        # ROMs.
        small = self._logic_rom_bits
        rom_logic = rom_in_logic(p, small)
        latency = rom_latency(p, rom_logic)
        stall = rom_stalls(p, rom_logic)
        if self._init_files is None:
            rom = Rom(p.rom_width, words=p.rom_words, latency=latency, logic=rom_logic,
                      page_words=p.rom_page_words, stall=stall)
            crom = Rom(p.const_width, words=p.const_words, latency=p.const_latency)
        else:
            rom = Rom(p.rom_width, depth=p.rom_depth, init_file=self._init_files[0],
                      logic=rom_logic, latency=latency, page_words=p.rom_page_words,
                      stall=stall)
            # (read through a register: in block RAM its output register, whose data
            # straight into the requantizers' multipliers, 5.7 ns of logic, was LeNet-5's
            # longest path on the ECP5-25k at a seed)
            crom = Rom(p.const_width, depth=p.const_depth, init_file=self._init_files[1],
                       logic=p.const_width * p.const_depth <= small, latency=p.const_latency)
        m.submodules.rom, m.submodules.consts = rom, crom
        head = None
        if p.carry:             # a row group's first slices, read as its first step issues
            # (or the next group's read ahead: :func:`_head_prefetch`)
            ahead = {"latency": 2, "page_words": HEAD_PAGE_WORDS} if p.heads_prefetched else {}
            if self._init_files is None:
                head = Rom(p.head_width, words=p.head_words, logic=True, **ahead)
            else:
                head = Rom(p.head_width, depth=p.nf, init_file=self._init_files[2], logic=True,
                           **ahead)
            m.submodules.heads = head
        m.submodules.weights = weights = WeightStream(rom, emit=self._init_files is not None)

        emit = self._init_files is not None
        if p.stationary:
            iss = self._issue_stationary(m, weights, rom)
            step, s_idx, n_idx = iss.step, iss.s_idx, iss.n_idx
            s_last, n_last = iss.s_last, iss.n_last
            offs1, vmem, load, r_next, r_addr, head_bits = iss.offs1, None, None, None, None, None
            credits = iss.credits
        else:
            # -- input side: two halves of SF words ------------------------------------------
            self._vmem = vmem = _VectorMemory(m, p, emit=self._init_files is not None)
            w_half = Signal()                       # the half being written
            w_full = Signal()                       # the half holds a whole vector
            filled = Signal()                       # the beat taken completes the vector
            take = Signal()
            m.d.comb += [self.i.ready.eq(~w_full), take.eq(self.i.valid & self.i.ready)]
            last = None                             # the next beat is the vector's last
            if p.writer == "assemble":
                last = self._assemble(m, vmem, take, w_half, filled)
            elif p.writer == "lanes":
                last = self._narrow(m, vmem, take, w_half, filled)
            elif p.writer == "word":
                wport = vmem.write_port(m)
                w_count = Signal(range(max(2, sf)))
                m.d.comb += [wport.addr.eq(w_half * sf + w_count), wport.data.eq(self.i.payload),
                             wport.en.eq(take), filled.eq(take & (w_count == sf - 1))]
                with m.If(take):
                    m.d.sync += w_count.eq(Mux(w_count == sf - 1, 0, w_count + 1))
            else:
                self._scatter(m, vmem, take, w_half, filled)
            if p.x_sum_written:
                written_sum = self._write_sum(m, take, filled, last)

            # -- issue: one weight word and one vector word per step ----------------------------
            active = Signal()
            r_base = Signal(range(2 * sf))
            r_addr = Signal(range(2 * sf))
            s_idx = Signal(range(max(2, sf)))
            n_idx = Signal(range(max(2, nf)))
            s_last = Signal(init=sf == 1)           # s_idx == sf − 1, as a register
            n_last = Signal(init=nf == 1)
            # a group's G beats are reserved with its last step
            credits = Credits(p.fifo_depth, G)
            gap = Signal(range(G + 1))              # cycles until the serializer takes a group
            gap_zero = Signal(init=1)               # gap == 0, as a register
            # The issue's conditions are registers, so that ``step`` is one LUT4 of flip-flops
            # and ``load`` two (the placed digits MLP's longest paths on the UP5K ran through
            # them into the enables of the issue's registers): a group may end (room for its
            # beats, the serializer free), and the step at hand is the vector's last.
            # (Next values as plain expressions, not conditional assignments: Icarus does not
            # evaluate an ``always @*`` block at time 0, and a register that only ever loads one
            # can be X from the first clock after reset.)
            can_end = Signal(init=1)
            gap_zero_next = Signal()
            s_last_next, n_last_next = Signal(), Signal()
            sn_last = Signal(init=sf == 1 and nf == 1)     # s_last & n_last, as a register
            can_end_next = credits.room_next & gap_zero_next
            sn_last_next = s_last_next & n_last_next
            m.d.sync += [can_end.eq(can_end_next), gap_zero.eq(gap_zero_next),
                         s_last.eq(s_last_next), n_last.eq(n_last_next), sn_last.eq(sn_last_next)]
            # Once primed, the weight stream never runs dry under a step every cycle; a unit
            # whose first vector takes long enough to arrive never steps before that, and needs
            # no gate on the stream's valid (prime_cycles).
            valid = weights.o.valid if sf + 1 < weights.prime_cycles else 1
            step = Signal()
            m.d.comb += step.eq(active & valid & (~s_last | can_end))
            self._step = step                   # for tests
            vector_end = step & sn_last
            load = Signal()
            # w_full in two registers, each holding through itself, that step alike (so they
            # are equal): the input's ready and the writer's own, and the issue's copy
            # (``w_full_issue``, a ``flexor_copy`` following the reset through its input) for
            # ``load``. Each reads the other side once: the input side's ``load``, the issue's
            # ``filled``. With one register, the input side and the issue placed apart, the loop
            # from it through ``load`` back into its own reset was the placed ResNet-20's longest
            # path twice over (conv21: 1.4 ns of logic, 16.2 of routing); with a copy that held
            # through the input side's register, the placer put the copy by the input side and
            # the loop crossed twice again (conv3: 11.1 ns of routing). (A take and a load never
            # meet: the take needs ``~w_full``, the load ``w_full``.)
            # Both are kept copies: Yosys merges a plain register into a kept twin that steps
            # alike (its opt_merge keeps the kept one), and did so in four of ResNet-20's twenty
            # units, the loop through ``load`` then crossing the unit again (conv26's ``w_full``
            # into itself, 10.3 ns of routing).
            emit = self._init_files is not None
            flag_copy(m, filled, load, "w_full", emit=emit, flag=w_full)
            w_full_issue = flag_copy(m, filled, load, "w_full_issue", emit=emit)
            self._w_full = (w_full, w_full_issue)   # for tests
            m.d.comb += load.eq(w_full_issue & (~active | vector_end))
            active_next = Mux(load, 1, Mux(vector_end, 0, active))
            pop = step
            if p.hold > 1:
                # A word of slices serves ``hold`` steps: the phase counts them, restarting
                # with each vector (whose last slice may end early).
                ph = Signal(range(p.hold))
                ph_last = Signal()                  # ph == hold − 1, as a register
                ends = ph_last | sn_last
                ph_last_next = Mux(step, ~ends & (ph == p.hold - 2), ph_last)
                m.d.sync += ph_last.eq(ph_last_next)
                with m.If(step):
                    m.d.sync += ph.eq(Mux(ends, 0, ph + 1))
                pop = step & ends
            rom_pop = pop
            if rom.stall:
                # A stalled ROM's read takes the pop as its block RAMs' clock enables, beside the
                # ROM, not the issue: from copies of the step's flags of its own (the one ``step``
                # into the issue's registers and conv2's 8 blocks placed them apart at a seed,
                # ``active`` into the vector memory's read address copies: 10.1 ns of routing).
                flags = [("active", active_next, 0), ("s_last", s_last_next, int(sf == 1)),
                         ("can_end", can_end_next, 1)]
                if p.hold > 1:
                    flags += [("sn_last", sn_last_next, int(sf == 1 and nf == 1)),
                              ("ph_last", ph_last_next, 0)]
                rc = {name: kept_register(m, value, f"{name}_rom", emit=emit, init=init)
                      for name, value, init in flags}
                rom_pop = rc["active"] & valid & (~rc["s_last"] | rc["can_end"])
                if p.hold > 1:
                    rom_pop = rom_pop & (rc["ph_last"] | rc["sn_last"])
            self._pops = (pop, rom_pop)             # for tests
            m.d.comb += weights.o.ready.eq(rom_pop)
            head_bits = None
            if head is not None and p.heads_prefetched:
                head_bits = _head_prefetch(m, head, step & s_last, n_last, nf)
            elif head is not None:
                m.d.comb += head.addr.eq(n_idx)
                head_bits = head.data
            r_next = Signal.like(r_addr)        # the read address, registered in every bank
            m.d.comb += r_next.eq(r_addr)
            m.d.sync += r_addr.eq(r_next)
            m.d.comb += [
                s_last_next.eq(Mux(step, Mux(s_last, sf == 1, s_idx == sf - 2), s_last)),
                n_last_next.eq(Mux(step & s_last, Mux(n_last, nf == 1, n_idx == nf - 2), n_last))]
            with m.If(step):
                m.d.comb += r_next.eq(Mux(s_last, r_base, r_addr + 1))
                m.d.sync += s_idx.eq(Mux(s_last, 0, s_idx + 1))
                with m.If(s_last):
                    m.d.sync += n_idx.eq(Mux(n_last, 0, n_idx + 1))
            m.d.sync += active.eq(active_next)
            with m.If(load):
                new_base = Mux(w_half, sf, 0)
                m.d.comb += r_next.eq(new_base)
                m.d.sync += [r_base.eq(new_base), w_half.eq(~w_half)]
            if G > 1:
                m.d.comb += gap_zero_next.eq(Mux(step & s_last, 0, gap_zero | (gap == 1)))
                with m.If(step & s_last):
                    m.d.sync += gap.eq(G - 1)
                with m.Elif(~gap_zero):
                    m.d.sync += gap.eq(gap - 1)
            else:
                m.d.comb += gap_zero_next.eq(1)

            # Each PE row's bit offset in its decoded slots, counted: a column phase per step
            # plus a row phase per row group
            offs1 = _offset_counters(m, p, step, s_last, step & s_last, n_last)

        # -- stage 1: the step's weight word and flags, registered; the vector word arrives --
        v1, first1, last1 = Signal(), Signal(), Signal()
        word1 = Signal(p.rom_width, reset_less=True)
        m.d.sync += [v1.eq(step), first1.eq(s_idx == 0), last1.eq(s_last),
                     word1.eq(weights.o.payload)]
        nfirst1 = Signal(init=1)            # (input-stationary) the word's first row group
        if p.stationary:
            m.d.sync += nfirst1.eq(n_idx == 0)
            # the input word, taken with its first group's step into a register of its own
            # (where a vector memory's read would be), then beside the registered weight bits
            # (loaded in every cycle that waits for a word's first group: the word on the
            # stream is the one that step takes; in pieces, each enabled by a copy of its own)
            rdata = Signal(p.simd * xw, name="xword", reset_less=True)
            for k, lo in enumerate(range(0, p.simd * xw, X_PIECE_BITS)):
                hi = min(p.simd * xw, lo + X_PIECE_BITS)
                load = kept_register(m, self._n_first_next, f"xload_{k}", emit=emit, init=1)
                with m.If(load):
                    m.d.sync += rdata[lo:hi].eq(self.i.payload[lo:hi])
            xdata = delay(m, rdata, 1, "xdata", data=True) if p.bits_register else rdata
        elif p.address_register:
            # the step's address register, registered again beside the memory: the word
            # arrives two cycles after its step, beside the registered weight bits
            xdata = vmem.read(m, r_addr)
        else:
            # the word a cycle later, beside the registered weight bits (a register chosen
            # into, where the rows' adders do not take copies of it)
            if read_registered(p):
                xdata = vmem.read(m, r_next, registered=True)
            else:
                rdata = vmem.read(m, r_next)
                xdata = delay(m, rdata, 1, "xdata", data=True) if p.bits_register else rdata

        def lanes_of(word):
            return [word[s * xw:(s + 1) * xw].as_signed() if xs.signed
                    else word[s * xw:(s + 1) * xw] for s in range(simd)]

        x2 = lanes_of(xdata)
        # With the masks in the adders the word's register feeds the rows' first adders
        # themselves: a copy of it for every X_COPY_ROWS rows (one register into the adders
        # of 16 rows of 100 lanes was LeNet-5's longest path on the ECP5-85k, 14.2 ns of
        # routing).
        x_rows = [x2] * pe
        if p.x_copies > 1:
            copies = [lanes_of(copy_register(m, rdata, f"xdata_c{g}",
                                             emit=self._init_files is not None))
                      for g in range(p.x_copies)]
            x_rows = [copies[j // X_COPY_ROWS] for j in range(pe)]

        # Decode each PE row's bits: plane-major rows of slots, offset indices at the top.
        t_lo, t_hi = p.term_range
        part_shape = int_shape(simd * min(0, t_lo), simd * max(0, t_hi))
        trees = []                                              # [pe][q]
        n_in = p.n_in
        for j in range(pe):
            row_trees = []
            for i in range(q):
                lo = (i * pe + j) * p.row_bits
                stored = word1[lo:lo + p.row_bits]
                if p.plain:
                    bits = stored
                else:
                    enc = [stored[k * n_in:(k + 1) * n_in] for k in range(p.slots - p.carry)]
                    if p.carry:
                        # Slot 0: the word before's last slice, or the row group's head.
                        held = Signal(n_in, name=f"carry{j}_{i}", reset_less=True)
                        with m.If(v1):
                            m.d.sync += held.eq(enc[-1])
                        h = (i * pe + j) * n_in
                        enc = [Mux(first1, head_bits[h:h + n_in], held)] + enc
                    dec = []
                    for k in range(p.slots):
                        d = XorDecoder(p.xor[i])
                        m.submodules[f"dec_{j}_{i}_{k}"] = d
                        m.d.comb += d.i.eq(enc[k])
                        dec.append(d.o)
                    decoded = Cat(*dec)
                    reach = p.offsets[j]
                    if len(reach) == 1:
                        bits = decoded[reach[0]:reach[0] + simd]
                    else:       # a mux on the counted offset; unreachable ones share a leg
                        choices = [decoded[o:o + simd] if o in reach else
                                   decoded[reach[0]:reach[0] + simd] for o in range(p.n_out)]
                        bits = mux_tree(offs1[j], choices)
                # The bits are registered first, so a mask is driven by a flip-flop, not by
                # the decoder and offset multiplexer (those nets, placed apart, were most of
                # the slow routing of ResNet-20 on the ECP5-85k: up to 16 ns an arc).
                terms = []
                if p.masked_adders:
                    # The bits mask the activations inside the first level's adders (the
                    # ECP5's carry-chain LUTs: no register per activation, no LSR per lane),
                    # whose sums are registered.
                    # With xor_masks a set mask complements its activation: the bits are
                    # held inverted (the inverter goes into the decoder's LUTs).
                    xr = x_rows[j]
                    masks = ~bits if p.xor_masks else bits
                    if p.bits_register:
                        w = Signal(simd, name=f"w{j}_{i}", reset_less=True)
                        m.d.sync += w.eq(masks)
                    else:
                        w = masks
                    for s in range(0, simd, 2):
                        pair = masked_add(m, xr[s], w[s], xr[s + 1] if s + 1 < simd else None,
                                          w[s + 1] if s + 1 < simd else None,
                                          f"p{j}_{i}_{s // 2}", emit=self._init_files is not None,
                                          xor=p.xor_masks)
                        held = Signal.like(pair, name=f"m{j}_{i}_{s // 2}", reset_less=True)
                        m.d.sync += held.eq(pair)
                        terms.append(held)
                else:
                    # The weight bit masks its activation into a register's synchronous
                    # reset: no gate in front of the adder tree. The register holds the bits
                    # inverted, the resets themselves: an LSR driven straight by a flip-flop
                    # (Yosys puts an inverter's LUT before a reset rather than the slice's
                    # LSR inversion).
                    clear = ~bits
                    if p.bits_register:
                        clear = Signal(simd, name=f"w{j}_{i}", reset_less=True)
                        m.d.sync += clear.eq(~bits)
                    for s in range(simd):
                        held = Signal(xs, name=f"m{j}_{i}_{s}", reset_less=True)
                        with m.If(clear[s]):
                            m.d.sync += held.eq(0)
                        with m.Else():
                            m.d.sync += held.eq(x2[s])
                        terms.append(held)
                row_trees.append(_tree_sum(m, terms, part_shape, f"t{j}_{i}"))
            trees.append(row_trees)
        # Σx of the word, beside the rows' sums (one tree shared by every PE row).
        # Where the word comes from a register, summed as it arrives and the sum delayed,
        # beside the masks' register (a register of the sum, not of the whole word); on the
        # iCE40 (``address_register``) the word comes straight from the block RAMs and is
        # registered first (two adder levels behind an SB_RAM40's read were the digits
        # MLP's longest path). None where the vector's Σx is summed as it is written
        # (:attr:`MvauParams.x_sum_written`).
        sum_shape = int_shape(simd * c.x_lo, simd * c.x_hi)
        if p.x_sum_written or p.xor_masks:
            word_sum = None
        elif p.address_register:
            xword = delay(m, xdata, 1, "xword", data=True)
            xparts = [xword[s * xw:(s + 1) * xw].as_signed() if xs.signed
                      else xword[s * xw:(s + 1) * xw] for s in range(simd)]
            word_sum = _tree_sum(m, xparts, sum_shape, "xsum")
        else:
            # Its first level registered: the word's register fans out to every row's masks
            # as well, so its adders sit apart from it (LeNet-5's conv2 placed on the
            # ECP5-25k: the word through two adders into the tree's register, 8.7 ns of
            # routing, its longest path at two seeds of three). Delayed to the rows' sums.
            behind = 1 + _tree_registers(p.tree_terms) - _tree_registers(simd, first=1)
            assert behind >= 0
            word_sum = delay(m, _tree_sum(m, x2, sum_shape, "xsum", first=1), behind,
                             "xsum_q", sum_shape, data=True)
        v2 = delay(m, v1, p.tree_stages, "v2")
        last2 = delay(m, last1, p.tree_stages, "last2")
        # Each PE row's accumulators (and Σx's) enabled and cleared by copies of the flags of
        # their own: one register fanned out to every row's accumulators, the rows' adder
        # trees spread over the device (conv2's first-step flag into an accumulator, 8.7 ns
        # of routing, LeNet-5's longest path at a seed on the ECP5-25k).
        flags = Cat(delay(m, v1, p.tree_stages - 1, "v2p"),
                    delay(m, first1, p.tree_stages - 1, "first2p"),
                    delay(m, last1, p.tree_stages - 1, "last2p"))
        if p.stationary:
            flags = Cat(flags, delay(m, nfirst1, p.tree_stages - 1, "nfirst2p"))

        def row_flags(name):
            """``(v2, first2, group_end)`` from copies of a row's own (and, input-stationary,
            whether the step is its word's first group)."""
            r = copy_register(m, flags, name, emit=self._init_files is not None)
            return (r[0], r[1], r[0] & r[2]) + ((r[3],) if p.stationary else ())

        # -- accumulate each row (and Σx) over its SF words; a group's end is latched, then
        # S = 2·T − Σx goes into the bank (S = T for unipolar planes) -----------------------
        s_shape = signed(c.s_width)
        t_shape = p.total_shape
        bank = [[Signal(s_shape, name=f"bank{j}_{i}", reset_less=True) for i in range(q)]
                for j in range(pe)]
        group_end = Signal()
        m.d.comb += group_end.eq(v2 & last2)
        shift = Signal()
        xtotal = x_init = None
        if p.x_sum_written:
            # −Σx of the vector, summed as it was written, where its rows' accumulators start
            # (S = 2·T − Σx accumulated itself): taken ``tree_stages + 1`` cycles after the
            # vector's load, the cycle before its first row group's first sums arrive and
            # after the vector before's last group's (:attr:`MvauParams.x_sum_written`)
            x_init = Signal(p.acc_shape, name="x_init", reset_less=True)
            with m.If(delay(m, load, p.tree_stages + 1, "x_taken")):
                m.d.sync += x_init.eq(-written_sum)
        elif not (p.unipolar or p.xor_masks):
            xacc = Signal(t_shape, reset_less=True)
            xfin = Signal(t_shape, reset_less=True)
            v_x, first_x, end_x, *word_first = row_flags("flags_x")
            if p.stationary:    # a word's sum once, with its first row group's step
                v_x, end_x = v_x & word_first[0], end_x & word_first[0]
            with m.If(v_x):
                m.d.sync += xacc.eq(Mux(first_x, 0, xacc) + word_sum)
            with m.If(end_x):
                m.d.sync += xfin.eq(Mux(first_x, 0, xacc) + word_sum)
            xtotal = xfin
        if p.stationary:
            done, ser, beat, rd_go = self._stationary_sums(m, trees, row_flags, xtotal, bank,
                                                           group_end, shift)
        else:
            done = Signal()                             # the group's totals are latched
            m.d.sync += done.eq(group_end)
            for j in range(pe):
                v_j, first_j, end_j = row_flags(f"flags_{j}")
                for i in range(q):
                    acc = Signal(p.acc_shape, name=f"acc{j}_{i}", reset_less=True)
                    fin = Signal(p.acc_shape, name=f"fin{j}_{i}", reset_less=True)
                    if x_init is not None:      # S from −Σx, twice the row's sums
                        total = Mux(first_j, x_init, acc) + (trees[j][i] << 1)
                    else:
                        total = Mux(first_j, 0, acc) + trees[j][i]
                    with m.If(v_j):
                        m.d.sync += acc.eq(total)
                    with m.If(end_j):
                        m.d.sync += fin.eq(total)
                    with m.If(done):
                        m.d.sync += bank[j][i].eq(fin if xtotal is None else
                                                  (fin << 1) - xtotal)
                    if j + p.out_simd < pe:
                        with m.Elif(shift):
                            m.d.sync += bank[j][i].eq(bank[j + p.out_simd][i])
            ser, beat, _ = self._serializer(m, done, shift)

        # -- serializer: R rows per cycle from the bank into R requantizers -----------------
        keep_limit = (nf - 1) * G + p.last_group_beats          # beats past it are not rows
        m.d.comb += crom.addr.eq(beat)
        keep = beat < keep_limit if keep_limit < p.const_depth else Const(1)

        # Operands: the bank's rows now, held beside their constants' read (the ROM's, and
        # its output register).
        cl = p.const_latency
        va, ka = Signal(), Signal()
        sa = [[delay(m, bank[r][i], cl, f"sa{r}_{i}", s_shape, data=True) for i in range(q)]
              for r in range(p.out_simd)]
        m.d.sync += [va.eq(ser & keep), ka.eq(ser & ~keep)]
        vb = delay(m, va, cl, "vb")
        ys = []
        for r in range(p.out_simd):
            base = r * p.const_row_width
            fields, pos = [], base
            for width in p.const_fields:
                fields.append(crom.data[pos:pos + width].as_signed())
                pos += width
            ys.append(_requantize(m, c, sa[r], fields[:q], fields[q], q, f"rq{r}",
                                  emit=self._init_files is not None,
                                  lut=p.lut_multipliers))
        v_out = delay(m, vb, 1 + p.sum_stages + 1, "v_out")
        skipped = delay(m, ka, cl + 1 + p.sum_stages + 1, "skipped")

        m.submodules.fifo = fifo = OutputFifo(unsigned(p.out_simd * p.y_width), p.fifo_depth)
        wiring.connect(m, fifo.o, wiring.flipped(self.o))
        m.d.comb += [fifo.w_data.eq(Cat(*[y.as_unsigned() for y in ys])), fifo.w_en.eq(v_out)]

        # A beat's place returns when it leaves the FIFO (or is skipped: no row).
        # A group's beats are reserved with its last step; counted a cycle later where a
        # group takes two steps or more (the next group cannot end sooner), so the issue logic
        # does not feed the credits' adder.
        if p.stationary:        # reserved as the serializer reads a group from its buffer
            ends = rd_go
        else:
            ends = step & s_last
            if sf > 1:
                ends = delay(m, ends, 1, "group_ended")
        credits.count(m, Mux(ends, G, 0), (self.o.valid & self.o.ready) + skipped)
        return m


    def _serializer(self, m, done, shift):
        """The serializer's count of a group's beats left (``G`` from ``done``, the bank's
        loading), its beat (``shift``: the bank moves on ``R`` rows) and the constant ROM's
        address, a beat at a time. Returns ``(ser, beat, ser_left)``."""
        p = self._params
        G = p.group_beats
        ser_left = Signal(range(G + 1))
        beat = Signal(range(max(2, p.const_depth)))            # the constant ROM's address
        ser = Signal()
        m.d.comb += [ser.eq(ser_left != 0), shift.eq(ser)]
        with m.If(done):
            m.d.sync += ser_left.eq(G)
        with m.Elif(ser):
            m.d.sync += ser_left.eq(ser_left - 1)
        with m.If(ser):
            m.d.sync += beat.eq(Mux(beat == p.const_depth - 1, 0, beat + 1))
        return ser, beat, ser_left

    def _issue_stationary(self, m, weights, rom):
        """The issue of an input-stationary unit (:attr:`MvauParams.stationary`): a step per
        row group of each input word (the groups inner, the words outer), the word taken
        with its first group's step; a group's last word's step reserves a place in the
        buffer of finished groups (``slots``, :meth:`_stationary_sums`). Returns the issue's
        counters and flags, the rows' counted offsets, and the output FIFO's credits."""
        p = self._params
        sf, nf = p.sf, p.nf
        emit = self._init_files is not None
        s_idx = Signal(range(max(2, sf)), name="word_idx")
        n_idx = Signal(range(max(2, nf)), name="group_idx")
        s_last = Signal(init=sf == 1, name="word_last")     # s_idx == sf − 1, a register
        n_last = Signal(init=nf == 1, name="group_last")    # n_idx == nf − 1, a register
        self._slots = slots = Credits(p.group_slots, 1, "slots")
        credits = Credits(p.fifo_depth, p.group_beats)      # the output FIFO's
        self._group_read, self._fifo_room = Signal(name="group_read"), credits.room
        can_end = Signal(init=1)
        s_last_next, n_last_next = Signal(), Signal()
        n_first = Signal(init=1, name="group_first")         # n_idx == 0, a register
        n_first_next = Signal()
        m.d.sync += [can_end.eq(slots.room_next), s_last.eq(s_last_next),
                     n_last.eq(n_last_next), n_first.eq(n_first_next)]
        # The word is taken with its first row group's step, into the unit's own register
        # (:meth:`elaborate`), so that the producer's output register is free for the next
        # word while the groups take this one (a width converter that held its word until
        # the last group's step lost a cycle a word).
        # ``ready`` a register of its own, not the input's ``valid`` nor the issue's flags
        # through logic (the width converter's output enables behind it: its valid through
        # the step into them, then the issue's flags through ``ready``, were the placed
        # LeNet-5's longest paths). It equals ``n_first & ok`` in every cycle.
        step, ok = Signal(), Signal()
        ready_next = n_first_next & weights.valid_next & (~s_last_next | slots.room_next)
        ready = kept_register(m, ready_next, "ready", emit=emit)
        m.d.comb += [ok.eq(weights.o.valid & (~s_last | can_end)),
                     step.eq((self.i.valid | ~n_first) & ok),
                     self.i.ready.eq(ready), n_first_next.eq(Mux(step, n_last, n_first))]
        self._ready = (ready, n_first & ok)     # for tests: equal in every cycle
        self._n_first_next = n_first_next
        self._step = step                   # for tests
        m.d.comb += [
            n_last_next.eq(Mux(step, Mux(n_last, nf == 1, n_idx == nf - 2), n_last)),
            s_last_next.eq(Mux(step & n_last, Mux(s_last, sf == 1, s_idx == sf - 2), s_last))]
        with m.If(step):
            m.d.sync += n_idx.eq(Mux(n_last, 0, n_idx + 1))
            with m.If(n_last):
                m.d.sync += s_idx.eq(Mux(s_last, 0, s_idx + 1))
        rom_pop = step
        if rom.stall:       # the block RAMs' clock enables from copies of the flags' own
            rc = {name: kept_register(m, value, f"{name}_rom", emit=emit, init=init)
                  for name, value, init in (("s_last", s_last_next, int(sf == 1)),
                                            ("can_end", slots.room_next, 1),
                                            ("n_first", n_first_next, 1))}
            rom_pop = (self.i.valid | ~rc["n_first"]) & weights.o.valid & \
                (~rc["s_last"] | rc["can_end"])
        self._pops = (step, rom_pop)            # for tests
        m.d.comb += weights.o.ready.eq(rom_pop)
        slots.count(m, step & s_last, self._group_read)

        # Each PE row's bit offset: a row phase stepped each step (the groups), a column
        # phase each word
        offs1 = _offset_counters(m, p, step & n_last, s_last, step, n_last)

        return SimpleNamespace(step=step, s_idx=s_idx, n_idx=n_idx, s_last=s_last,
                               n_last=n_last, offs1=offs1, credits=credits)

    def _stationary_sums(self, m, trees, row_flags, xtotal, bank, group_end, shift):
        """An input-stationary unit's sums: each PE row and plane keeps its ``NF`` groups'
        running sums in a ring of registers that steps with each of its sums (the head is
        the group at hand; the new sum goes to the tail), so no register is chosen by an
        index. A group's ``S = 2·T − Σx`` (``T`` the unipolar planes') is written into a
        buffer of finished groups (LUT RAM, :attr:`MvauParams.group_slots` words of the
        rows' ``S``) the cycle after its last sum, from the ring's tail; the serializer
        reads a group from it into the bank when the bank is free and the output FIFO has
        room for its ``G`` beats (reserved then). Returns ``(done, ser, beat, read)``: the
        bank loading, the serializer's beat and constant address, and the buffer's read."""
        p, c = self._params, self._params.consts
        pe, q, nf, G, B = p.pe, p.q, p.nf, p.group_beats, p.group_slots
        sw = c.s_width
        buf = memory.Memory(shape=pe * q * sw, depth=B, init=[],
                            attrs={"ram_style": "distributed"})
        m.submodules.groups = buf
        wport, rport = buf.write_port(), buf.read_port(domain="sync")
        sums = []
        for j in range(pe):
            v_j, first_j, _, _ = row_flags(f"flags_{j}")
            for i in range(q):
                ring = [Signal(p.acc_shape, name=f"acc{j}_{i}_g{g}", reset_less=True)
                        for g in range(nf)]
                with m.If(v_j):
                    m.d.sync += [ring[g].eq(ring[g + 1]) for g in range(nf - 1)]
                    m.d.sync += ring[-1].eq(Mux(first_j, 0, ring[0]) + trees[j][i])
                s_val = Signal(signed(sw), name=f"s{j}_{i}")
                m.d.comb += s_val.eq(ring[-1] if xtotal is None else (ring[-1] << 1) - xtotal)
                sums.append(s_val)
        written = delay(m, group_end, 1, "group_written")
        wptr, rptr = Signal(range(B), name="group_wptr"), Signal(range(B), name="group_rptr")
        m.d.comb += [wport.addr.eq(wptr), wport.data.eq(Cat(*sums)), wport.en.eq(written),
                     rport.addr.eq(rptr), rport.en.eq(1)]
        with m.If(written):
            m.d.sync += wptr.eq(Mux(wptr == B - 1, 0, wptr + 1))

        count = Signal(range(B + 1), name="groups_held")
        done = Signal()
        ser, beat, ser_left = self._serializer(m, done, shift)
        read = self._group_read
        fifo_room = self._fifo_room
        # the bank is free when the group read now arrives: its last beat leaves by then
        m.d.comb += read.eq((count != 0) & fifo_room & Mux(done, G <= 1, ser_left <= 2))
        m.d.sync += [count.eq(count + written - read), done.eq(read)]
        with m.If(read):
            m.d.sync += rptr.eq(Mux(rptr == B - 1, 0, rptr + 1))
        for j in range(pe):
            for i in range(q):
                k = j * q + i
                with m.If(done):
                    m.d.sync += bank[j][i].eq(rport.data[k * sw:(k + 1) * sw].as_signed())
                if j + p.out_simd < pe:
                    with m.Elif(shift):
                        m.d.sync += bank[j][i].eq(bank[j + p.out_simd][i])
        return done, ser, beat, read

    def _write_sum(self, m, take, filled, last):
        """Σx of each vector as its beats are taken (:attr:`MvauParams.x_sum_written`): each
        beat's elements through a tree (registered after its first level and at its output;
        a narrow last beat's elements past the vector's end, which are not written, as 0:
        ``last``, the writer's register), accumulated over the vector; the total held in a
        register from its last beat until the next vector's last. The issue takes it
        ``tree_stages + 1`` cycles after the vector's load (:meth:`elaborate`), which comes
        a cycle after its last beat at the earliest: in time, as the vector's tree is
        ``L ≤ tree_stages + 1`` registers deep; and before the next vector's last beat
        overwrites it, as that comes ``⌈F/in_beat⌉ ≥ tree_stages + 1 − L`` cycles after the
        load at the earliest."""
        p, c = self._params, self._params.consts
        b, xw, xs = p.in_beat, p.x_width, p.x_shape
        beats = -(-p.fan_in // b)
        tail = p.fan_in - (beats - 1) * b       # elements of the last beat in the vector
        terms = []
        for k in range(b):
            e = self.i.payload[k * xw:(k + 1) * xw]
            e = e.as_signed() if xs.signed else e
            terms.append(Mux(last, 0, e) if k >= tail else e)
        beat_sum = _tree_sum(m, terms, int_shape(b * min(0, c.x_lo), b * max(0, c.x_hi)),
                             "wsum", first=1)
        stages = _tree_registers(b, first=1)
        first = Signal(init=1, name="wsum_first")  # the beat taken is its vector's first
        with m.If(take):
            m.d.sync += first.eq(filled)
        v = delay(m, take, stages, "wsum_v")
        first_d = delay(m, first, stages, "wsum_first")
        end = delay(m, filled, stages, "wsum_end")
        acc = Signal(p.total_shape, name="wsum_acc", reset_less=True)
        total = Signal(p.total_shape, name="wsum_total", reset_less=True)
        running = Mux(first_d, 0, acc) + beat_sum
        with m.If(v):
            m.d.sync += acc.eq(running)
        with m.If(v & end):
            m.d.sync += total.eq(running)
        return total

    def _narrow(self, m, vmem, take, w_half, filled):
        """Beats of ``b = in_simd`` elements, each written into its chunk of ``b`` lanes of
        the word (one-hot ``at``), the word counted on as its last chunk is written; the
        write data register is a beat wide and fans out to every chunk. A vector starts a
        word, so its last beat is always at chunk ``e = (beats − 1) mod chunks`` of the last
        word: the columns past F (that beat's elements past the vector's end, the chunks
        above ``e``) are never written, and stay the zeros the memory starts with."""
        p = self._params
        sf, simd, xw, b = p.sf, p.simd, p.x_width, p.in_beat
        chunks = simd // b
        beats = -(-p.fan_in // b)
        e = (beats - 1) % chunks
        tail = p.fan_in - (beats - 1) * b       # elements of the last beat in the vector
        wport = vmem.write_port(m, granularity=xw, sources=[s % b for s in range(simd)])
        word, at, last = _chunk_counters(m, take, sf, chunks, beats)
        en = Cat(*[at[c] & ~last if c == e and k >= tail else at[c]
                   for c in range(chunks) for k in range(b)])
        m.d.comb += [wport.addr.eq(w_half * sf + word), wport.data.eq(self.i.payload),
                     wport.en.eq(Mux(take, en, 0)), filled.eq(take & last)]
        return last

    def _assemble(self, m, vmem, take, w_half, filled):
        """Beats of ``b = in_simd`` elements into a word of block RAM (whose byte enables
        would take a block more for lanes that do not fill its bytes): the beats shift into
        the top of a word register and down (every bit drives one place), and the word is
        written from that register a cycle after its last beat (the write port's address
        and enable are a cycle late; the register is the write data register). A vector
        starts a word, so its last beat is at chunk ``e = (beats − 1) mod chunks``: a last
        word that closes early is aligned to the bottom with zeros above, and the last
        beat's elements past the vector's end are zero (as in
        :class:`~flexor_hw.gateware.repack.Repack`)."""
        p = self._params
        sf, simd, xw, b = p.sf, p.simd, p.x_width, p.in_beat
        chunks = simd // b
        beats = -(-p.fan_in // b)
        e = (beats - 1) % chunks
        tail = p.fan_in - (beats - 1) * b
        word_q = Signal(simd * xw, reset_less=True, name="w_word")
        wport = vmem.write_port(m, data_q=word_q)
        word, at, last = _chunk_counters(m, take, sf, chunks, beats)
        m.d.comb += [wport.addr.eq(w_half * sf + word), wport.en.eq(take & (at[-1] | last)),
                     filled.eq(take & last)]
        with m.If(take):
            m.d.sync += word_q.eq(shift_in(word_q, self.i.payload, last, e=e, tail=tail,
                                           width=xw))
        return last

    def _scatter(self, m, vmem, take, w_half, filled):
        """Element ``(p, c)`` of a ``(pixel, c)`` stream to column ``c·HW + p``: word and lane
        counted, a step of ``HW`` per channel and of 1 per pixel (no divider); ``filled``
        high with the vector's last element."""
        p = self._params
        C, HW = p.scatter
        sf, simd, xw = p.sf, p.simd, p.x_width
        wport = vmem.write_port(m, granularity=xw)
        c = Signal(range(max(2, C)))
        pix = Signal(range(max(2, HW)))
        word, lane = Signal(range(max(2, sf))), Signal(range(max(2, simd)))     # c·HW + p
        p_word, p_lane = Signal.like(word), Signal.like(lane)                    # p

        def advance(w, l, by):
            q, r = divmod(by, simd)
            wrap = l + r >= simd
            return w + q + wrap, Mux(wrap, l + r - simd, l + r)

        m.d.comb += [wport.addr.eq(w_half * sf + word),
                     wport.data.eq(Cat(*[self.i.payload] * simd)),
                     wport.en.eq(Mux(take, Const(1, simd) << lane, 0))]
        with m.If(take):
            with m.If(c == C - 1):
                next_w, next_l = advance(p_word, p_lane, 1)
                m.d.sync += c.eq(0)
                with m.If(pix == HW - 1):
                    m.d.sync += [pix.eq(0), p_word.eq(0), p_lane.eq(0), word.eq(0),
                                 lane.eq(0)]
                    m.d.comb += filled.eq(1)
                with m.Else():
                    m.d.sync += [pix.eq(pix + 1), p_word.eq(next_w), p_lane.eq(next_l),
                                 word.eq(next_w), lane.eq(next_l)]
            with m.Else():
                next_w, next_l = advance(word, lane, HW)
                m.d.sync += [c.eq(c + 1), word.eq(next_w), lane.eq(next_l)]


def _chunk_counters(m, take, sf, chunks, beats):
    """Where a narrow input's next beat goes: ``(word, at, last)``, the word of the vector,
    its chunk (one-hot) and whether the beat is the vector's last (a register), stepped
    by ``take``; a vector starts a word."""
    word = Signal(range(max(2, sf)))
    at = Signal(chunks, init=1)
    beat = Signal(range(max(2, beats)))
    last = Signal(init=beats == 1)          # beat == beats − 1, as a register
    m.d.sync += last.eq(Mux(take, Mux(last, beats == 1, beat == beats - 2), last))
    with m.If(take):
        m.d.sync += [beat.eq(Mux(last, 0, beat + 1)),
                     at.eq(Mux(last | at[chunks - 1], 1, at.rotate_left(1))),
                     word.eq(Mux(last, 0, Mux(at[chunks - 1], word + 1, word)))]
    return word, at, last


class _WriteRequest:
    """A write port's ``addr``, ``data`` and ``en``."""

    def __init__(self, addr_shape, data_width, en_width):
        self.addr = Signal(addr_shape, name="w_addr")
        self.data = Signal(data_width, name="w_data", reset_less=True)
        self.en = Signal(en_width, name="w_en")


#: Widest bank of a vector memory in LUT RAM, in bits.
VECTOR_BANK_BITS = 64

#: Words of one page of a vector memory in LUT RAM: a TRELLIS_DPR16X4 cell's depth.
PAGE_WORDS = 16


def rom_paged(p):
    """Whether a weight ROM in logic is read in pages (``rom_page_words``)."""
    return bool(p.rom_page_words) and p.rom_depth > p.rom_page_words


#: A LUT4's words: a logic ROM deeper than this decodes its word in more than one LUT level.
LUT4_WORDS = 16


def rom_in_logic(p, logic_rom_bits):
    """Whether a unit's weight ROM is built in logic: asked for (``rom_logic``), or of at
    most ``logic_rom_bits`` bits and not asked to be block RAM (``rom_block``; a logic ROM is
    never banked)."""
    return p.rom_logic or (p.rom_bits <= logic_rom_bits and not p.rom_block)


def rom_latency(p, logic):
    """Cycles from the weight address to the ROM's word (:class:`Rom`): 3 for a weight ROM in
    ``logic`` on the ECP5 (not ``address_register``) that is paged or deeper than a LUT4 (its
    address registered first, in a copy per page or per 18 bits of the word, so no one
    register drives the whole decode: the placed ResNet-20's first conv, 48 x 72 bits, read
    from one address register, was its longest path at 10.6 ns), and for one in block RAM
    not banked that spans more blocks than one address register drives
    (:func:`~flexor_hw.gateware.rom.flat_group_bits`: a copy per group), else 2. On the
    iCE40 a page register shares its decoding LUT4's logic cell, an address copy not."""
    deep = rom_paged(p) or p.rom_depth > LUT4_WORDS
    if not logic:       # a wide block RAM ROM: the address copied per group of blocks
        wide = flat_group_bits(p.rom_depth, p.rom_width) is not None
        return 3 if wide and not p.address_register else 2
    return 3 if not p.address_register and deep else 2


def rom_stalls(p, logic):
    """Whether the weight stream stalls the unit's ROM (:class:`WeightStream`): where it is
    not banked (a ring of words behind a banked one)."""
    return not rom_banked(p.rom_depth, p.rom_width, rom_latency(p, logic), logic)


def vector_pages(p):
    """Pages a unit's vector memory is cut into: ``⌈2·SF / 16⌉`` in LUT RAM, else 1."""
    return 1 if p.vectors_in_block_ram else -(-2 * p.sf // PAGE_WORDS)


def vector_bank_lanes(p):
    """Lanes of one bank of a unit's vector memory: all in block RAM, else at most
    :data:`VECTOR_BANK_BITS` bits' worth."""
    return p.simd if p.vectors_in_block_ram else max(1, VECTOR_BANK_BITS // p.x_width)


def vector_banks_and_pages(p):
    """``(banks, pages)`` of a unit's vector memory, one memory each pair: the banks' lanes
    ``(lo, hi)`` (:func:`vector_bank_lanes`) and the pages' words ``(lo, hi)`` at multiples
    of :data:`PAGE_WORDS` (:func:`vector_pages`). A word's page is its address's high bits
    and its place in the page the low bits (no subtraction or compare between the issue's
    address and the pages' copies: the placed LeNet-5's longest path at a seed)."""
    per, depth = vector_bank_lanes(p), 2 * p.sf
    size = PAGE_WORDS if vector_pages(p) > 1 else depth
    return ([(lo, min(p.simd, lo + per)) for lo in range(0, p.simd, per)],
            [(lo, min(depth, lo + size)) for lo in range(0, depth, size)])


def vector_write_ffs(p):
    """Flip-flops of the vector memory's write copies: each bank and page's address and
    enable (an enable a lane on a scattered input)."""
    per, pages = vector_bank_lanes(p), vector_pages(p)
    banks = -(-p.simd // per)
    addr = Shape.cast(range(-(-2 * p.sf // pages))).width
    return pages * (banks * addr + (p.simd if p.writer in ("scatter", "lanes") else banks))


def write_data_lanes(p):
    """Lanes of the vector memory's write data register: ``SIMD`` (in block RAM a narrow
    input's word, :meth:`MatrixVectorUnit._assemble`), or a narrow input's beat into LUT
    RAM (``in_simd``: :meth:`MatrixVectorUnit._narrow`)."""
    return p.in_beat if p.writer == "lanes" else p.simd


class _VectorMemory:
    """The unit's vector memory, ``2·SF`` words of ``SIMD`` activations. Block RAM is one
    memory (its address reaches a few blocks). LUT RAM is cut two ways, so that a read is
    one LUT-RAM cell between two registers:

    - into banks of whole lanes, at most :data:`VECTOR_BANK_BITS` bits each, each with its
      own copy of the read address register (one register fanned out to every cell of a
      480-bit memory was the placed LeNet-5's longest path, 9.9 ns of routing; in emitted
      Verilog each copy is a ``flexor_copy``, which Yosys keeps apart from its twins);
    - into pages of :data:`PAGE_WORDS` words (the last may be shorter), each read into a
      register of its own; the page is chosen after those registers (the multiplexer between
      a 28-word memory's cells and its read register was the next longest path). A word's
      page is its address's high bits, its place in the page the low bits.

    Writes arrive a cycle late, from registers (:meth:`write_port`). A half is written
    while the other is read, and read from the cycle after its last write lands, so no read
    meets a write of its place: block RAM carries ``no_rw_check`` (else Yosys gives the old
    word through a multiplexer and a register of the write data behind the block RAM, the
    word's register can no longer go into the DP16KD's output register, and its data leave
    5.6 ns after the clock where from that register they leave in 1.0: straight into the
    masked adders, ResNet-32's longest paths on the ECP5-85k; on the iCE40, where every
    vector memory is block RAM, the multiplexer and register took 135 LUT4 and 273
    flip-flops of the digits MLP). ``ports``: each ``(bank, page)``'s memory's
    ``(write port, read port)``, for tests."""

    def __init__(self, m, p, *, emit=False):
        self._lane, self._depth, self._emit = p.x_width, 2 * p.sf, emit
        self._banks, self._pages = vector_banks_and_pages(p)
        self._page_bits = PAGE_WORDS.bit_length() - 1
        attrs = {"ram_style": p.vectors_style} if p.vectors_style else None
        if p.address_register:          # the iCE40: block RAM, however small
            attrs = dict(NO_RW_CHECK, **(attrs or {}))
        elif p.vectors_in_block_ram:
            attrs = dict(NO_RW_CHECK, ram_style="block")
        self.ports = {}
        self._mems = {}                         # (bank, page): memory
        for k, (lo, hi) in enumerate(self._banks):
            for g, (a, b) in enumerate(self._pages):
                mem = memory.Memory(shape=(hi - lo) * p.x_width, depth=b - a, init=[],
                                    attrs=attrs)
                name = "vectors" + (f"{k}" if len(self._banks) > 1 else "") + \
                    (f"_p{g}" if len(self._pages) > 1 else "")
                m.submodules[name] = mem
                self._mems[k, g] = mem
        self._simd = p.simd

    def write_port(self, m, granularity=None, sources=None, data_q=None):
        """A write request (``addr``, ``data``, ``en``: one bit, or one per lane with
        ``granularity``; ``data`` a word, or with ``sources`` the lanes that lane ``s`` of the
        word reads lane ``sources[s]`` of; or ``data_q``, a register holding the word the
        cycle after the request, in place of ``data``) that reaches every bank's and page's
        write port a cycle later, from
        registers: the address (already in the page) and the enable in a copy per bank and
        page (one address register per page reached the 128 LUT-RAM cells of LeNet-5's
        conv2, 11.8-12.1 ns of routing placed; the copies, like the read address's, are
        ``flexor_copy`` cells that Yosys keeps apart, and the enable's copies clear while the
        reset is held, through their input). A half is read from the cycle after it is full
        at the earliest, so the write a cycle late is in the memory before its first read."""
        en_width = self._simd if granularity else 1
        sources = list(range(self._simd)) if sources is None else sources
        lanes = max(sources) + 1
        req = _WriteRequest(range(self._depth), lanes * self._lane, en_width)
        if data_q is None:
            data_q = Signal(lanes * self._lane, name="w_data_q", reset_less=True)
            m.d.sync += data_q.eq(req.data)
        data = data_q if sources == list(range(self._simd)) else \
            Cat(*[data_q[s * self._lane:(s + 1) * self._lane] for s in sources])
        paged, pb = len(self._pages) > 1, self._page_bits
        for g, (a, b) in enumerate(self._pages):
            hit = req.addr[pb:] == g if paged else 1
            width = Shape.cast(range(b - a)).width
            addr_in = req.addr[:width]
            en_in = Mux(hit & ~ResetSignal("sync"), req.en, 0)
            for k, (lo, hi) in enumerate(self._banks):
                where = f"b{k}" + (f"_p{g}" if paged else "")
                addr = copy_register(m, addr_in, f"w_addr_{where}", emit=self._emit)
                en = copy_register(m, en_in[lo:hi] if granularity else en_in,
                                   f"w_en_{where}", emit=self._emit)
                port = self._mems[k, g].write_port(granularity=granularity)
                self.ports[k, g] = (port,)
                m.d.comb += [port.addr.eq(addr),
                             port.data.eq(data[lo * self._lane:hi * self._lane]),
                             port.en.eq(en)]
        return req

    def read(self, m, addr_next, registered=False):
        """The word at the address registered from ``addr_next``, a cycle later; with
        ``registered``, two cycles later, through one register more. Where more than
        :data:`PAGE_MUX_GROUP` pages are chosen from, that register sits inside the choice:
        each group of that many pages is chosen by the page index's low bits into a register
        of its own, then the group by its high bits, registered beside them (the 64 pages of
        LeNet-5's fc2 chosen in one go after the page register were its longest path placed
        at every seed, 9.7 ns, 7.7 of them routing)."""
        self.read_next = addr_next              # for tests
        data, addr_q = [], None
        group = PAGE_MUX_GROUP
        split = registered and len(self._pages) > group
        for k, (lo, hi) in enumerate(self._banks):
            pages = []
            # a copy of the read address for every ``share`` pages: at most
            # READ_ADDRESS_CELLS LUT-RAM cells each
            share = max(1, READ_ADDRESS_CELLS // -(-(hi - lo) * self._lane // LUTRAM_CELL_BITS))
            copies = {}
            for g, (a, b) in enumerate(self._pages):
                width = Shape.cast(range(b - a)).width
                if g // share not in copies:
                    copies[g // share] = copy_register(
                        m, addr_next[:width],
                        f"r_addr_b{k}" + (f"_p{g}" if len(self._pages) > 1 else ""),
                        emit=self._emit)
                addr = copies[g // share][:width]
                port = self._mems[k, g].read_port(domain="sync")
                self.ports[k, g] += (port,)
                m.d.comb += [port.addr.eq(addr), port.en.eq(1)]
                pages.append(port.data)
            if len(pages) == 1:
                data.append(pages[0])
                continue
            # the page of the word read a cycle later, from the registered address (the page
            # decoded from ``addr_next``, behind the issue's adders and muxes, was the placed
            # LeNet-5's fc2's third longest path), a copy per bank
            if addr_q is None:
                addr_q = Signal.like(addr_next, name="r_addr_q")
                m.d.sync += addr_q.eq(addr_next)
            # The page's word by a balanced tree of multiplexers on the page index's bits
            # (a chain of compares, one a page, was the placed ResNet-32's longest path: six
            # pages of conv33's memory, 6.1 ns of logic).
            pb = self._page_bits
            if not split:
                page = copy_register(m, addr_q[pb:], f"r_page_b{k}", emit=self._emit)
                data.append(mux_tree(page, pages))
                continue
            low = group.bit_length() - 1
            chosen = []
            for j in range(0, len(pages), group):
                sel = copy_register(m, addr_q[pb:pb + low], f"r_page_b{k}_g{j // group}",
                                    emit=self._emit)
                reg = Signal(len(pages[0]), name=f"xdata_b{k}_g{j // group}", reset_less=True)
                m.d.sync += reg.eq(mux_tree(sel, pages[j:j + group]))
                chosen.append(reg)
            high = delay(m, copy_register(m, addr_q[pb + low:], f"r_group_b{k}",
                                          emit=self._emit), 1, f"r_group_b{k}", data=True)
            data.append(mux_tree(high, chosen))
        word = Cat(*data)
        return delay(m, word, 1, "xdata", data=True) if registered and not split else word


#: Bits of a word a LUT-RAM cell (TRELLIS_DPR16X4) holds.
LUTRAM_CELL_BITS = 4

#: LUT-RAM cells a copy of a vector memory's read address reaches: pages share a copy up to
#: this many (a copy per page of LeNet-5's fc2, 64 pages of two cells, put its issue logic
#: into 256 flip-flops, the longest path placed: 9.2 ns, 7.7 of them routing; one copy per
#: page of 128 cells, conv2's, was 11.8-12.1 ns).
READ_ADDRESS_CELLS = 8

#: Pages of a LUT-RAM vector memory chosen in one step before the register that a read
#: with ``registered`` adds (:meth:`_VectorMemory.read`): more are chosen in groups of this
#: many into registers, then the group.
PAGE_MUX_GROUP = 8


def read_registered(p):
    """Whether a unit's vector memory read registers the word itself (``registered`` of
    :meth:`_VectorMemory.read`): where the word is registered beside the weight bits and the
    rows' adders take no copies of it (those copies are registers of the word unregistered),
    in a unit with a vector memory and its read address not registered twice (the iCE40)."""
    return bool(p.bits_register and not p.address_register and not p.stationary
                and p.x_copies <= 1)


def vector_read_registers(p):
    """Registers of the word a unit reads from its vector memory, before its lanes: one, or
    one per group of :data:`PAGE_MUX_GROUP` pages where the read registers the word and its
    pages are more (:meth:`_VectorMemory.read`)."""
    pages = vector_pages(p)
    return -(-pages // PAGE_MUX_GROUP) if read_registered(p) and pages > PAGE_MUX_GROUP \
        else 1


#: A unit with more row groups than this reads the next group's head while a group runs,
#: from a logic ROM in pages of :data:`HEAD_PAGE_WORDS` words (two cycles). Up to 64 words
#: a head bit decodes in one slice (a LUT4 pair and its wide multiplexers on the ECP5), and
#: the read ahead's registers would cost more than they save (the digits MLP's 32 heads on
#: the UP5K, where flip-flops take logic cells).
HEAD_PREFETCH_WORDS = 64
HEAD_PAGE_WORDS = 16


def _head_prefetch(m, head, group_end, n_last, nf):
    """The row group's head, a register: the next group's read from ``head`` (a two-cycle
    ROM) while a group runs and taken as it ends (``group_end``, the vector's end with
    ``n_last``); the first group's read after reset. A head decoded in one cycle from the
    group counter (a 256-word logic ROM on LeNet-5's fc1) was the placed design's longest
    path, 9.7 ns of routing. A group of three steps or more leaves the ROM the two cycles it
    needs: its next head is addressed from the group's first step on."""
    succ = Signal(range(max(2, nf)), init=1 % nf, name="head_next")    # the next group
    boot = Signal(range(head.latency + 2), init=head.latency + 1, name="head_boot")
    held = Signal(head.width, name="head", reset_less=True)
    # The ROM's address is a register of its own, 0 while booting, then the next group (its
    # next value from the counters': the boot counter's compare and the select, before the
    # 256 LUTs of a paged ROM's first stage, were LeNet-5's longest path placed).
    addr = Signal.like(head.addr, name="head_addr")
    succ_next = Mux(group_end, Mux(n_last, 1 % nf, Mux(succ == nf - 1, 0, succ + 1)), succ)
    m.d.comb += head.addr.eq(addr)
    m.d.sync += [addr.eq(Mux(boot >= 2, 0, succ_next)), succ.eq(succ_next)]
    with m.If(boot != 0):
        m.d.sync += boot.eq(boot - 1)
    with m.If((boot == 1) | group_end):          # group 0's head after reset; the next's
        m.d.sync += held.eq(head.data)
    return held


def _offset_counters(m, p, col_step, col_wrap, row_step, row_wrap):
    """Each PE row's bit offset in its decoded slots, ``(r·F + s·SIMD) mod n_out`` for row
    ``r = n·PE + j`` at column block ``s``, registered (none where every row has one): a
    column phase stepped by ``col_step`` (back to 0 with ``col_wrap``) plus a row phase per
    row stepped by ``row_step`` (back to its first group's with ``row_wrap``), each a small
    modular counter."""
    if not p.offset_bits:
        return []
    n, f, pe = p.n_out, p.fan_in, p.pe
    col = Signal(range(n))
    rows_ph = [Signal(range(n), init=(j * f) % n, name=f"row_ph{j}") for j in range(pe)]
    with m.If(col_step):
        m.d.sync += col.eq(Mux(col_wrap, 0, _mod_add(col, p.simd % n, n)))
    with m.If(row_step):
        for j in range(pe):
            m.d.sync += rows_ph[j].eq(Mux(row_wrap, (j * f) % n,
                                          _mod_add(rows_ph[j], (pe * f) % n, n)))
    offs = []
    for j in range(pe):
        off = Signal(range(n), name=f"off1_{j}")
        m.d.sync += off.eq(_mod_sum(rows_ph[j], col, n))
        offs.append(off)
    return offs


def _mod_add(value, const, n):
    """``(value + const) mod n`` for ``value < n``, ``const < n``."""
    if const == 0:
        return value
    return Mux(value >= n - const, value - (n - const), value + const)


def _mod_sum(a, b, n):
    """``(a + b) mod n`` for ``a, b < n``."""
    total = a + b
    return Mux(total >= n, total - n, total)


def _cut_after(level, first):
    """Whether :func:`_tree_sum` registers its terms after ``level``: level ``first``, then
    every :data:`TREE_LEVELS_PER_REGISTER` levels (and its output, whatever the level)."""
    return level == first or (level > first and (level - first) % TREE_LEVELS_PER_REGISTER == 0)


def _tree_registers(n_terms, first=TREE_LEVELS_PER_REGISTER):
    """Registers :func:`_tree_sum` puts between its terms and its sum."""
    levels = (n_terms - 1).bit_length()
    return len({lv for lv in range(1, levels + 1) if _cut_after(lv, first)} | {levels}) \
        if levels else 1


def _tree_sum(m, terms, shape, name, first=TREE_LEVELS_PER_REGISTER):
    """Balanced adder tree with a register after level ``first``, then after every
    :data:`TREE_LEVELS_PER_REGISTER` levels, and on its output (at least one register)."""
    terms, level = list(terms), 0
    while True:
        if len(terms) > 1:
            sums = []
            for i in range(0, len(terms) - 1, 2):
                # A kept wire between levels: Yosys would otherwise merge the two levels into
                # one multi-operand sum and build it from LUTs instead of carry chains.
                wire = Signal((terms[i] + terms[i + 1]).shape(), name=f"{name}_w{level}_{i}",
                              attrs={"keep": 1})
                m.d.comb += wire.eq(terms[i] + terms[i + 1])
                sums.append(wire)
            terms = sums + ([terms[-1]] if len(terms) % 2 else [])
            level += 1
        if len(terms) == 1 or _cut_after(level, first):
            regs = []
            for k, t in enumerate(terms):
                reg = Signal(shape if len(terms) == 1 else t.shape(), name=f"{name}_l{level}_{k}",
                             reset_less=True)
                m.d.sync += reg.eq(t)
                regs.append(reg)
            terms = regs
        if len(terms) == 1:
            return terms[0]


def _chunks(width):
    """``(lo, hi)`` bit ranges cutting a signed operand of ``width`` bits into pieces one
    multiplier takes: unsigned pieces of ``MUL_WIDTH − 1`` bits from the bottom, the signed
    rest on top (``v = Σ piece·2^lo``)."""
    pieces, lo = [], 0
    while width - lo > MUL_WIDTH:
        pieces.append((lo, lo + MUL_WIDTH - 1))
        lo += MUL_WIDTH - 1
    return pieces + [(lo, width)]


def _requantize(m, c, s, a, beta, q, name, *, emit=False, lut=False):
    """``clamp((Σ_i a_i·s_i + β + round) >> F)``: operands and products registered in
    :class:`~flexor_hw.gateware.mul.Multiplier` (a MULT18X18D's own registers on the ECP5;
    ``emit``: its Verilog instance), a pipelined sum, shift and compares, then the clamp's
    select (combinational, into a FIFO). A product wider than one multiplier's operands is
    taken as partial products of pieces (:func:`_chunks`) that the sum tree adds: nothing but
    wiring follows a multiplier (its adder was the placed LeNet-5's longest path). Latency:
    2 + sum stages + 1 registers. ``lut``: the products in logic (:func:`lut_product`), their
    terms into the same sum tree."""
    def piece(v, lo, hi, width):
        if (lo, hi) == (0, width):
            return v
        return v[lo:hi] if hi < width else v[lo:].as_signed()

    terms = []
    a_pieces, s_pieces = _chunks(c.a_width), _chunks(c.s_width)
    for i in range(q):
        if lut:
            terms += lut_product(m, a[i], s[i], f"{name}_mul{i}")
            continue
        for (alo, ahi) in a_pieces:
            for (slo, shi) in s_pieces:
                x, y = piece(a[i], alo, ahi, c.a_width), piece(s[i], slo, shi, c.s_width)
                mul = Multiplier(x.shape(), y.shape(), emit=emit)
                m.submodules[f"{name}_mul{i}_{alo}_{slo}"] = mul
                m.d.comb += [mul.a.eq(x), mul.b.eq(y)]
                terms.append(mul.p << (alo + slo))
    beta_b = Signal(signed(c.beta_width), name=f"{name}_beta_b", reset_less=True)
    beta_r = Signal(signed(max(c.beta_width, c.round_const.bit_length()) + 1),
                    name=f"{name}_beta", reset_less=True)
    m.d.sync += [beta_b.eq(beta), beta_r.eq(beta_b + c.round_const)]
    acc = pipelined_sum(m, terms + [beta_r], signed(c.acc_width), f"{name}_acc")
    shifted = Signal(signed(max(1, c.acc_width - c.frac_bits)), name=f"{name}_shifted",
                     reset_less=True)
    under = Signal(name=f"{name}_under", reset_less=True)
    over = Signal(name=f"{name}_over", reset_less=True)
    floor = acc >> c.frac_bits
    m.d.sync += [shifted.eq(floor), under.eq(floor < c.y_lo), over.eq(floor > c.y_hi)]
    y = Signal(int_shape(c.y_lo, c.y_hi), name=f"{name}_y")
    m.d.comb += y.eq(Mux(under, c.y_lo, Mux(over, c.y_hi, shifted)))
    return y
