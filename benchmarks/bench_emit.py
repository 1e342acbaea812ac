"""Emission time and peak memory of `flexor-hw build` vs model size. Prints figures.

Run: python benchmarks/bench_emit.py [--sizes 10000,100000,1000000,11700000] [--lanes 8]
Each size is one square linear layer (q = 2, n_in/n_out = 8/20), built in a subprocess so its
peak RSS is measured alone.
"""

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time

from flexor_hw.package import save
from flexor_hw.synthetic import random_package


# Runs the CLI in this process and prints its own peak RSS (KiB) last.
_WRAPPER = ("import resource, sys\nfrom flexor_hw.cli import main\nrc = main(sys.argv[1:])\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\nsys.exit(rc)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000,11700000")
    ap.add_argument("--lanes", type=int, default=8)
    args = ap.parse_args()
    print(f"{'weights':>10} {'layer':>11} {'ROM bits':>11} {'emit s':>8} {'peak MB':>8} "
          f"{'Verilog KB':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in [int(s) for s in args.sizes.split(",")]:
            side = int(round(math.sqrt(size)))
            pkg = random_package([side, side], n_in=8, n_out=20, q=2, seed=1, name=f"s{side}")
            path = os.path.join(tmp, f"s{side}.flexor.npz")
            save(pkg, path)
            out = os.path.join(tmp, f"rtl{side}")
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", _WRAPPER, "build", path, "-o", out,
                                "--lanes", str(args.lanes)], check=True, capture_output=True,
                               text=True)
            seconds = time.perf_counter() - t0
            peak = int(r.stdout.strip().splitlines()[-1])
            rom_bits = pkg.layers[0].stored_bits
            vsize = os.path.getsize(os.path.join(out, f"flexor_s{side}.v")) / 1024
            print(f"{side * side:>10,} {side:>5}x{side:<5} {rom_bits:>11,} {seconds:>8.1f} "
                  f"{peak / 1024:>8.0f} {vsize:>10.0f}", flush=True)


if __name__ == "__main__":
    main()
