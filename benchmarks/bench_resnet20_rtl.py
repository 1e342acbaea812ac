"""A CIFAR ResNet-20 in RTL (FleXOR 3×3 convs at 0.4 bits/weight, int8 first conv and fc,
nine residual blocks with option-A shortcuts; random weights, calibrated): emission time, then
N random images on Verilator against the golden model, unstalled, with the measured cycles
per image beside the manifest's and the ideal. Prints figures; asserts nothing.

Run: python benchmarks/bench_resnet20_rtl.py [N]      (default 4 images)
"""

import os
import sys
import tempfile
import time

import numpy as np

from flexor_hw.build import build
from flexor_hw.package import save
from flexor_hw.synthetic import random_graph
from flexor_hw.verify import verify

RESNET20 = ("ic16k3p1," + ",".join(["res16"] * 3 + ["res32s2"] + ["res32"] * 2 + ["res64s2"] +
                                    ["res64"] * 2) + ",gap,ifc10")


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    if n < 2:
        sys.exit("bench_resnet20_rtl: give at least 2 images (cycles per image are measured "
                 "between two)")
    pkg = random_graph((3, 32, 32), RESNET20, q=1, n_in=4, n_out=10, seed=1, calibration=16)
    x = np.random.default_rng(0).integers(0, 256, (n, 3, 32, 32))
    with tempfile.TemporaryDirectory(prefix="flexor-resnet20-") as tmp:
        path = os.path.join(tmp, "resnet20.flexor.npz")
        save(pkg, path)
        t = time.perf_counter()
        manifest = build(path, os.path.join(tmp, "rtl"), lanes="auto", argmax=True, quiet=True)
        emit = time.perf_counter() - t
        cycles, ideal = manifest["cycles_per_inference"], manifest["ideal_cycles_per_inference"]
        print(f"emission: {emit:.1f} s (target < 30 s); {cycles:,} cycles per image, ideal "
              f"{ideal:,.0f} ({cycles / ideal:.3f}× the ideal); block RAMs estimated "
              f"{manifest['block_ram_estimate']}")
        report = verify(os.path.join(tmp, "rtl"), sim="verilator", inputs=x, in_stall=0.0,
                        out_stall=0.0, workdir=os.path.join(tmp, "v"), quiet=True)
    measured = report["measured_cycles_per_inference"]
    print(f"verilator: build {report['build_seconds']:.0f} s; {n} images, "
          f"{report['mismatches']} mismatches, {report['sim_cycles_per_s']:,.0f} cycles/s, "
          f"{report['test_seconds'] / n:.1f} s per image (target < 180 s); measured "
          f"{measured:,.0f} cycles per image ({measured / cycles:.3f}× the manifest, "
          f"{measured / ideal:.3f}× the ideal)")


if __name__ == "__main__":
    main()
