"""The shipped MNIST LeNet-5 in RTL, built as CI builds rtl_out/lenet5 (``--target ecp5-25k
--argmax``): emission time, then N test images on Verilator against the golden model,
unstalled (build excluded from the per-image figure). Prints figures; asserts nothing.

Run: python benchmarks/bench_lenet_rtl.py [N]      (default 3 images; the whole split is 1000)
"""

import os
import sys
import tempfile
import time

import numpy as np

from flexor_hw.build import build
from flexor_hw.verify import verify

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "examples", "mnist")


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    x = np.load(os.path.join(EXAMPLE, "test_x.npy"))[:n]
    y = np.load(os.path.join(EXAMPLE, "test_y.npy"))[:n]
    with tempfile.TemporaryDirectory(prefix="flexor-lenet-") as tmp:
        t = time.perf_counter()
        manifest = build(os.path.join(EXAMPLE, "lenet5.flexor.npz"), os.path.join(tmp, "rtl"),
                         target="ecp5-25k", argmax=True, quiet=True)
        emit = time.perf_counter() - t
        print(f"emission: {emit:.1f} s (target < 30 s); {manifest['cycles_per_inference']:,} "
              f"cycles per image, ideal {manifest['ideal_cycles_per_inference']:,.0f} "
              f"({manifest['cycles_per_inference'] / manifest['ideal_cycles_per_inference']:.2f}× "
              f"the ideal); folding " + ", ".join(
                  f"{st['name']} {st['pe']}×{st['simd']}" for st in manifest["nodes"]
                  if st["kind"] == "mvau"))
        report = verify(os.path.join(tmp, "rtl"), sim="verilator", inputs=x, labels=y,
                        in_stall=0.0, out_stall=0.0, workdir=os.path.join(tmp, "v"), quiet=True)
    per_image = report["test_seconds"] / n
    print(f"verilator: build {report['build_seconds']:.0f} s; {n} images, "
          f"{report['mismatches']} mismatches, {report['sim_cycles_per_s']:,.0f} cycles/s, "
          f"{per_image:.1f} s per image (target < 30 s); measured "
          f"{report['measured_cycles_per_inference']:,.0f} cycles per image "
          f"({report['measured_cycles_per_inference'] / manifest['cycles_per_inference']:.3f}× "
          f"the manifest); accuracy RTL {report['accuracy_rtl']:.1%}, golden "
          f"{report['accuracy_golden']:.1%}")


if __name__ == "__main__":
    main()
