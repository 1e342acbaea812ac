"""conv2d golden model: exact against a naive Python-integer convolution, over kernels,
strides, paddings, non-square maps, q, slices straddling output channels, negative α and
int8 weights; the float reference against a direct float convolution."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from flexor_hw.errors import PackageError
from flexor_hw.golden import graph_constants, run_float, run_int
from flexor_hw.synthetic import random_graph

from .naive_ref import conv_naive


@given(k=st.sampled_from([1, 3, 5]), s=st.sampled_from([1, 2]), p=st.sampled_from([0, 1, 2]),
       c_in=st.integers(1, 3), c_out=st.integers(1, 5), h=st.integers(5, 9),
       w=st.integers(5, 9), q=st.integers(1, 3), int8=st.booleans(),
       signed=st.booleans(), seed=st.integers(0, 10 ** 6))
@settings(max_examples=40, deadline=None)
def test_conv_equals_naive_reference(k, s, p, c_in, c_out, h, w, q, int8, signed, seed):
    spec = f"{'i' if int8 else ''}c{c_out}k{k}s{s}p{p}"
    # n_out = 7 does not divide the fan-in: slices straddle output channels
    pkg = random_graph((c_in, h, w), spec, q=q, n_in=4, n_out=7, seed=seed,
                       input_signed=signed, negative_alpha=0.3, calibration=8)
    rng = np.random.default_rng(seed)
    x = rng.integers(pkg.input.lo, pkg.input.hi + 1, size=(2, c_in, h, w))
    (node,) = pkg.nodes
    consts = graph_constants(pkg, 12)[node.name]
    got = run_int(pkg, x, 12)[-1]
    assert got.shape == (2, *pkg.shapes()[node.name])
    assert got.tolist() == conv_naive(node, consts, x.tolist())


def test_stride_2_kernel_3_odd_map_and_straddling_slices():
    pkg = random_graph((2, 7, 6), "c3k3s2p1", q=2, n_in=3, n_out=5, seed=4, calibration=8)
    (node,) = pkg.nodes
    assert pkg.shapes()[node.name] == (3, 4, 3)
    assert node.fan_in % node.n_out != 0
    x = np.random.default_rng(1).integers(0, 256, (3, 2, 7, 6))
    consts = graph_constants(pkg, 16)[node.name]
    assert run_int(pkg, x, 16)[-1].tolist() == conv_naive(node, consts, x.tolist())


def test_float_reference_is_a_convolution():
    pkg = random_graph((2, 6, 5), "c4k3s2p2", q=2, seed=3, calibration=8)
    (node,) = pkg.nodes
    w = node.weights().reshape(node.weight_shape)
    x = np.random.default_rng(0).normal(size=(2, 2, 6, 5))
    xp = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    ref = np.zeros((2, 4, 4, 4))
    for oy in range(4):
        for ox in range(4):
            win = xp[:, :, 2 * oy:2 * oy + 3, 2 * ox:2 * ox + 3]
            ref[:, :, oy, ox] = np.einsum("bchw,ochw->bo", win, w) + node.bias
    assert np.allclose(run_float(pkg, x), np.maximum(ref, 0) if node.relu else ref,
                       rtol=1e-12, atol=1e-12)


def test_batch_and_chunk_independence():
    pkg = random_graph((1, 8, 8), "c4k5p2,mp2,c6k3s2p1,fc5", seed=2, calibration=8)
    x = np.random.default_rng(0).integers(0, 256, (7, 1, 8, 8))
    whole = run_int(pkg, x)
    for got, want in zip(run_int(pkg, x, chunk=3), whole):
        assert np.array_equal(got, want)
    single = [run_int(pkg, x[i:i + 1])[-1][0] for i in range(7)]
    assert np.array_equal(np.stack(single), whole[-1])


def test_channel_mismatch_names_the_node():
    pkg = random_graph((2, 6, 6), "c3k3", seed=0, calibration=8)
    pkg.input_shape = (3, 6, 6)
    with pytest.raises(PackageError, match=r"^manifest: node 'conv1' has 2 input channels but "
                                           r"its input 'input' has 3 \(shape \[3, 6, 6\]\)$"):
        pkg.validate()


def test_kernel_larger_than_input_names_the_node():
    pkg = random_graph((1, 6, 6), "c3k5", seed=0, calibration=8)
    pkg.input_shape = (1, 3, 3)
    with pytest.raises(PackageError, match=r"^manifest: node 'conv1': kernel \[5, 5\] with "
                                           r"padding \[0, 0\] does not fit its 3×3 input$"):
        pkg.validate()
