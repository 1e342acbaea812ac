"""Read-only memories: inline-initialized for simulation, ``$readmemh`` for emitted Verilog."""

import re

from amaranth.hdl import ClockSignal, Instance, Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

__all__ = ["Rom", "ROM_VERILOG", "rom_modules", "rom_layout", "rom_group_bits", "bank_rows",
           "LOGIC_ROM_BITS", "DP16KD_CONFIGS", "rom_address_copies", "flat_group_bits",
           "rom_read_latency", "rom_banked"]

# ROMs of a network up to this many bits are logic, not block RAM: a few hundred constants (or
# a first conv's 640 weight bits) would each take a whole 18 Kbit block RAM, and block RAM is
# what a FleXOR network's weights need. (4096 bits: a quarter of one.)
LOGIC_ROM_BITS = 4096

#: The ECP5 block RAM's (DP16KD, 18 Kbit) configurations, words × bits: a ninth, 18th or 36th
#: bit of a word is a parity bit, as good as any other in a ROM.
DP16KD_CONFIGS = [(16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)]


def rom_layout(depth, width):
    """``(banks, bank_addr, blocks)``: how a block RAM ROM of ``depth`` words × ``width``
    bits is laid out. A ROM deeper than the block configuration that holds it in the fewest
    DP16KD is cut into ``banks`` of ``2**bank_addr`` words laid side by side, one row of
    ``banks × width`` bits per address: its bits fill every bit of those blocks, parity bits
    included (40192 × 16 bits: 20 banks of 2048 words in 36 blocks of 2048 × 9, where one word
    per row takes 40). The row goes into a register behind the blocks and the bank is chosen
    after it (:class:`Rom`), so nothing but wiring follows a block's 5.6 ns clock-to-data.
    Yosys lays out a deep ROM the same way by itself, with the choice of the bank right behind
    the blocks (1 bank: the ROM is one configuration's depth or less)."""
    best = None
    for d, w in DP16KD_CONFIGS:
        banks = -(-depth // d)
        blocks = -(-(banks * width) // w)
        key = (blocks, banks)
        if best is None or key < best[0]:
            best = (key, d)
    (blocks, banks), d = best
    return banks, (d - 1).bit_length() if banks > 1 else None, blocks


#: Block RAMs of a banked ROM read from one copy of the address register (a group).
ADDRESS_FANOUT_BLOCKS = 9

#: Bits of a logic ROM's word (latency 3, not paged) decoded from one copy of the address.
ADDRESS_COPY_BITS = 18


def rom_address_copies(width):
    """Copies of the address a logic ROM of latency 3 that is not paged registers first:
    one per :data:`ADDRESS_COPY_BITS` bits of its word."""
    return -(-width // ADDRESS_COPY_BITS)


def _group_columns(blocks, block_width):
    """Columns read from one copy of the address: at most :data:`ADDRESS_FANOUT_BLOCKS`
    blocks, the groups as even as whole blocks allow."""
    groups = -(-blocks // ADDRESS_FANOUT_BLOCKS)
    return block_width * -(-blocks // groups)


def rom_group_bits(depth, width):
    """Columns of a banked ROM's row (:func:`rom_layout`) read from one address register
    (:func:`_group_columns`: 40192 × 16 bits, 36 blocks of 2048 × 9, four groups of 81
    columns)."""
    _, bank_addr, blocks = rom_layout(depth, width)
    return _group_columns(blocks, dict(DP16KD_CONFIGS)[1 << bank_addr])


def flat_group_bits(depth, width):
    """Columns of a block RAM ROM that is not banked (:func:`rom_layout`) read from one copy
    of the address, where it spans more than :data:`ADDRESS_FANOUT_BLOCKS` blocks
    (:func:`_group_columns`: LeNet-5's conv2 on the ECP5-45k, 64 × 640 bits in 18 blocks of
    512 × 36, two groups of 324 columns); else None. One address register drove all 18
    across the device: 12.9 ns of routing, the longest path placed."""
    banks, _, blocks = rom_layout(depth, width)
    if banks > 1 or blocks <= ADDRESS_FANOUT_BLOCKS:
        return None
    return _group_columns(blocks, max(w for d, w in DP16KD_CONFIGS if d >= depth))


#: Cycles from address to data of a banked ROM in block RAM: the groups' address copies,
#: the blocks, the rows' registers, the choice within sets of banks and among the sets.
BANKED_LATENCY = 5


def rom_banked(depth, width, latency, logic=False):
    """Whether a :class:`Rom` of ``depth × width`` asked for ``latency`` is banked: in block
    RAM, registered, and deeper than the configuration that holds it in the fewest blocks
    (:func:`rom_layout`)."""
    return latency >= 2 and not logic and rom_layout(depth, width)[0] > 1


def rom_read_latency(depth, width, latency, logic=False):
    """Cycles from address to data of a :class:`Rom` of ``depth × width`` asked for
    ``latency``: :data:`BANKED_LATENCY` where it is banked in block RAM."""
    return BANKED_LATENCY if rom_banked(depth, width, latency, logic) else latency


def bank_rows(words, width, banks, rows):
    """The ``rows`` rows of a banked ROM (:func:`rom_layout`: ``2**bank_addr``) as an array
    of little-endian bytes, ``banks × width`` bits a row, from ``words``, an array of
    little-endian word bytes (``depth × ceil(width / 8)``)."""
    import numpy as np
    bits = np.unpackbits(np.asarray(words, np.uint8), axis=1, bitorder="little")[:, :width]
    full = np.zeros((banks * rows, width), np.uint8)
    full[:len(bits)] = bits
    wide = full.reshape(banks, rows, width).transpose(1, 0, 2).reshape(rows, banks * width)
    return np.packbits(wide, axis=1, bitorder="little")


# The module that emitted designs instantiate for every ROM. FPGA tools map a synchronous-read
# array initialized by $readmemh to block RAM; Amaranth's inline init would not scale
# (TOOLCHAIN.md: a 16384 × 640-bit ROM took 87 s and 1.4 GB to emit).
_ROM_MODULE = """\
{comment}
module {name} #(
    parameter WIDTH = 8,
    parameter DEPTH = 1,
    parameter ADDR_WIDTH = 1,
    parameter INIT_FILE = "",
    parameter LATENCY = 1,
    parameter BANKS = 1,
    parameter BANK_ADDR = ADDR_WIDTH,
    parameter GROUP_BITS = 1,
    parameter PAGE_BITS = ADDR_WIDTH,
    parameter COPY_BITS = 0,
    parameter STALL = 0
) (
    input wire clk,
    input wire [ADDR_WIDTH-1:0] addr,
    input wire en,
    output reg [WIDTH-1:0] data
);
    // With STALL, every register of the read (not banked) loads only while en is high: the
    // read holds its word and the words behind it (a block RAM's clock enables).
    wire go = STALL ? en : 1'b1;
    generate if (BANKS > 1) begin : banked
        // BANKS words side by side in a row of 2**BANK_ADDR rows: the file holds the rows;
        // word a is bank a >> BANK_ADDR of row a mod 2**BANK_ADDR. The row is read in groups
        // of GROUP_BITS columns (the blocks of a few block RAMs), each from a register of
        // the address of its own: one address register drove every block of the ROM (36 on
        // LeNet-5's fc1, across the device: 10.5 ns of routing). Each group's memory holds
        // the whole file and reads its columns (Yosys keeps the bits that are read), into a
        // register behind the blocks (their output register: no logic after a block RAM's
        // 5.6 ns clock-to-data). The bank is chosen in two registered steps: within sets of
        // banks beside their blocks (each set's choice from a register of its own), then
        // among the sets (one 20-way choice across the device's block RAMs, its select from
        // one register, was the next longest path: 6.8 ns of routing).
        localparam ROW = BANKS * WIDTH;
        localparam GROUPS = (ROW + GROUP_BITS - 1) / GROUP_BITS;
        // banks per set: a power of two (the bank number's low bits choose within a set,
        // its high bits the set), at most a group's share
        localparam SHARE = (BANKS + GROUPS - 1) / GROUPS;
        localparam SET_BITS = $clog2(SHARE + 1) - 1;
        localparam SET = 1 << SET_BITS;
        localparam SETS = (BANKS + SET - 1) / SET;
        localparam BW = ADDR_WIDTH - BANK_ADDR;
        wire [SETS*SET*WIDTH-1:0] row;
        reg [SETS*WIDTH-1:0] picked;
        reg [BW-1:0] bank_a, bank_b, which, which_q;
        genvar g, s;
        for (g = 0; g < GROUPS; g = g + 1) begin : group
            localparam LO = g * GROUP_BITS;
            localparam HI = LO + GROUP_BITS < ROW ? LO + GROUP_BITS : ROW;
            (* rom_style = "{style}" *) reg [ROW-1:0] mem [0:(1<<BANK_ADDR)-1];
            initial $readmemh(INIT_FILE, mem);
            reg [BANK_ADDR-1:0] a;
            reg [HI-LO-1:0] part, part_q;
            (* keep *) always @(posedge clk) a <= addr[BANK_ADDR-1:0];
            always @(posedge clk) begin
                part <= mem[a][HI-1:LO];
                part_q <= part;
            end
            assign row[HI-1:LO] = part_q;
        end
        if (SETS * SET > BANKS) begin : pad
            assign row[SETS*SET*WIDTH-1:ROW] = 0;
        end
        for (s = 0; s < SETS; s = s + 1) begin : set
            reg [BW-1:0] sel = 0;
            if (SET_BITS > 0) begin : choose
                (* keep *) always @(posedge clk) sel <= bank_b[SET_BITS-1:0];
            end
            always @(posedge clk)
                picked[s*WIDTH +: WIDTH] <= row[(s*SET + sel)*WIDTH +: WIDTH];
        end
        always @(posedge clk) begin
            bank_a <= addr[ADDR_WIDTH-1:BANK_ADDR];
            bank_b <= bank_a;
            which <= bank_b >> SET_BITS;
            which_q <= which;
            data <= picked[which_q*WIDTH +: WIDTH];
        end
    end else if (LATENCY == 3 && GROUP_BITS > 1) begin : grouped
        // A wide ROM in block RAM read in groups of GROUP_BITS columns (a few block RAMs
        // each), each group's memory (the whole file; Yosys keeps the bits read) read from a
        // copy of the address of its own, then the word into a register.
        localparam GROUPS = (WIDTH + GROUP_BITS - 1) / GROUP_BITS;
        wire [WIDTH-1:0] word;
        genvar g;
        for (g = 0; g < GROUPS; g = g + 1) begin : group
            localparam LO = g * GROUP_BITS;
            localparam HI = LO + GROUP_BITS < WIDTH ? LO + GROUP_BITS : WIDTH;
            (* rom_style = "{style}" *) reg [WIDTH-1:0] mem [0:DEPTH-1];
            initial $readmemh(INIT_FILE, mem);
            reg [ADDR_WIDTH-1:0] a;
            reg [HI-LO-1:0] part;
            (* keep *) always @(posedge clk) if (go) a <= addr;
            always @(posedge clk) if (go) part <= mem[a][HI-1:LO];
            assign word[HI-1:LO] = part;
        end
        always @(posedge clk) if (go) data <= word;
    end else begin : flat
        (* rom_style = "{style}" *) reg [WIDTH-1:0] mem [0:DEPTH-1];
        if (INIT_FILE != "") begin : init
            initial $readmemh(INIT_FILE, mem);
        end
        if (LATENCY >= 2 && PAGE_BITS < ADDR_WIDTH) begin : paged
            // Pages of 2**PAGE_BITS words each read at the address's low bits into a register
            // (one LUT4 a bit when a page is 16 words), then the page chosen: the decode of a
            // deep ROM in logic is cut in two cycles instead of one. With LATENCY 3 the
            // address is registered first, in a copy per page (kept apart: one input's low
            // bits reached every page's decode, the placed ResNet-32's conv1 ROM, 11.8 ns).
            localparam PAGES = (DEPTH + (1 << PAGE_BITS) - 1) >> PAGE_BITS;
            wire [PAGES*WIDTH-1:0] pages;
            reg [ADDR_WIDTH-PAGE_BITS-1:0] page_a, page;
            genvar p;
            for (p = 0; p < PAGES; p = p + 1) begin : page_read
                reg [WIDTH-1:0] word;
                if (LATENCY == 3) begin : addr_copy
                    reg [PAGE_BITS-1:0] a;
                    (* keep *) always @(posedge clk) if (go) a <= addr[PAGE_BITS-1:0];
                    always @(posedge clk) if (go) word <= mem[(p << PAGE_BITS) | a];
                end else begin : direct
                    always @(posedge clk)
                        if (go) word <= mem[(p << PAGE_BITS) | addr[PAGE_BITS-1:0]];
                end
                assign pages[p*WIDTH +: WIDTH] = word;
            end
            always @(posedge clk) if (go) begin
                page_a <= addr[ADDR_WIDTH-1:PAGE_BITS];
                page <= LATENCY == 3 ? page_a : addr[ADDR_WIDTH-1:PAGE_BITS];
                data <= pages[page*WIDTH +: WIDTH];
            end
        end else if (LATENCY == 3 && COPY_BITS > 0) begin : addr_copies
            // The address registered first, in a copy per COPY_BITS bits of the word, each
            // read from its own copy (kept apart: one register's fan-out to every bit's decode
            // was the placed ResNet-20's longest path, its first conv's 48 x 72-bit ROM,
            // 10.6 ns of which 8.0 routing), then the word, then data.
            localparam COPIES = (WIDTH + COPY_BITS - 1) / COPY_BITS;
            wire [WIDTH-1:0] word;
            genvar c;
            for (c = 0; c < COPIES; c = c + 1) begin : copy
                localparam LO = c * COPY_BITS;
                localparam HI = LO + COPY_BITS < WIDTH ? LO + COPY_BITS : WIDTH;
                reg [ADDR_WIDTH-1:0] a;
                reg [HI-LO-1:0] part;
                (* keep *) always @(posedge clk) if (go) a <= addr;
                always @(posedge clk) if (go) part <= mem[a][HI-1:LO];
                assign word[HI-1:LO] = part;
            end
            always @(posedge clk) if (go) data <= word;
        end else if (LATENCY == 3) begin : outreg2
            reg [WIDTH-1:0] word, word_q;
            always @(posedge clk) if (go) begin
                word <= mem[addr];
                word_q <= word;
                data <= word_q;
            end
        end else if (LATENCY == 2) begin : outreg
            reg [WIDTH-1:0] word;
            always @(posedge clk) if (go) begin
                word <= mem[addr];
                data <= word;
            end
        end else begin : direct
            always @(posedge clk) if (go) data <= mem[addr];
        end
    end endgenerate
endmodule
"""

ROM_VERILOG = _ROM_MODULE.format(
    name="flexor_rom", style="block",
    comment="// flexor_rom: synchronous-read ROM initialized from a $readmemh file (one word per "
            "line),\n// asked to be block RAM (a LUT-mapped ROM puts its decoder on the address "
            "path).")

ROM_LOGIC_VERILOG = _ROM_MODULE.format(
    name="flexor_rom_logic", style="logic",
    comment="// flexor_rom_logic: the same, asked to be logic (LUTs): for ROMs far smaller than "
            "a block RAM.")


def rom_modules(verilog):
    """The ROM modules an emitted design instantiates, as Verilog text (only those: an unused
    module would be a second top for the tools)."""
    return "\n".join(text for name, text in (("flexor_rom", ROM_VERILOG),
                                             ("flexor_rom_logic", ROM_LOGIC_VERILOG))
                     if re.search(rf"^\s*{name} #\(", verilog, re.MULTILINE))


class Rom(wiring.Component):
    """Synchronous-read ROM: ``data`` shows ``mem[addr]`` :attr:`latency` clocks after
    ``addr``: one, or with ``latency=2`` two (the read data goes through a register, a block
    RAM's output register), or with ``latency=3`` three (two registers). A block RAM ROM
    asked for 2 or more and deeper than one block configuration takes five: its address is
    registered in a copy per group of blocks (:func:`rom_group_bits`), its banks' row
    is registered behind the blocks, then the bank chosen in two steps (:func:`rom_layout`).

    Parameters
    ----------
    width : int
        Bits per word.
    words : list of int, optional
        Contents. Given for simulation: an Amaranth memory holds them.
    depth : int, optional
        Words; taken from ``words`` when given.
    init_file : str, optional
        Name of a ``$readmemh`` file. When given, the ROM is an instance of ``flexor_rom``
        (:data:`ROM_VERILOG`), for emission; Amaranth's simulator cannot run it. A banked
        ROM's file holds its rows (:attr:`file_shape`, :func:`bank_rows`).
    logic : bool
        With ``init_file``: ask for logic (``flexor_rom_logic``) instead of block RAM. A ROM
        of a few hundred bits would otherwise take a whole block RAM. A logic ROM is never
        banked (in simulation too, so both take the same cycles).
    latency : int
        1, 2 or 3: the cycles asked from ``addr`` to ``data``. An ECP5 block RAM's data comes out
        5.6 ns after the clock; a register right behind it leaves the next cycle to the logic.
    page_words : int, optional
        A logic ROM of latency 2 or 3 deeper than this reads pages of ``page_words`` words (a
        power of two) at the address's low bits into registers, then chooses the page: its
        decode takes two cycles, not one (the iCE40: a 16-word page is one LUT4 a bit). At
        latency 3 the address is registered first, in a copy per page, so its fan-out to
        every page's decode starts at a register of the page's own. A logic ROM of latency
        3 that is not paged registers its address first too, in a copy per
        :data:`ADDRESS_COPY_BITS` bits of the word (:func:`rom_address_copies`).
    stall : bool
        An input ``en``: every register of the read loads only while it is high, so a low
        ``en`` holds the word on ``data`` and those behind it (in block RAM: the blocks' clock
        enables, and their output registers' where the word's register moves into them,
        :mod:`flexor_hw.outreg`). Not for a banked ROM (:func:`rom_banked`), whose
        read's registers are many and spread over the device.
    """

    def __init__(self, width, *, words=None, depth=None, init_file=None, logic=False,
                 latency=1, page_words=None, stall=False):
        if not isinstance(width, int) or width <= 0:
            raise TypeError(f"Width must be a positive integer, not {width!r}")
        if (words is None) == (init_file is None):
            raise ValueError("Exactly one of words and init_file must be given")
        if words is not None:
            words = [int(w) for w in words]
            depth = len(words)
        if not isinstance(depth, int) or depth <= 0:
            raise TypeError(f"Depth must be a positive integer, not {depth!r}")
        self._width, self._depth, self._words, self._init_file = width, depth, words, init_file
        self._logic = bool(logic)
        if latency not in (1, 2, 3):
            raise ValueError(f"Latency must be 1, 2 or 3 cycles, not {latency!r}")
        self._banks, self._bank_addr = 1, None
        if latency >= 2 and not self._logic:
            self._banks, self._bank_addr, _ = rom_layout(depth, width)
        self._latency = rom_read_latency(depth, width, latency, self._logic)
        self._stall = bool(stall)
        if self._stall and self._banks > 1:
            raise ValueError(f"A banked ROM ({depth} words in {self._banks} banks) cannot "
                             f"stall its read")
        if page_words is not None and (page_words < 2 or page_words & (page_words - 1)):
            raise ValueError(f"Page words must be a power of two from 2 up, not {page_words!r}")
        self._page_bits = None
        if page_words is not None and self._logic and latency >= 2 and depth > page_words:
            self._page_bits = page_words.bit_length() - 1
        self._copy_bits = None      # a logic ROM of latency 3 not paged: address copies
        if self._logic and latency == 3 and self._page_bits is None:
            self._copy_bits = ADDRESS_COPY_BITS
        self._group_bits = None     # a wide block RAM ROM of latency 3: a copy per group
        if not self._logic and latency == 3 and self._banks == 1:
            self._group_bits = flat_group_bits(depth, width)
        ports = {"addr": In(max(1, ceil_log2(depth))), "data": Out(width)}
        if self._stall:
            ports["en"] = In(1)
        super().__init__(ports)

    @property
    def width(self):
        return self._width

    @property
    def depth(self):
        return self._depth

    @property
    def latency(self):
        return self._latency

    @property
    def stall(self):
        """Whether the read holds while ``en`` is low."""
        return self._stall

    @property
    def banks(self):
        return self._banks

    @property
    def file_shape(self):
        """``(lines, bits per line)`` of the ``$readmemh`` file: a banked ROM's rows."""
        if self._banks == 1:
            return self._depth, self._width
        return 1 << self._bank_addr, self._banks * self._width

    def elaborate(self, platform):
        m = Module()
        if self._init_file is None:
            m.submodules.mem = mem = memory.Memory(shape=self._width, depth=self._depth,
                                                   init=self._words)
            port = mem.read_port(domain="sync")
            go = self.en if self._stall else 1
            m.d.comb += [port.addr.eq(self.addr), port.en.eq(go)]
            data = port.data
            for k in range(self._latency - 1):
                reg = Signal(self._width, name=f"data_{k + 1}", reset_less=True)
                with m.If(go):
                    m.d.sync += reg.eq(data)
                data = reg
            m.d.comb += self.data.eq(data)
        else:
            banked = {} if self._banks == 1 else {
                "p_BANKS": self._banks, "p_BANK_ADDR": self._bank_addr,
                "p_GROUP_BITS": rom_group_bits(self._depth, self._width)}
            if self._page_bits is not None:
                banked["p_PAGE_BITS"] = self._page_bits
            if self._copy_bits is not None:
                banked["p_COPY_BITS"] = self._copy_bits
            if self._group_bits is not None:
                banked["p_GROUP_BITS"] = self._group_bits
            if self._stall:
                banked["p_STALL"] = 1
            m.submodules.rom = Instance(
                "flexor_rom_logic" if self._logic else "flexor_rom",
                p_WIDTH=self._width, p_DEPTH=self._depth, p_ADDR_WIDTH=len(self.addr),
                p_INIT_FILE=self._init_file, p_LATENCY=self._latency, **banked,
                i_clk=ClockSignal("sync"), i_addr=self.addr, i_en=self.en if self._stall else 1,
                o_data=self.data)
        return m
