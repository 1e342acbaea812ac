"""Read-only memories: inline-initialized for simulation, ``$readmemh`` for emitted Verilog."""

import re

from amaranth.hdl import ClockSignal, Instance, Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

__all__ = ["Rom", "ROM_VERILOG", "rom_modules", "LOGIC_ROM_BITS"]

# ROMs of a network up to this many bits are logic, not block RAM: a few hundred constants (or
# a first conv's 640 weight bits) would each take a whole 18 Kbit block RAM, and block RAM is
# what a FleXOR network's weights need. (4096 bits: a quarter of one.)
LOGIC_ROM_BITS = 4096

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
    parameter LATENCY = 1
) (
    input wire clk,
    input wire [ADDR_WIDTH-1:0] addr,
    output reg [WIDTH-1:0] data
);
    (* rom_style = "{style}" *) reg [WIDTH-1:0] mem [0:DEPTH-1];
    generate if (INIT_FILE != "") begin : init
        initial $readmemh(INIT_FILE, mem);
    end endgenerate
    generate if (LATENCY == 2) begin : outreg
        reg [WIDTH-1:0] word;
        always @(posedge clk) begin
            word <= mem[addr];
            data <= word;
        end
    end else begin : direct
        always @(posedge clk) data <= mem[addr];
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
    """Synchronous-read ROM: ``data`` shows ``mem[addr]`` one clock after ``addr`` (two with
    ``latency=2``: the read data goes through a register, a block RAM's output register).

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
        (:data:`ROM_VERILOG`), for emission; Amaranth's simulator cannot run it.
    logic : bool
        With ``init_file``: ask for logic (``flexor_rom_logic``) instead of block RAM. A ROM
        of a few hundred bits would otherwise take a whole block RAM.
    latency : int
        1 or 2 cycles from ``addr`` to ``data``. An ECP5 block RAM's data comes out 5.6 ns
        after the clock; a register right behind it leaves the next cycle to the logic.
    """

    def __init__(self, width, *, words=None, depth=None, init_file=None, logic=False,
                 latency=1):
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
        if latency not in (1, 2):
            raise ValueError(f"Latency must be 1 or 2 cycles, not {latency!r}")
        self._latency = latency
        super().__init__({"addr": In(max(1, ceil_log2(depth))), "data": Out(width)})

    @property
    def width(self):
        return self._width

    @property
    def depth(self):
        return self._depth

    @property
    def latency(self):
        return self._latency

    def elaborate(self, platform):
        m = Module()
        if self._init_file is None:
            m.submodules.mem = mem = memory.Memory(shape=self._width, depth=self._depth,
                                                   init=self._words)
            port = mem.read_port(domain="sync")
            m.d.comb += [port.addr.eq(self.addr), port.en.eq(1)]
            if self._latency == 2:
                m.d.sync += self.data.eq(port.data)
            else:
                m.d.comb += self.data.eq(port.data)
        else:
            m.submodules.rom = Instance(
                "flexor_rom_logic" if self._logic else "flexor_rom",
                p_WIDTH=self._width, p_DEPTH=self._depth, p_ADDR_WIDTH=len(self.addr),
                p_INIT_FILE=self._init_file, p_LATENCY=self._latency,
                i_clk=ClockSignal("sync"), i_addr=self.addr, o_data=self.data)
        return m
