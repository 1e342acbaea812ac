"""Resource estimates of the hardware graph's stages on the ECP5 (LUT4, a CCU2C carry cell or
a TRELLIS_DPR16X4 LUT-RAM cell counted as 2, as ``flexor-hw synth`` counts them; TRELLIS_FF;
DP16KD block RAMs of 18 Kbit; MULT18X18D).

The coefficients come from Yosys ``synth_ecp5`` runs of the units (``flexor-hw synth`` per
module rows); ``benchmarks/bench_fold.py`` sets estimates beside placed results and prints the
error. Memories: a DP16KD configuration per memory (16384×1 … 512×36), none for ROMs the build
asks to be logic (:data:`~flexor_hw.gateware.rom.LOGIC_ROM_BITS`) and for RAMs of at most
2 Kbit, which Yosys puts in LUT RAM (TRELLIS_DPR16X4: 64 bits in the six LUT4 places of the
three slices it takes) or flip-flops.
"""

import math

from ..gateware.rom import DP16KD_CONFIGS, LOGIC_ROM_BITS, rom_layout

__all__ = ["COST", "DP16KD_CONFIGS", "SB_RAM40_CONFIGS", "dp16kd_blocks", "memory", "ram_style",
           "rom_blocks", "stack_words"]

COST = {
    # Fitted to Yosys synth_ecp5 of LeNet-5's four units at PE×SIMD 1×25, 4×100, 2×32 and
    # 1×10 (benchmarks/lenet5_ecp5_85k.md, per module): within 12 % in FFs, 20 % in LUTs.
    "mvau": {
        "luts": 220, "ffs": 250,                # sequencer, credits, weight queue control
        "luts_per_lane": 13.6,                  # a row's adder tree, per lane
        "luts_per_column": 6.4,                 # the Σx tree shared by the rows
        "ffs_per_lane_bit": 1.45,               # masked activation and the tree's registers
        "ffs_per_column_bit": 1.5,              # the Σx tree's registers
        "luts_per_select_bit": 1.0,             # a row's SIMD bits among its offsets, per level
        "luts_per_row_bit": 4.0,                # accumulate, totals, 2T − Σx, the bank's shift
        # 2T − Σx's subtractor, per bit: none where the rows accumulate it from −Σx
        # (:attr:`~flexor_hw.gateware.mvau.MvauParams.x_sum_written`)
        "luts_per_difference_bit": 1.0,
        "ffs_per_row_bit": 3.0,
        # behind a banked ROM only (where the weight stream stalls its ROM, no queue:
        # :func:`~flexor_hw.hw.stages.stream_word_ffs`)
        "luts_per_word_bit": 1.0,               # the weight queue's head mux
        "ffs_per_word_bit": 6.0,                # ROM output registers and the queue
        "luts_per_requantizer": 90, "ffs_per_requantizer": 110,
        # input-stationary (:attr:`~flexor_hw.gateware.mvau.MvauParams.stationary`): the
        # finished groups' counters and the serializer's read, beside the buffer's LUT RAM
        "luts_stationary": 30,
        # a requantizer's product in logic, per bit of a_width × s_width beyond its DSPs'
        # (synth_ecp5 of the requantizer alone: 15 × 21 bits +687 LUT4 / +473 FF, 13 × 31
        # +842 / +463, 8 × 27 +401 / +242, two planes of 13 × 19 +1,093 / +656)
        "luts_per_product_bit": 2.1, "ffs_per_product_bit": 1.3,
    },
    # the counters, the flow control's flags (compares a cycle behind the counters), the rows'
    # slots, the read addresses' registers, the output FIFO. Synthesized alone (synth_ecp5,
    # CCU2C as two LUT4, LUT RAM as six; benchmarks/bench_window_synth.py): ResNet-32's
    # element window of 64 channels 454 LUT4 / 235 FF (estimated 480 / 249), its row windows
    # of 16 channels 622 / 384 (710 / 405).
    "window": {"luts": 470, "ffs": 200},
    "row_window": {"luts": 700, "ffs": 300},     # kw banks, the rotation, the output slice
    # kh × kw banks: beside the row window's, per bank its read address and write enable;
    # per element bit the rotations (a kh-way and a kw-way select, registered between) and
    # their registers. Synthesized alone: LeNet-5's conv2 window (5 × 5 × 8 bits, 32
    # channels) 3,116 LUT4 and 1,710 FF, a 3 × 3 one of 16 channels 1,260 and 807
    "kernel_window": {"luts": 700, "ffs": 300, "luts_per_bank": 10, "ffs_per_bank": 12,
                      "luts_per_select_bit": 1.1, "ffs_per_element_bit": 2.0},
    # a group window (a row window over words of g channels, a packer before it, a gather
    # after): beside its parts' estimates, per bit of the kernel row it reads (kw·g·w) the
    # rotation of the wide words, their output FIFO and the gather's enables. Synthesized
    # alone, LeNet-5's conv2 window in groups of 2 and 4 (80 and 160 bits): 1,193 and 1,813
    # LUT4, 1,675 and 3,028 FF (estimated 1,260 and 1,797, 1,704 and 3,023)
    "group_window": {"luts_per_row_bit": 6, "ffs_per_row_bit": 3.75},
    # either window's output register and its input's registered ready
    "window_io": {"ffs": 3, "ffs_per_out_bit": 1},
    # a window's output pixels in blocks: the place in the block, the pixel's first row and
    # its slot, a row window's block's first column
    "window_block": {"luts": 40, "ffs": 30},
    "maxpool": {"luts": 200, "ffs": 140},
    # counters, the forward compares; per lane bit: compare, select among the read word and
    # three forwarded ones, the stages' and forwarded words' registers and the three-entry
    # FIFO. Fitted to LeNet-5's pools synthesized (flexor-hw synth per module rows,
    # benchmarks/lenet5_*.md) with their maxima in block RAM: 8 lane bits 162–173 LUT4,
    # 16 233–242, 32 374–457, 64 599–682. Maxima in LUT RAM deeper than a cell add the read
    # multiplexer across its pages, about a LUT4 per bit and page (448 × 8 bits: 715–737
    # LUT4 the pool, estimated 720).
    "tiled_maxpool": {"luts": 100, "ffs": 60, "luts_per_bit": 8.5, "ffs_per_bit": 11.0,
                      "luts_per_page_bit": 1.0},
    # its input in blocks of its windows' pixels: the counters; per lane bit the compare
    # and the select into the ring of running maxima (flip-flops: the ring, a channel's
    # bits each, and the output's register, counted by the stage). Synthesized alone
    # (LeNet-5's pools, 32 and 64 channels of 8 bits a beat at a time): 32 LUT4 and 272 and
    # 529 FF, estimated 36 and 274 and 530
    "block_maxpool": {"luts": 20, "ffs": 10, "luts_per_bit": 2.0},
    # counters, the read-modify-write adder, the clamp (64 channels × 64 pixels: 178 LUT4
    # and 57 FF beside the accumulators' LUT RAM; the product with A in a MULT18X18D)
    "gap": {"luts": 180, "ffs": 60, "dsps": 1},
    "fork": {"luts": 120, "ffs": 90},
    # registered operands, products and sum, the output FIFO (LUT RAM) and its credits; the
    # two products on MULT18X18D holding their operands' and product's registers (Yosys, a
    # 4-channel add: 165 LUT4, 55 FF, 2 DSP; with the registers in the fabric, ResNet-20's
    # adds took 192 LUT4 and 138 FF). The products' second registers, in the fabric, are
    # counted by the stage (ResidualAdd.estimate).
    "add": {"luts": 150, "ffs": 70, "dsps": 2},
    "argmax": {"luts": 35, "ffs": 60},
    "quantizer": {"luts": 20, "ffs": 20, "luts_per_threshold": 0.5},
    # a multiplexer a bit where chunks are chosen or a word aligned; a widening one's word
    # otherwise shifts, its enables per piece (synthesized alone: LeNet-5's 5 → 40 of 8 bits
    # 47 LUT4, the digits MLP's 1 → 16 of 5 bits 32; its 1 → 10, aligned, 91)
    "repack": {"luts": 10, "ffs": 10, "luts_per_bit": 1.0, "luts_per_shifted_bit": 0.1,
               "ffs_per_bit": 2.0},
}


#: LUT4 places of a 16 × 4-bit LUT-RAM cell (TRELLIS_DPR16X4): its two slices and the slice
#: that writes it (see flexor_hw.synth.DPR16X4_LUTS).
LUTRAM_LUTS = 6


def dp16kd_blocks(depth, width):
    """Fewest DP16KD blocks holding ``depth × width`` bits in one configuration."""
    return _one_configuration(depth, width)[0]


def _one_configuration(depth, width):
    """``(blocks, blocks stacked in depth, words of a block)`` of the configuration taking
    the fewest blocks (the shallowest stack among equals)."""
    return min((math.ceil(depth / d) * math.ceil(width / w), math.ceil(depth / d), d)
               for d, w in DP16KD_CONFIGS)


def stack_words(depth, width):
    """The words of one block in the configuration :func:`dp16kd_blocks` counts, where that
    configuration stacks blocks in depth (None where one block deep holds the memory): a
    memory cut into banks of that many words takes the same blocks."""
    _, stacked, words = _one_configuration(depth, width)
    return words if stacked > 1 else None


def ram_style(depth, width, style=None):
    """``"block"`` or ``"distributed"`` (LUT RAM): where a RAM goes, as the Verilog asks
    (``style``) or else as Yosys puts it (below)."""
    if style is not None:
        return style
    return "distributed" if depth <= 16 or depth * width <= SMALL_RAM_BITS else "block"


def memory(kind, depth, width, *, rom=False, logic=False, block=False, style=None,
           family="ecp5", read_ports=1):
    """``{kind, depth, width, bits, block_rams, luts, ffs}`` of one memory: a ROM in block
    RAM, or logic with ``logic`` or when small (``block``: block RAM however small); a RAM
    in block RAM or LUT RAM as the Verilog asks (``style``: ``"block"`` or
    ``"distributed"``; ``logic``: LUT RAM), else where Yosys puts it. LUT RAM has one read port: each further one is a copy (``read_ports``).
    On the iCE40 (``family="ice40"``) block RAMs are SB_RAM40_4K and every RAM
    goes to them (there is no LUT RAM)."""
    bits, ffs = depth * width, 0
    small = bits <= LOGIC_ROM_BITS and not block
    if family == "ice40" and not (rom and (logic or small)):
        # the fewest SB_RAM40_4K of one configuration (the placed digits MLP: its units'
        # 14 × 80 and 26 × 80 vector memories took 5 blocks each)
        blocks = min(math.ceil(depth / d) * math.ceil(width / w) for d, w in SB_RAM40_CONFIGS)
        return {"kind": kind, "depth": depth, "width": width, "bits": bits,
                "block_rams": blocks, "luts": 0, "ffs": 0}
    if rom:
        in_bram = not (logic or small)
        if in_bram:     # banks side by side: their row registered, then the bank chosen
            banks, _, blocks = rom_layout(depth, width)
            luts = ROM_MUX_LUTS * width * (banks - 1)
            ffs = (banks + 2) * width if banks > 1 else 0   # the row, a third cycle, a slot
        else:
            luts = LOGIC_ROM_LUTS * math.ceil(depth / 16) * width
    else:
        # Left to itself, Yosys puts a RAM of up to 16 words in LUT RAM (TRELLIS_DPR16X4:
        # 16 × 4 bits, six LUT4 places), however wide, and one of more than 16 Kbit in block
        # RAM (an 80 × 640-bit vector memory took 18 DP16KD), by the costs of its memory
        # library (128 a DP16KD, 4 a DPR16X4 cell; a 24 × 96 memory went to LUT RAM). Between
        # the two the costs are close, and the Verilog of a vector memory says which.
        in_bram = ram_style(depth, width, "distributed" if logic else style) == "block"
        if in_bram:
            # blocks stacked in depth are read through a mux per bit (49 blocks deep in
            # 512 × 36: 1,127 LUT4)
            blocks, stacked, _ = _one_configuration(depth, width)
            luts = CASCADE_LUTS_PER_MUX * width * (stacked - 1)
        else:
            luts = LUTRAM_LUTS * math.ceil(width / 4) * math.ceil(depth / 16) * read_ports
    return {"kind": kind, "depth": depth, "width": width, "bits": bits,
            "block_rams": blocks if in_bram else 0, "luts": round(luts), "ffs": ffs}


SMALL_RAM_BITS = 2048
CASCADE_LUTS_PER_MUX = 0.75

#: LUT4 per bit and bank beyond the first of a banked ROM in block RAM: the choice of the bank
#: (40192 × 16 bits, 20 banks: 416 LUT4 and 80 L6MUX21; Yosys's own read mux across the same
#: blocks took as many).
ROM_MUX_LUTS = 1.4


def rom_blocks(depth, width):
    """DP16KD blocks of a ROM in block RAM, laid out by :func:`~flexor_hw.gateware.rom.
    rom_layout`: banks side by side fill every bit of the blocks, parity bits included
    (40192 × 16 bits: 36 blocks, 40 in any one configuration; 10000 × 16: 9; 3000 × 24: 4;
    Yosys 0.70 ``synth_ecp5`` maps a deep ROM to the same count by itself)."""
    return rom_layout(depth, width)[2]

#: LUT4 per 16 words of a bit of a ROM in logic, address decoding included (LeNet-5's conv2
#: weights, 128 × 320 bits: 3,572 LUT4; fc2's, 520 × 8: 431).
LOGIC_ROM_LUTS = 1.5


#: The iCE40's block RAM (SB_RAM40_4K, 4 Kbit) configurations, words × bits.
SB_RAM40_CONFIGS = [(256, 16), (512, 8), (1024, 4), (2048, 2)]
