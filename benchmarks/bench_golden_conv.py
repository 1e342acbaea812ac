"""Golden model of convolutional networks: LeNet-5 on 1,000 images (target < 2 s) and
ResNet-20 on 100 images (target < 5 s), and a check that the fast path (float32/float64 BLAS
where every partial sum is exactly representable) equals the int64 path bit for bit.
Prints figures; asserts nothing.

Run: python benchmarks/bench_golden_conv.py
"""

import time

import numpy as np

from flexor_hw.golden import graph_constants, run_int
from flexor_hw.ops import weighted
from flexor_hw.synthetic import random_graph

LENET5 = "c32k5p2,mp2,c64k5p2,mp2,fc512,fc10"
RESNET20 = ("ic16k3p1," + ",".join(["res16"] * 3 + ["res32s2"] + ["res32"] * 2 + ["res64s2"] +
                                    ["res64"] * 2) + ",gap,ifc10")


def best_of(fn, n=3):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def int64_only(pkg, x, consts):
    """The same model with BLAS disabled: every sum in int64."""
    saved = weighted._EXACT_F32, weighted._EXACT_F64
    weighted._EXACT_F32 = weighted._EXACT_F64 = 0
    for node in pkg.nodes:
        if node.weighted:
            node._memo.clear()
    try:
        return run_int(pkg, x, constants=consts)[-1]
    finally:
        weighted._EXACT_F32, weighted._EXACT_F64 = saved
        for node in pkg.nodes:
            if node.weighted:
                node._memo.clear()


def bench(name, spec, shape, batch, target, q=1):
    pkg = random_graph(shape, spec, n_in=4, n_out=10, q=q, seed=0, calibration=16)
    x = np.random.default_rng(1).integers(0, 256, (batch, *shape))
    consts = graph_constants(pkg, 16)
    macs = sum(pkg.macs().values())
    run_int(pkg, x[:2], constants=consts)                       # warm the weight caches
    t, y = best_of(lambda: run_int(pkg, x, constants=consts)[-1])
    exact = np.array_equal(int64_only(pkg, x[:8], consts), y[:8])
    print(f"{name} (q={q}, {macs / 1e6:.1f} M MACs per image): {batch} images in {t:.2f} s "
          f"({batch / t:,.0f} images/s, {macs * batch / t / 1e9:.1f} G MAC/s; target < "
          f"{target} s); fast path == int64 path on 8 images: {exact}")


def main():
    bench("LeNet-5", LENET5, (1, 28, 28), 1000, 2)
    bench("ResNet-20", RESNET20, (3, 32, 32), 100, 5)
    bench("ResNet-20", RESNET20, (3, 32, 32), 100, 5, q=2)


if __name__ == "__main__":
    main()
