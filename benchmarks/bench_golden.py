"""Decryption and golden-model throughput (issue: foundation). Prints figures; asserts nothing.

Run: python benchmarks/bench_golden.py
"""

import time

import numpy as np

from flexor_hw.golden import layer_constants, layer_int
from flexor_hw.package import Layer, Package, QuantFormat
from flexor_hw.xor import decrypt_words, make_xor_matrix

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None


def best_of(fn, n=3):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_decrypt():
    weights, q, n_in, n_out = 11_700_000, 2, 8, 20
    rng = np.random.default_rng(0)
    n_slices = -(-weights // n_out)
    mats = [make_xor_matrix(n_out, n_in, 2, seed=i) for i in range(q)]
    enc = rng.integers(0, 2, (q, n_slices, n_in), dtype=np.uint8)
    t = best_of(lambda: [decrypt_words(mats[i], enc[i]) for i in range(q)])
    bits = q * n_slices * n_out
    print(f"decrypt: ResNet-18-sized weight set ({weights:,} weights, q={q}, "
          f"n_in/n_out={n_in}/{n_out}): {t * 1e3:.1f} ms, {bits / t / 1e9:.2f} G decoded bits/s "
          f"(one core; target >= 1.0)")


def bench_golden():
    out = fan_in = 1024
    q, batch = 2, 1024
    rng = np.random.default_rng(1)
    n_slices = -(-out * fan_in // 20)
    layer = Layer(name="fc", weight_shape=(out, fan_in), q=q, n_in=8, n_out=20, n_tap=2,
                  relu=True, output=QuantFormat(0.05, 8, False),
                  xor=np.stack([make_xor_matrix(20, 8, 2, seed=i) for i in range(q)]),
                  encrypted=rng.integers(0, 2, (q, n_slices, 8), dtype=np.uint8),
                  alpha=rng.uniform(0.01, 0.05, (q, out)).astype(np.float32),
                  bias=rng.normal(0, 1, out).astype(np.float32))
    pkg = Package("bench", (fan_in,), QuantFormat(1 / 256, 8, False), [layer]).validate()
    x = rng.integers(0, 256, (batch, fan_in))

    def run():
        layer.__dict__.pop("weight_bits", None)        # include decryption every time
        consts = layer_constants(pkg, 0, 16)
        return layer_int(layer, consts, x)

    t = best_of(run)
    ref = x @ (layer.weight_bits.astype(np.int64) * 2 - 1)[0].T
    exact = np.array_equal(ref, np.rint((x.astype(np.float64) @
                                         (layer.weight_bits[0] * 2.0 - 1).T)).astype(np.int64))
    print(f"golden: {out}x{fan_in} layer, q={q}, batch {batch}: {t:.3f} s "
          f"(target < 2 s), float64 BLAS path exact vs int64: {exact}")


if __name__ == "__main__":
    if threadpool_limits is not None:
        with threadpool_limits(1):
            bench_decrypt()
            bench_golden()
    else:
        bench_decrypt()
        bench_golden()
