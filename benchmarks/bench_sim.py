"""Simulated cycles/s on Icarus and Verilator for a 64-lane layer, and cycles per inference
against the ideal (one ROM word per cycle). Prints figures.

Run: python benchmarks/bench_sim.py [--vectors 4]
"""

import argparse
import os
import tempfile

from flexor_hw.build import build
from flexor_hw.package import save
from flexor_hw.synthetic import random_package
from flexor_hw.verify import verify


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vectors", type=int, default=2)
    ap.add_argument("--sims", default="icarus,verilator")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # 640 inputs × 2048 outputs, n_in/n_out = 8/10, q = 1: 64 lanes decode 640 bits a word.
        pkg = random_package([640, 2048], n_in=8, n_out=10, q=1, seed=2, name="lanes64")
        path = os.path.join(tmp, "p.flexor.npz")
        save(pkg, path)
        rtl = os.path.join(tmp, "rtl")
        manifest = build(path, rtl, lanes=64, quiet=True)
        layer = manifest["layers"][0]
        print(f"layer 640x2048, 64 lanes: {layer['rom_words']} ROM words x {layer['rom_width']} "
              f"bits, {manifest['cycles_per_inference']} cycles per inference (ideal "
              f"{layer['rom_words']} words + {manifest['latency_cycles'] - layer['rom_words']} "
              f"cycles of pipeline latency)")
        for sim in args.sims.split(","):
            r = verify(rtl, sim=sim, vectors=args.vectors, in_stall=0, out_stall=0,
                       workdir=os.path.join(tmp, sim), quiet=True)
            measured = r["measured_cycles_per_inference"]
            measured = "–" if measured is None else f"{measured:.0f}"   # needs 2+ vectors
            print(f"{sim:>9}: build {r['build_seconds']:.1f} s, {r['cycles']} cycles in "
                  f"{r['test_seconds']:.1f} s -> {r['sim_cycles_per_s']:,.0f} cycles/s; "
                  f"measured {measured} cycles per inference "
                  f"(ideal {r['ideal_cycles_per_inference']}); mismatches {r['mismatches']}",
                  flush=True)


if __name__ == "__main__":
    main()
