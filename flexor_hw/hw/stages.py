"""The hardware graph's stages: one class per kind, registered in :data:`STAGES` (as
:data:`flexor_hw.ops.OPS` registers ops).

A stage is built from plain parameters and answers for itself, as FINN's ``HWCustomOp`` does:
its cycles per image, its latency (a bound), the widths of its streams (elements per beat,
``in_simd``/``out_simd``), its memories (kind, depth, width) and its resource estimate
(:meth:`Stage.estimate`, ECP5 LUT4/FF/DP16KD/DSP). :meth:`Stage.unit` builds its Amaranth
component, whose streams are ``i`` and ``o`` (and, for a residual add, ``b``; for the fork of
a residual block, ``skip``). Spatial streams carry ``(y, x, c)`` order; a "vector" of a
stream is what one beat sequence of ``length`` elements is cut on (a pixel's channels, a
window, a flat feature vector).
"""

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import ClassVar

from ..gateware.mvau import (rom_in_logic, rom_latency, rom_paged, rom_stalls,
                              vector_banks_and_pages, vector_pages, vector_read_registers,
                              vector_write_ffs, write_data_lanes)
from ..gateware.pipeline import fifo_memory_words, int_shape, ram_style_attr
from ..gateware.rom import (LOGIC_ROM_BITS, flat_group_bits, rom_address_copies, rom_layout,
                             rom_read_latency)
from ..gateware.repack import PIECE_BITS as REPACK_PIECE_BITS
from ..gateware.weight_stream import ENABLE_PIECES_ABOVE, PIECE_BITS, prefetch_depth
from ..gateware.window import line_buffer_rows, window_rows
from .cost import COST, memory

__all__ = ["STAGES", "Stage", "InputQuantizer", "SlidingWindow", "Mvau", "MaxPool",
           "GlobalAvgPool", "ResidualFork", "ResidualAdd", "Repack", "Argmax"]

#: Stage classes by kind.
STAGES = {}


def register(cls):
    STAGES[cls.kind] = cls
    return cls


@dataclass(frozen=True, eq=False)
class Stage:
    """Base of every stage: ``name`` (the package node it comes from, or a derived name),
    the integer range of the elements it takes (``x_range``) and emits (``y_range``)."""

    kind: ClassVar[str] = ""
    name: str
    x_range: tuple
    y_range: tuple
    # the device family whose memories the estimate counts: "ecp5" (DP16KD, LUT RAM) or
    # "ice40" (SB_RAM40_4K, no LUT RAM); set by the folding pass from the budget
    family: str = field(default="ecp5", kw_only=True)

    in_simd: ClassVar[int] = 1
    out_simd: ClassVar[int] = 1

    @property
    def x_shape(self):
        return int_shape(*self.x_range)

    @property
    def y_shape(self):
        return int_shape(*self.y_range)

    @property
    def in_length(self):
        """Elements of a vector on the input stream (what a width change is cut on)."""
        return 1

    @property
    def out_length(self):
        return 1

    def cycles_per_image(self):
        raise NotImplementedError

    def latency(self):
        """A bound on the cycles from an image's last input beat to its last output beat."""
        return self.cycles_per_image() + 4

    def memories(self):
        return []

    def estimate(self):
        """Estimated ``{luts, ffs, brams, dsps}`` on the ECP5 (LUT4, a carry cell as 2)."""
        c = COST[self.kind]
        est = {"luts": c.get("luts", 0), "ffs": c.get("ffs", 0), "brams": 0,
               "dsps": c.get("dsps", 0)}
        return _with_memories(est, self.memories())

    def describe(self):
        """The stage's parameters for the manifest."""
        return {}

    def unit(self, files=None):
        raise NotImplementedError


def _mem(stage, kind, depth, width, **kw):
    """:func:`~flexor_hw.hw.cost.memory` on the stage's device family."""
    return memory(kind, depth, width, family=stage.family, **kw)


def _with_memories(est, mems):
    est = dict(est)
    for mem in mems:
        est["brams"] += mem["block_rams"]
        est["luts"] += mem["luts"]
        est["ffs"] += mem["ffs"]
    return est


@register
@dataclass(frozen=True, eq=False)
class InputQuantizer(Stage):
    """Raw features in, ``b`` bits per feature out (bitwise soft quantization)."""

    kind: ClassVar[str] = "quantizer"
    thresholds: tuple = ()

    def cycles_per_image(self):
        return len(self.thresholds) * len(self.thresholds[0])

    def latency(self):
        """Its ``b`` bits leave one per cycle after the feature's beat (measured)."""
        return len(self.thresholds[0])

    def estimate(self):
        c = COST[self.kind]
        n, b = len(self.thresholds), len(self.thresholds[0])
        return {"luts": c["luts"] + c["luts_per_threshold"] * n * b, "ffs": c["ffs"],
                "brams": 0, "dsps": 0}

    def describe(self):
        return {"features": len(self.thresholds), "bits_per_feature": len(self.thresholds[0])}

    def unit(self, files=None):
        from ..gateware.quantizer import InputQuantizer as Unit
        return Unit([list(t) for t in self.thresholds], self.x_shape)


#: Widest line buffer word of a group window (:attr:`SlidingWindow.channel_groups`): a
#: DP16KD's port.
MAX_GROUP_BITS = 36


@register
@dataclass(frozen=True, eq=False)
class SlidingWindow(Stage):
    """Zero padding and a line buffer; each output pixel's window in ``(c, ky, kx)`` order,
    one element per beat (FINN's SWU with SIMD 1)."""

    kind: ClassVar[str] = "window"
    channels: int = 1
    height: int = 1
    width: int = 1
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    simd: int = 1       # 1; kw: a kernel row per beat (RowWindow); kh·kw: a channel's kernel
                        # (KernelWindow)
    block: tuple = (1, 1)   # output pixels in blocks of (by, bx), for a max pool of that
                            # kernel after the unit (:func:`~.fold.fuse_pools`)
    in_beat: int = 1        # elements an input beat (a group window's; dividing its group)

    @property
    def in_simd(self):
        return self.in_beat

    @property
    def out_simd(self):
        return self.simd

    def widened(self, simd):
        return replace(self, simd=simd, in_beat=1)

    @property
    def widths(self):
        """The beats this window can emit, slowest first (at one rate, fewest banks first):
        an element, a kernel row, the kernels of ``g`` channels (a channel group; ``g·kw``
        elements a cycle), a channel's kernel (``kh·kw`` a cycle)."""
        kh, kw = self.kernel
        options = {1: (1, 1), kw: (kw, kw), kh * kw: (kh * kw, kh * kw)}
        for g in self.channel_groups:
            options.setdefault(g * kh * kw, (g * kw, kw))
        return sorted(options, key=lambda simd: options[simd])

    @property
    def channel_groups(self):
        """Channels a group window's line buffer word can hold (:class:`GroupWindow`): from 2,
        dividing the channels, at most :data:`MAX_GROUP_BITS` bits a word, the group's
        kernels fewer elements a cycle than a channel's kernel window's or up to twice as
        many."""
        kh, kw = self.kernel
        xw = self.x_shape.width
        return [g for g in range(2, self.channels + 1)
                if self.channels % g == 0 and g * xw <= MAX_GROUP_BITS and kh > 1
                and g * kw <= 2 * kh * kw]

    @property
    def group(self):
        """Channels a line buffer word holds: ``simd / (kh·kw)`` for a group window, else 1."""
        kh, kw = self.kernel
        return self.simd // (kh * kw) if self.style == "group" else 1

    @property
    def style(self):
        """``"element"``, ``"row"``, ``"group"`` or ``"kernel"``: the unit its beat width
        makes."""
        kh, kw = self.kernel
        if self.simd == 1:
            return "element"
        if self.simd == kw:
            return "row"
        return "kernel" if self.simd == kh * kw else "group"

    def _group_parts(self):
        """A group window's parts as stages: the packer of ``g`` channels into a word, the
        row window over words, and the gather of a group's ``kh`` kernel rows."""
        g, kw, xw = self.group, self.kernel[1], self.x_shape.width
        word = (0, (1 << (g * xw)) - 1)
        rows = replace(self, x_range=word, y_range=word, channels=self.channels // g, simd=kw)
        pack = Repack(f"{self.name}_pack", self.x_range, self.x_range, length=self.channels,
                      n_in=self.in_beat, n_out=g, family=self.family)
        gather = Repack(f"{self.name}_gather", self.x_range, self.x_range,
                        length=self.window_elements, n_in=g * kw, n_out=self.simd,
                        family=self.family)
        return pack, rows, gather

    @property
    def buffer_rows(self):
        if self.style == "group":
            return self._group_parts()[1].buffer_rows
        return window_rows(self.style, self.channels, self.height, self.width, self.kernel,
                           self.stride, self.padding, self.block)

    @property
    def output_size(self):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        return ((self.height + 2 * ph - kh) // sh + 1, (self.width + 2 * pw - kw) // sw + 1)

    @property
    def window_elements(self):
        return self.channels * self.kernel[0] * self.kernel[1]

    @property
    def in_length(self):
        return self.channels

    @property
    def out_length(self):
        return self.window_elements

    def cycles_per_image(self):
        """One beat of ``simd`` window elements per cycle and a cycle between images, or
        one input beat per cycle, if more (measured)."""
        oh, ow = self.output_size
        beats = oh * ow * self.window_elements // self.simd
        if self.style == "group":       # a beat every kh cycles: a kernel row of the group
            beats *= self.kernel[0]
        return max(beats + 1, self.channels * self.height * self.width // self.in_beat)

    def memories(self):
        if self.style == "group":
            return self._group_parts()[1].memories()
        rows = self.buffer_rows
        if self.simd == 1:
            return [_mem(self, "line buffer", rows * self.width * self.channels,
                            self.x_shape.width)]
        (kh, kw), xw = self.kernel, self.x_shape.width
        groups = -(-self.width // kw)
        if self.style == "row":
            return [_mem(self, f"line buffer bank {b}", rows * groups * self.channels, xw)
                    for b in range(kw)]
        return [_mem(self, f"line buffer bank {rb}_{cb}", rows // kh * groups * self.channels,
                     xw) for rb in range(kh) for cb in range(kw)]

    def estimate(self):
        if self.style == "group":
            parts = [p.estimate() for p in self._group_parts()]
            est = {k: sum(p[k] for p in parts) for k in parts[0]}
            c = COST["group_window"]
            bits = self.kernel[1] * self.group * self.x_shape.width
            est["luts"] += round(c["luts_per_row_bit"] * bits)
            est["ffs"] += round(c["ffs_per_row_bit"] * bits)
            return est
        c = COST[{"element": "window", "row": "row_window", "kernel": "kernel_window"}[
            self.style]]
        # the output's register beside the unit's fixed cost
        io = COST["window_io"]
        ffs = c["ffs"] + io["ffs_per_out_bit"] * self.x_shape.width * self.simd + io["ffs"]
        mems = self.memories()
        # the line buffer's data register: inside the block RAMs on the ECP5 (synth moves it
        # there), flip-flops where the buffer is LUT RAM or on the iCE40
        if self.family != "ecp5" or not all(mem["block_rams"] for mem in mems):
            ffs += self.x_shape.width * self.simd
        # each memory's registered write port: address, data and enable
        ffs += sum(max(1, (mem["depth"] - 1).bit_length()) + mem["width"] + 1 for mem in mems)
        luts = c["luts"]
        if self.style == "kernel":
            # the banks' read addresses (a register each), the kernel's rotation by row and
            # by column (a kh-way and a kw-way select per element bit)
            kh, kw = self.kernel
            n = kh * kw
            bits = n * self.x_shape.width
            luts += round(c["luts_per_bank"] * n + c["luts_per_select_bit"] * (kh + kw) * bits)
            ffs += round(c["ffs_per_bank"] * n + c["ffs_per_element_bit"] * bits)
        if self.blocked:
            # the place in the block, the pixel's first row and slot, the block's first
            # column (kept to come back to)
            luts, ffs = luts + COST["window_block"]["luts"], ffs + COST["window_block"]["ffs"]
        skid = skid_buffer_cost(self.x_shape.width)         # the input's skid buffer
        return _with_memories({"luts": luts + skid["luts"] + 2, "ffs": ffs + skid["ffs"],
                               "brams": 0, "dsps": 0}, mems)

    @property
    def blocked(self):
        return tuple(self.block) != (1, 1)

    def can_block(self, block):
        """Whether it can emit its output pixels in blocks of ``block`` (an element or row
        window whose output the blocks tile)."""
        oh, ow = self.output_size
        return self.style != "kernel" and oh % block[0] == 0 and ow % block[1] == 0

    def describe(self):
        return {"channels": self.channels, "height": self.height, "width": self.width,
                "kernel": list(self.kernel), "stride": list(self.stride),
                "padding": list(self.padding), "simd": self.simd,
                "line_buffer_rows": self.buffer_rows,
                **({"channels_per_word": self.group, "input_beat": self.in_beat}
                   if self.style == "group" else {}),
                **({"pixel_blocks": list(self.block)} if self.blocked else {})}

    def unit(self, files=None):
        from ..gateware.window import GroupWindow, KernelWindow, RowWindow, SlidingWindow
        if self.style == "group":
            return GroupWindow(self.x_shape, self.channels, self.height, self.width,
                               self.kernel, group=self.group, stride=self.stride,
                               padding=self.padding, block=self.block, in_beat=self.in_beat,
                               pieces=self.family != "ice40", emit=files is not None)
        unit = {"element": SlidingWindow, "row": RowWindow, "kernel": KernelWindow}[self.style]
        return unit(self.x_shape, self.channels, self.height, self.width, self.kernel,
                    stride=self.stride, padding=self.padding, block=self.block,
                    emit=files is not None)


@register
@dataclass(frozen=True, eq=False)
class Mvau(Stage):
    """A matrix-vector unit (:class:`~flexor_hw.gateware.mvau.MatrixVectorUnit`) folded to
    ``pe × simd``, run ``vectors`` times per image (a conv's output pixels; 1 for a linear
    layer). ``weights`` is the node (or an int node's bit-planes) whose ROM images it holds;
    ``consts`` its constants."""

    kind: ClassVar[str] = "mvau"
    op: str = "linear"
    weights: object = None
    consts: object = None
    vectors: int = 1
    pe: int = 1
    simd: int = 1
    rows_per_beat: int = 1
    baseline: bool = False
    unipolar: bool = False
    rom_logic: bool = False         # the weight ROM in logic, not block RAM
    rom_block: bool = False         # a weight ROM small enough to be logic in block RAM
    vectors_lutram: bool = None     # the vector memory in LUT RAM / block RAM / (None) by cost
    scatter: tuple = None           # (C, H, W): a linear layer's spatial input, flattened
                                    # as it is written (one element a beat)
    in_beat: int = None             # elements an input beat, a divisor of SIMD the unit
                                    # takes itself (None: SIMD; fold.match_widths sets it)
    bits_register: bool = True      # the decoded weight bits registered
    address_register: bool = False  # the vector read address registered twice (the iCE40)
    rom_page_words: int = None      # a logic weight ROM decoded in pages (the iCE40: 16)
    lut_multipliers: bool = False   # the requantizer's products in logic, not DSPs
    stationary: bool = False        # each input word held while every row group takes it:
                                    # no vector memory, the groups' sums in rings

    @property
    def in_simd(self):
        return 1 if self.scatter else (self.in_beat or self.simd)

    @property
    def out_simd(self):
        return self.rows_per_beat

    @property
    def in_length(self):
        return self.weights.fan_in

    @property
    def out_length(self):
        return self.weights.out_features

    @cached_property
    def params(self):
        """The unit's plain parameters (no ROM contents)."""
        return self._params(False)

    def _params(self, contents):
        from ..rom_image import mvau_params
        return mvau_params(self.weights, self.consts, self.pe, self.simd, self.rows_per_beat,
                           baseline=self.baseline, unipolar=self.unipolar, contents=contents,
                           rom_logic=self.rom_logic, rom_block=self.rom_block,
                           vectors_lutram=self.vectors_lutram,
                           bits_register=self.bits_register,
                           address_register=self.address_register,
                           # the ECP5's carry-chain LUTs take the weight bits' masks
                           masked_adders=self.family == "ecp5" and not self.address_register,
                           rom_page_words=self.rom_page_words,
                           lut_multipliers=self.lut_multipliers, in_simd=self.in_beat,
                           stationary=self.stationary,
                           scatter=None if self.scatter is None else
                           (self.scatter[0], self.scatter[1] * self.scatter[2]))

    def folded(self, pe, simd, out_simd, *, rom_logic=False, rom_block=False,
               vectors_lutram=None, stationary=False):
        return replace(self, pe=pe, simd=simd, rows_per_beat=out_simd, rom_logic=rom_logic,
                       rom_block=rom_block, vectors_lutram=vectors_lutram, in_beat=None,
                       stationary=stationary)

    def cycles_per_image(self):
        return self.vectors * self.params.cycles_per_vector

    def latency(self):
        return (self.vectors - 1) * self.params.cycles_per_vector + self.params.latency_cycles

    def memories(self):
        p = self.params
        in_logic = rom_in_logic(p, LOGIC_ROM_BITS)      # the unit's own rule, rom_block's too
        if p.stationary:        # no vector memory: a buffer of finished row groups' sums
            vectors = [_mem(self, "finished groups", p.group_slots,
                            p.pe * p.q * p.consts.s_width, style="distributed")]
        else:
            vectors = [_mem(self, "activations", 2 * p.sf, p.simd * p.x_width,
                            style=p.vectors_style)]
        fifo = []
        if self.family == "ice40":
            # No LUT RAM: the vector memory's banks and pages (cut for LUT RAM unless it asks
            # for block RAM) and an output FIFO's memory each take block RAMs of their own
            # (the placed digits MLP's fc1, 2 × 16 of 5 bits: banks of 60 and 20 bits in 4
            # and 2 SB_RAM40_4K, its 11 waiting beats in 1)
            banks, pages = vector_banks_and_pages(p)
            if len(banks) * len(pages) > 1:
                vectors = [_mem(self, f"activations bank {k} page {g}", b - a,
                                (hi - lo) * p.x_width)
                           for k, (lo, hi) in enumerate(banks) for g, (a, b) in enumerate(pages)]
            words = fifo_memory_words(p.fifo_depth)
            if words:
                fifo = [_mem(self, "output FIFO", words, p.out_simd * p.y_width)]
        return [_mem(self, "weights", p.rom_depth, p.rom_width, rom=True, logic=in_logic,
                     block=not in_logic),
                _mem(self, "constants", p.const_depth, p.const_width, rom=True)] + \
            vectors + fifo + \
            ([_mem(self, "row-group heads", p.nf, p.head_width, rom=True, logic=True)]
             if p.carry else [])

    def estimate(self):
        return dict(self._estimate)

    @cached_property
    def _estimate(self):        # (the folding pass asks a unit again and again)
        est = mvau_logic(self.params)
        if self.family == "ice40":
            est = {**est, **ice40_multipliers(self.params, est)}
        return _with_memories(est, self.memories())

    def describe(self):
        p, w = self.params, self.weights
        in_logic = rom_in_logic(p, LOGIC_ROM_BITS)
        banks, bank_addr, _ = (1, None, 0) if in_logic else rom_layout(p.rom_depth, p.rom_width)
        file_words = p.rom_depth if banks == 1 else 1 << bank_addr
        return {"op": self.op, "fan_in": w.fan_in, "out": w.out_features, "q": w.q,
                "n_in": w.n_in, "n_out": w.n_out, "pe": p.pe, "simd": p.simd,
                "out_simd": p.out_simd, "vectors": self.vectors, "sf": p.sf, "nf": p.nf,
                "slots": p.slots, "offsets_per_row": max((len(o) for o in p.offsets),
                                                         default=1), "carry": p.carry,
                "rom_in_logic": in_logic, "rom_banks": banks,
                "rom_file_words": file_words, "rom_file_width": banks * p.rom_width,
                "vectors_in_lut_ram": p.vectors_style == "distributed" and not p.stationary,
                "input_stationary": p.stationary,
                "rom_words": p.rom_depth, "rom_width": p.rom_width, "rom_bits": p.weight_bits,
                "const_rom_bits": p.const_width * p.const_depth,
                "const_rom_words": p.const_depth, "const_rom_width": p.const_width,
                "bits_per_weight": w.bits_per_weight, "stored_bits": w.stored_bits,
                "cycles_per_vector": p.cycles_per_vector,
                "activation_memory_bits": p.activation_memory_bits,
                "output_fifo_depth": p.fifo_depth, "widths": p.consts.widths(),
                # the lanes add an activation or its complement: no Σx, β offset per row
                "xor_masks": p.xor_masks,
                "multipliers_in_logic": p.lut_multipliers,
                "scatter": list(self.scatter) if self.scatter else None,
                "plain_rom": p.plain}

    def unit(self, files=None):
        from ..gateware.mvau import MatrixVectorUnit
        return MatrixVectorUnit(self._params(files is None), init_files=files,
                                logic_rom_bits=LOGIC_ROM_BITS)


def mvau_logic(p):
    """Logic of a matrix-vector unit at its folding (memories apart), from :data:`COST`."""
    c = COST["mvau"]
    lanes = p.pe * p.simd * p.q
    offsets = max((len(o) for o in p.offsets), default=1)
    decoded = 0 if p.plain else p.q * p.pe * p.slots * p.n_out
    select = 0 if offsets == 1 else p.q * p.pe * p.simd * c["luts_per_select_bit"] * \
        math.ceil(math.log2(offsets))
    t_width = max(1, (p.fan_in * max(1, abs(p.consts.x_hi), abs(p.consts.x_lo))).bit_length() + 1)
    rows = p.pe * p.q
    xw = p.x_width
    carried = p.q * p.pe * p.n_in if p.carry else 0     # the carried slice and its select
    # heads read a group ahead: the ROM's page (or word) registers and the head's, and the
    # choice of the page
    from ..gateware.mvau import HEAD_PAGE_WORDS
    head_pages = -(-p.nf // HEAD_PAGE_WORDS) if p.nf > HEAD_PAGE_WORDS else 1
    ahead_ffs = (head_pages + 1) * p.head_width if p.heads_prefetched else 0
    ahead_luts = -(-(head_pages - 1) // 3) * p.head_width if p.heads_prefetched else 0
    # the requantizers' products in logic (:func:`~flexor_hw.gateware.mul.lut_product`)
    product_bits = p.out_simd * p.q * p.consts.a_width * p.consts.s_width * p.lut_multipliers
    # Σx's tree: of a word read, or of a beat written (:attr:`MvauParams.x_sum_written`);
    # none where the lanes add complements (:attr:`MvauParams.xor_masks`)
    columns = 0 if p.xor_masks else p.in_beat if p.x_sum_written else p.simd
    luts = (c["luts"] + c["luts_per_lane"] * lanes + c["luts_per_column"] * columns
            + c["luts_per_product_bit"] * product_bits
            + decoded + select + carried + ahead_luts
            + (c["luts_per_row_bit"]
               - c["luts_per_difference_bit"] * (p.x_sum_written or p.xor_masks))
            * rows * t_width
            + c["luts_per_word_bit"] * p.rom_width * (not stream_stalls(p))
            + c["luts_per_requantizer"] * p.out_simd)
    # masked in the first level's adders: a register of a pair's sum takes the place of the
    # two masked activations' (about half the flip-flops)
    lane_ffs = (c["ffs_per_lane_bit"] * lanes * xw if not p.masked_adders else
                (c["ffs_per_lane_bit"] - 1) * lanes * xw + lanes * (xw + 1) / 2)
    ffs = (c["ffs"] + lane_ffs
           # the Σx tree's registers
           + c["ffs_per_column_bit"] * columns * xw
           # the word's copies for the rows' masked adders (the Σx tree keeps the register)
           + (p.x_copies * p.simd * xw if p.x_copies > 1 else 0)
           + c["ffs_per_row_bit"] * rows * t_width + carried + ahead_ffs
           + stream_word_ffs(p) * p.rom_width + c["ffs_per_requantizer"] * p.out_simd
           # the operands' second register, beside the constants' output register
           + p.out_simd * p.q * p.consts.s_width * (p.const_latency - 1)
           + rom_read_ffs(p) + stream_enable_ffs(p)
           + c["ffs_per_product_bit"] * product_bits)
    if p.stationary:
        # no vector memory: the input word's register takes its read's place (and the
        # weight bits' and the word's beside them), and each row's NF − 1 other groups'
        # sums wait in its ring (flip-flops only: they shift under the row's enable); the
        # finished groups' counters and the serializer's read
        ffs += (p.simd * xw * (1 + p.bits_register) + lanes * p.bits_register
                + (p.nf - 1) * rows * p.acc_shape.width)
        luts += c["luts_stationary"]
    else:
        ffs += (
            # on the iCE40 the word's register before the Σx tree; a written vector's sum
            # is held once more, for the issue
            (p.address_register * p.simd * xw if not p.x_sum_written else t_width)
            + (vector_pages(p) - 1) * p.simd * xw       # a read register per LUT-RAM page
            + vector_write_ffs(p)                       # the write address's copies
            # a narrow input's write data register holds a beat, not a word
            - (p.simd - write_data_lanes(p)) * xw
            # the weight bits and the word read (the read address on the iCE40, where the
            # bits' and a paged ROM's registers share their LUTs' logic cells: the cells are
            # what counts there, and the placed digits MLP took fewer with them)
            + (p.simd * xw * vector_read_registers(p) + lanes)
            * (p.bits_register and not p.address_register)
            + (2 * p.sf - 1).bit_length() * p.address_register)
    return {"luts": round(luts), "ffs": round(ffs), "brams": 0, "dsps": p.dsps}


#: Operand width of the iCE40's SB_MAC16 (16 × 16).
ICE40_MUL_WIDTH = 16


def ice40_multipliers(p, est):
    """``est``'s DSPs and flip-flops on the iCE40: the requantizer's partial products
    (``product_pieces``, cut for the ECP5's 18-bit MULT18X18D) take an SB_MAC16 per 16 × 16
    piece, and Yosys leaves their operand and product registers in flip-flops (the placed
    digits MLP: 17 × 16 bits, 2 SB_MAC16 and 66 flip-flops; 4 × 16, 1 and 40)."""
    if p.lut_multipliers:
        return {"dsps": 0, "ffs": est["ffs"]}
    pieces = p.product_pieces
    dsps = sum(-(-a // ICE40_MUL_WIDTH) * -(-s // ICE40_MUL_WIDTH) for a, s in pieces)
    ffs = sum(2 * (a + s) for a, s in pieces)
    return {"dsps": p.out_simd * p.q * dsps, "ffs": est["ffs"] + p.out_simd * p.q * ffs}


def skid_buffer_cost(width):
    """A :class:`~flexor_hw.gateware.pipeline.SkidBuffer` of ``width`` bits: two beats and
    two flags in flip-flops, a multiplexer (a LUT4) a bit."""
    return {"luts": width, "ffs": 2 * width + 2}


def stream_stalls(p):
    """Whether a unit's weight stream stalls its ROM (no ring of words:
    :func:`~flexor_hw.gateware.mvau.rom_stalls`)."""
    return rom_stalls(p, rom_in_logic(p, LOGIC_ROM_BITS))


def stream_word_ffs(p):
    """Flip-flops per bit of a unit's weight word: the ROM's registers of the word (those of
    latency 3 apart: :func:`rom_read_ffs`) and the engine's. Behind a banked ROM, a ring of
    :func:`prefetch_depth` words more (fitted: :data:`COST`). Where the stream stalls the
    ROM: in block RAM the engine's register alone (the ROM's moves into the blocks' output
    registers: :mod:`flexor_hw.outreg`); in logic the ROM's word register too, and its
    decode's unless that is read in pages (a page's register is counted with the pages)."""
    if not stream_stalls(p):
        return COST["mvau"]["ffs_per_word_bit"]
    if not rom_in_logic(p, LOGIC_ROM_BITS):
        return 1
    return 2 + (not rom_paged(p))


def rom_read_ffs(p):
    """The registers a weight ROM of latency 3 (:func:`rom_latency`) adds: in logic, read in
    pages (``rom_page_words``), a word per page and the address's copy per page; else the
    address's copy per 18 bits of the word; in block RAM, the address's copy per group of
    blocks. None at latency 2 (the iCE40, ``address_register``: each page register takes the
    logic cell of the LUT4 that decodes its page bit; and a banked ROM, whose registers the
    ring's fitted cost holds)."""
    logic = rom_in_logic(p, LOGIC_ROM_BITS)
    if rom_latency(p, logic) < 3:
        return 0
    address_bits = max(1, (p.rom_depth - 1).bit_length())
    if not logic:       # a wide one in block RAM: the address's copy per group of blocks
        groups = -(-p.rom_width // flat_group_bits(p.rom_depth, p.rom_width))
        return groups * address_bits
    if not rom_paged(p):
        return rom_address_copies(p.rom_width) * address_bits
    pages = -(-p.rom_depth // p.rom_page_words)
    return pages * (p.rom_width + p.rom_page_words.bit_length() - 1)


def stream_enable_ffs(p):
    """The weight stream's slot enables of a word wider than
    :data:`~flexor_hw.gateware.weight_stream.ENABLE_PIECES_ABOVE`: a register per piece and
    slot (:class:`~flexor_hw.gateware.weight_stream.WeightStream`)."""
    if p.rom_width <= ENABLE_PIECES_ABOVE or stream_stalls(p):
        return 0
    logic = rom_in_logic(p, LOGIC_ROM_BITS)
    latency = rom_read_latency(p.rom_depth, p.rom_width, rom_latency(p, logic), logic)
    return prefetch_depth(latency) * -(-p.rom_width // PIECE_BITS)


def _const_products_in_logic(est, products):
    """``est`` with its multipliers by constants (``(x_width, k)`` each) built in logic
    (:func:`~flexor_hw.gateware.mul.const_product` with ``lut``): no DSP; an adder of the
    product's width per signed digit of ``k`` past the first, registered as far as the
    pairs' terms. (Yosys, against the same stage on DSPs: a residual add 254 LUT4 / 135 FF
    more, estimated 231 / 172; a global pool 161 / 61, estimated 81 / 70.)"""
    from ..gateware.mul import csd_digits
    luts, ffs = 0, 0
    for x_width, k in products:
        digits, width = len(csd_digits(k)), x_width + abs(int(k)).bit_length() + 1
        luts += max(0, digits - 1) * width
        ffs += x_width + 1 + -(-digits // 2) * width
    return dict(est, luts=est["luts"] + luts, ffs=est["ffs"] + ffs, dsps=0)


@register
@dataclass(frozen=True, eq=False)
class MaxPool(Stage):
    """Max pooling of a ``(y, x, c)`` stream. Windows that tile the image (kernel = stride):
    ``simd`` channels a beat folded into one output row of running maxima
    (:class:`~flexor_hw.gateware.pool.TiledMaxPool`), an input beat per cycle; with
    ``blocks``, the input in blocks of its windows' pixels, folded into one pixel's maxima
    (:class:`~flexor_hw.gateware.pool.BlockMaxPool`). Overlapping windows: a sliding window
    and a group maximum, ``kh·kw`` cycles per output element."""

    kind: ClassVar[str] = "maxpool"
    channels: int = 1
    height: int = 1
    width: int = 1
    kernel: tuple = (2, 2)
    stride: tuple = (2, 2)
    simd: int = 1
    lutram: bool = None         # a tiled pool's maxima in LUT RAM / block RAM / (None) by cost
    out_depth: int = 3          # a tiled pool's output FIFO, in beats
    blocks: bool = False        # tiled, its input in blocks of its windows' pixels (the
                                # producer's window emits them so: fold.fuse_pools)

    def row_buffered(self):
        """The pool with an output FIFO that holds an output row (and the three beats a
        pool's pipeline needs): the row's beats leave as fast as they come, and the
        consumer drains them while the next window row's first input rows arrive."""
        ow = self.output_size[1]
        return replace(self, out_depth=3 + ow * self.channels // self.simd)

    @property
    def tiled(self):
        return tuple(self.kernel) == tuple(self.stride)

    @property
    def in_simd(self):
        return self.simd

    @property
    def out_simd(self):
        return self.simd

    @property
    def in_length(self):
        return self.channels

    @property
    def out_length(self):
        return self.channels

    @property
    def output_size(self):
        (kh, kw), (sh, sw) = self.kernel, self.stride
        return (self.height - kh) // sh + 1, (self.width - kw) // sw + 1

    def at_rate(self, target):
        """The narrowest beat (a divisor of the channels) whose cycles meet ``target``; the
        widest if none does (overlapping windows: one element a beat)."""
        if not self.tiled:
            return self
        widths = [d for d in range(1, self.channels + 1) if self.channels % d == 0]
        fits = [d for d in widths if replace(self, simd=d).cycles_per_image() <= target]
        return replace(self, simd=fits[0] if fits else widths[-1])

    def cycles_per_image(self):
        """Tiled: an input beat per cycle. Overlapping: a window element per cycle (or an
        input beat, if more; measured)."""
        if self.tiled:
            return self.channels * self.height * self.width // self.simd
        oh, ow = self.output_size
        return max(oh * ow * self.channels * self.kernel[0] * self.kernel[1],
                   self.channels * self.height * self.width) + 1

    def memories(self):
        if self.blocks:
            return []
        if self.tiled:
            ow = self.output_size[1]
            mems = [_mem(self, "row maxima", ow * self.channels // self.simd,
                             self.simd * self.x_shape.width, style=self.ram_style)]
            if self.out_depth > 3:
                mems.append(_mem(self, "output FIFO", self.out_depth,
                                 self.simd * self.x_shape.width))
            return mems
        rows = line_buffer_rows(self.height, self.kernel[0], self.stride[0])
        return [_mem(self, "line buffer", rows * self.width * self.channels, self.x_shape.width)]

    def estimate(self):
        if self.blocks:
            # the ring of a pixel's running maxima, the output's register, per lane bit the
            # compare and the select
            c, lanes = COST["block_maxpool"], self.simd * self.x_shape.width
            return {"luts": round(c["luts"] + c["luts_per_bit"] * lanes),
                    "ffs": c["ffs"] + self.channels * self.x_shape.width + lanes,
                    "brams": 0, "dsps": 0}
        if not self.tiled:
            return super().estimate()
        c = COST["tiled_maxpool"]
        lanes = self.simd * self.x_shape.width
        maxima = self.memories()[0]
        pages = -(-maxima["depth"] // 16) if maxima["block_rams"] == 0 else 1
        est = {"luts": round(c["luts"] + c["luts_per_bit"] * lanes
                             + c["luts_per_page_bit"] * lanes * (pages - 1)),
               "ffs": round(c["ffs"] + c["ffs_per_bit"] * lanes), "brams": 0, "dsps": 0}
        return _with_memories(est, self.memories())

    @property
    def ram_style(self):
        return ram_style_attr(self.lutram)

    def describe(self):
        shape = {"channels": self.channels, "height": self.height, "width": self.width,
                 "kernel": list(self.kernel), "stride": list(self.stride), "simd": self.simd}
        if self.blocks:
            return {**shape, "input_in_blocks": True}
        return {**shape, "maxima_in_lut_ram": self.lutram,
                **({"output_fifo": self.out_depth} if self.out_depth > 3 else {})}

    def unit(self, files=None):
        from ..gateware.pool import BlockMaxPool, MaxPool as Unit, TiledMaxPool
        if self.blocks:
            return BlockMaxPool(self.x_shape, self.channels, tuple(self.kernel), simd=self.simd)
        if self.tiled:
            return TiledMaxPool(self.x_shape, self.channels, self.height, self.width,
                                tuple(self.kernel), simd=self.simd, ram_style=self.ram_style,
                                out_depth=self.out_depth, emit=files is not None)
        return Unit(self.x_shape, self.channels, self.height, self.width, self.kernel,
                    stride=self.stride)


@register
@dataclass(frozen=True, eq=False)
class GlobalAvgPool(Stage):
    """An accumulator per channel, requantized."""

    kind: ClassVar[str] = "gap"
    channels: int = 1
    pixels: int = 1
    consts: object = None
    lut_multipliers: bool = False   # the scale's product in logic, not a DSP

    def cycles_per_image(self):
        from ..gateware.pool import GlobalAvgPool as Unit
        return Unit.cycles(self.channels, self.pixels)

    @property
    def acc_width(self):
        """Bits of a channel's sum (the accumulators', the scale's operand)."""
        return self.x_shape.width + max(1, self.pixels - 1).bit_length() + 1

    def memories(self):
        # two banks (one image's sums given out while the next accumulates), read
        # asynchronously by the adder and by the output: LUT RAM, twice
        from ..gateware.pool import GlobalAvgPool as Unit
        return [_mem(self, "accumulators", Unit.accumulator_depth(self.channels),
                     self.acc_width, style="distributed", read_ports=2)]

    def estimate(self):
        est = super().estimate()
        if not self.lut_multipliers:
            return est
        return _const_products_in_logic(est, [(self.acc_width, self.consts.A)])

    def describe(self):
        return {"channels": self.channels, "pixels": self.pixels,
                "multipliers_in_logic": self.lut_multipliers}

    def unit(self, files=None):
        from ..gateware.pool import GlobalAvgPool as Unit
        k = self.consts
        return Unit(self.x_shape, self.y_shape, self.channels, self.pixels, k.A, k.frac_bits,
                    k.y_lo, k.y_hi, emit=files is not None, lut=self.lut_multipliers)


@register
@dataclass(frozen=True, eq=False)
class ResidualFork(Stage):
    """The fork of a residual block: every beat to the main path and into the skip path
    (option-A subsampling, the skip FIFO of ``depth`` places, zero channels), whose output
    ``skip`` the block's :class:`ResidualAdd` takes. ``depth`` is the FIFO sizing pass's."""

    kind: ClassVar[str] = "fork"
    channels: int = 1
    height: int = 1
    width: int = 1
    stride: int = 1
    pad_channels: tuple = (0, 0)
    depth: int = 2
    add: str = ""

    @property
    def in_length(self):
        return self.channels

    @property
    def out_length(self):
        return self.channels

    def cycles_per_image(self):
        return self.channels * self.height * self.width

    def latency(self):
        return 2            # the input's skid buffer, the fork

    def memories(self):
        from ..gateware.skip import ROOM_SLACK
        return [_mem(self, "skip fifo", self.depth + ROOM_SLACK, self.x_shape.width)]

    def estimate(self):
        # the input's skid buffer and the skip FIFO's output register beside the fork's
        # fixed cost
        est = super().estimate()
        xw = self.x_shape.width
        skid = skid_buffer_cost(xw)
        return dict(est, luts=est["luts"] + skid["luts"], ffs=est["ffs"] + skid["ffs"] + xw)

    def describe(self):
        return {"skip_fifo_depth": self.depth, "skip_fifo_bank_words": self.bank_words,
                "stride": self.stride,
                "pad_channels": list(self.pad_channels), "add": self.add}

    def unit(self, files=None):
        from ..gateware.skip import ResidualFork as Unit
        return Unit(self.x_shape, self.channels, self.height, self.width, self.stride,
                    self.pad_channels, self.depth, bank_words=self.bank_words)

    @property
    def bank_words(self):
        """On the ECP5, a skip FIFO deeper than a block RAM in its configuration is cut into
        banks of one block each (:class:`~flexor_hw.gateware.skip.SkipFifo`), so that each
        block's word leaves through its output register."""
        from ..gateware.skip import ROOM_SLACK
        from .cost import ram_style, stack_words
        places, xw = self.depth + ROOM_SLACK, self.x_shape.width
        if self.family != "ecp5" or ram_style(places, xw) != "block":
            return None
        return stack_words(places, xw)


@register
@dataclass(frozen=True, eq=False)
class ResidualAdd(Stage):
    """``A_a·a + A_b·b`` requantized; ``b`` is the skip path of the fork ``fork``."""

    kind: ClassVar[str] = "add"
    skip_range: tuple = (0, 0)
    consts: object = None
    channels: int = 1
    height: int = 1                # output rows
    skip_beats: int = 1            # beats of the block input per image (kept or not)
    fork: str = ""
    lut_multipliers: bool = False  # the two products in logic, not DSPs

    @property
    def in_length(self):
        return self.channels

    @property
    def out_length(self):
        return self.channels

    def cycles_per_image(self):
        return self.skip_beats

    def latency(self):
        from ..gateware.add import ResidualAdd
        return ResidualAdd.STAGES + 1           # the registered stages and the FIFO's head

    def estimate(self):
        # the products' and their sum's registers in the fabric (after the multipliers)
        # beside the fixed cost
        from amaranth.hdl import Const, Signal
        est = super().estimate()
        k = self.consts
        pa = Signal(self.x_shape) * Const(k.A_a)
        pb = Signal(int_shape(*self.skip_range)) * Const(k.A_b)
        products = pa.shape().width + pb.shape().width + (pa + pb).shape().width   # and sum
        est = dict(est, ffs=est["ffs"] + products)
        if not self.lut_multipliers:
            return est
        return _const_products_in_logic(est, [(self.x_shape.width, k.A_a),
                                              (int_shape(*self.skip_range).width, k.A_b)])

    def describe(self):
        return {"fork": self.fork, "multipliers_in_logic": self.lut_multipliers}

    def unit(self, files=None):
        from ..gateware.add import ResidualAdd as Unit
        k = self.consts
        return Unit(self.x_shape, int_shape(*self.skip_range), self.y_shape, k.A_a, k.A_b,
                    k.frac_bits, k.y_lo, k.y_hi, emit=files is not None,
                    lut=self.lut_multipliers)


@register
@dataclass(frozen=True, eq=False)
class Repack(Stage):
    """Stream width conversion between stages that fold differently (FINN's DWC)."""

    kind: ClassVar[str] = "repack"
    length: int = 1
    n_in: int = 1
    n_out: int = 1
    vectors: int = 1
    span: int = None        # cycles from a vector's first input beat to its last, when the
                            # producer sends them faster than a narrowing repack drains them

    @property
    def in_simd(self):
        return self.n_in

    @property
    def out_simd(self):
        return self.n_out

    @property
    def in_length(self):
        return self.length

    @property
    def out_length(self):
        return self.length

    def cycles_per_image(self):
        return self.vectors * max(-(-self.length // self.n_in), -(-self.length // self.n_out))

    def latency(self):
        """Widening: the word leaves from its register the cycle after it closes; narrowing:
        the last input beat's chunks leave one per cycle after it is held (measured)."""
        if self.n_out >= self.n_in:
            return 2
        tail = self.length - (-(-self.length // self.n_in) - 1) * self.n_in
        base = 1 + -(-tail // self.n_out)
        if self.span is None:
            return base
        # The input arrives in ``span`` cycles; its ``⌈length/n_out⌉`` output beats take one
        # cycle each from the first one held: a backlog the last input beat waits behind.
        return max(base, -(-self.length // self.n_out) - self.span + 1)

    def estimate(self):
        c = COST[self.kind]
        w = self.x_shape.width
        bits = max(self.n_in, self.n_out) * w
        muxed = bits
        if self.n_out > self.n_in:
            # Widening: the beats shift into the word, every bit to one place; a multiplexer
            # a bit only where a vector's last word closes early (aligned to the bottom) or
            # its last beat runs past its end (:func:`~flexor_hw.gateware.repack.shift_in`)
            beats = -(-self.length // self.n_in)
            early = (beats - 1) % (self.n_out // self.n_in) < self.n_out // self.n_in - 1
            short = self.length - (beats - 1) * self.n_in < self.n_in
            muxed = bits * early + self.n_in * w * short
        # a widening word in pieces (not on the iCE40): each piece's copies of the control
        # registers (ready, last, full, valid)
        pieces = -(-bits // REPACK_PIECE_BITS) \
            if self.n_out > self.n_in and self.family != "ice40" else 0
        return {"luts": round(c["luts"] + c["luts_per_bit"] * muxed
                              + c["luts_per_shifted_bit"] * (bits - muxed)),
                "ffs": round(c["ffs"] + c["ffs_per_bit"] * bits + 4 * pieces * (pieces > 1)),
                "brams": 0, "dsps": 0}

    def describe(self):
        return {"length": self.length, "n_in": self.n_in, "n_out": self.n_out}

    def unit(self, files=None):
        from ..gateware.repack import Repack as Unit
        # on the iCE40 the word's enable stays one (the digits MLP's repacks are 80 bits, and
        # its copies took the fc1 FIFO's handshake to 48.8 MHz on the UP5K)
        return Unit(self.x_shape, self.length, self.n_in, self.n_out,
                    pieces=self.family != "ice40", emit=files is not None)


@register
@dataclass(frozen=True, eq=False)
class Argmax(Stage):
    """The class index of each output vector."""

    kind: ClassVar[str] = "argmax"
    n: int = 2

    @property
    def in_length(self):
        return self.n

    def cycles_per_image(self):
        from ..gateware.argmax import Argmax as Unit
        return Unit.vector_cycles(self.n)

    def latency(self):
        from ..gateware.argmax import Argmax as Unit
        return Unit.latency

    def unit(self, files=None):
        from ..gateware.argmax import Argmax as Unit
        return Unit(self.n, self.x_shape)
