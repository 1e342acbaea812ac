"""What each stage of a graph network keeps in memory, and a block RAM estimate for it.

The estimate counts ECP5 DP16KD blocks (18 Kbit; 16384×1 … 512×36) for the memories a
synthesis tool puts in block RAM, one configuration per memory, and none for the ones it
keeps in logic or LUT RAM: ROMs the build asks to be logic (:data:`LOGIC_ROM_BITS`), and RAMs
of at most 4 Kbit or that would use block RAM at less than a quarter of its bits (a 560-bit
wide vector buffer, say). Yosys packs wide ROMs somewhat better than one configuration per
memory (LeNet-5's fc1 ROM: 42 estimated, 36 placed), so ``flexor-hw synth`` has the last word.
"""

import math

from .gateware.mac import _shape
from .gateware.network import LOGIC_ROM_BITS
from .gateware.vector_buffer import vector_words
from .gateware.window import line_buffer_rows

__all__ = ["DP16KD_CONFIGS", "dp16kd_blocks", "stage_memories", "LOGIC_ROM_BITS"]

DP16KD_CONFIGS = [(16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)]
_SMALL_RAM_BITS = 4096


def dp16kd_blocks(depth, width):
    """Fewest DP16KD blocks holding ``depth × width`` bits in one configuration."""
    return min(math.ceil(depth / d) * math.ceil(width / w) for d, w in DP16KD_CONFIGS)


def _memory(kind, depth, width, rom):
    bits = depth * width
    blocks = dp16kd_blocks(depth, width)
    if rom:
        in_bram = bits > LOGIC_ROM_BITS
    else:
        in_bram = bits > _SMALL_RAM_BITS and blocks * _SMALL_RAM_BITS <= bits
    return {"kind": kind, "depth": depth, "width": width, "bits": bits,
            "block_rams": blocks if in_bram else 0}


def stage_memories(stage):
    """The memories of one :class:`flexor_hw.plan.Stage`, each
    ``{kind, depth, width, bits, block_rams}``."""
    out = []
    xw = _shape(*stage.x_range).width
    plan = stage.plan
    if plan is not None:
        out.append(_memory("weights", plan.n_words, plan.rom_width, True))
        out.append(_memory("constants", plan.out_features, plan.const_width, True))
        if plan.act_memory:
            words = vector_words(plan.fan_in, plan.step_lanes)
            out.append(_memory("activations", (1 + plan.double_buffer) * words,
                               plan.step_lanes * plan.consts.x_shape[0], False))
    if stage.kind in ("conv", "maxpool"):
        c, h, w = stage.in_shape
        node = stage.node
        rows = line_buffer_rows(h, node.kernel[0], node.stride[0])
        out.append(_memory("line buffer", rows * w * c, xw, False))
    if stage.flatten:
        out.append(_memory("frame buffer", 2 * math.prod(stage.in_shape), xw, False))
    if stage.kind == "add":
        out.append(_memory("skip fifo", stage.skip_depth, _shape(*stage.skip_range).width,
                           False))
    return out
