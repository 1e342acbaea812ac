"""maxpool2d and global_avgpool golden models against naive references."""

import numpy as np
from hypothesis import given, settings, strategies as st

from flexor_hw.golden import graph_constants, run_float, run_graph_int, run_int
from flexor_hw.synthetic import random_graph

from .naive_ref import gap_naive, maxpool_naive, rint


@given(k=st.integers(1, 3), s=st.integers(1, 3), h=st.integers(3, 9), w=st.integers(3, 9),
       seed=st.integers(0, 10 ** 6))
@settings(max_examples=30, deadline=None)
def test_maxpool_equals_naive_reference(k, s, h, w, seed):
    pkg = random_graph((2, h, w), f"c3k1,mp{k}s{s}", seed=seed, calibration=8)
    x = np.random.default_rng(seed).integers(0, 256, (2, 2, h, w))
    outs = run_graph_int(pkg, x)
    pool = pkg.nodes[1]
    assert outs[pool.name].tolist() == maxpool_naive(pool, outs["conv1"].tolist())
    assert pkg.format_of(pool.name) == pkg.format_of("conv1")       # scale unchanged


@given(h=st.integers(1, 6), w=st.integers(1, 6), frac_bits=st.sampled_from([0, 8, 16]),
       seed=st.integers(0, 10 ** 6))
@settings(max_examples=30, deadline=None)
def test_global_avgpool_equals_naive_reference(h, w, frac_bits, seed):
    pkg = random_graph((3, h, w), "c4k1,gap", seed=seed, calibration=8)
    x = np.random.default_rng(seed).integers(0, 256, (3, 3, h, w))
    outs = run_graph_int(pkg, x, frac_bits)
    gap = pkg.nodes[1]
    c = graph_constants(pkg, frac_bits)[gap.name]
    fin, fout = pkg.format_of("conv1"), gap.output
    assert c.A == rint(fin.scale / (h * w * fout.scale) * 2 ** frac_bits)
    assert outs[gap.name].tolist() == gap_naive(c, outs["conv1"].tolist())


def test_pool_float_references():
    pkg = random_graph((2, 4, 6), "c3k1,mp2,gap", seed=0, calibration=8)
    x = np.random.default_rng(1).normal(size=(2, 2, 4, 6))
    conv = pkg.nodes[0]
    z = np.einsum("bchw,oc->bohw", x, conv.weights()) + conv.bias[None, :, None, None]
    z = np.maximum(z, 0)
    pooled = z.reshape(2, 3, 2, 2, 3, 2).max(axis=(3, 5))
    assert np.allclose(run_float(pkg, x), pooled.mean(axis=(2, 3)), rtol=1e-12, atol=1e-12)


def test_maxpool_of_integer_codes_commutes_with_the_graph():
    pkg = random_graph((1, 6, 6), "c2k3p1,mp2", seed=3, calibration=8)
    x = np.random.default_rng(2).integers(0, 256, (4, 1, 6, 6))
    conv_out, pooled = run_int(pkg, x)
    assert np.array_equal(pooled, conv_out.reshape(4, 2, 3, 2, 3, 2).max(axis=(3, 5)))
