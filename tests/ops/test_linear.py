"""linear golden model: exact against a naive Python-integer reference (FleXOR and int8
weights, q up to 3, flatten after a spatial node in PyTorch's (c, y, x) order)."""

import numpy as np
from hypothesis import given, settings, strategies as st

from flexor_hw.golden import graph_constants, run_float, run_int
from flexor_hw.synthetic import random_graph

from .naive_ref import linear_naive, plane_weights


@given(fan_in=st.integers(1, 40), out=st.integers(1, 9), q=st.integers(1, 3),
       int8=st.booleans(), signed=st.booleans(), frac_bits=st.sampled_from([0, 5, 16]),
       seed=st.integers(0, 10 ** 6))
@settings(max_examples=40, deadline=None)
def test_linear_equals_naive_reference(fan_in, out, q, int8, signed, frac_bits, seed):
    pkg = random_graph((fan_in,), f"{'i' if int8 else ''}fc{out}", q=q, n_in=3, n_out=7,
                       seed=seed, input_signed=signed, negative_alpha=0.3, calibration=8)
    x = np.random.default_rng(seed).integers(pkg.input.lo, pkg.input.hi + 1, (3, fan_in))
    (node,) = pkg.nodes
    consts = graph_constants(pkg, frac_bits)[node.name]
    assert run_int(pkg, x, frac_bits)[-1].tolist() == linear_naive(node, consts, x.tolist())


def test_flatten_follows_pytorch_order():
    pkg = random_graph((2, 3, 4), "fc5", seed=1, calibration=8)
    (node,) = pkg.nodes
    x = np.random.default_rng(0).integers(0, 256, (2, 2, 3, 4))
    consts = graph_constants(pkg, 16)[node.name]
    flat = x.reshape(2, -1)             # x.flatten(1): channel, then row, then column
    assert run_int(pkg, x, 16)[-1].tolist() == linear_naive(node, consts, flat.tolist())
    assert np.array_equal(run_int(pkg, flat, 16)[-1], run_int(pkg, x, 16)[-1])


def test_int8_layer_uses_its_weights_and_scale():
    pkg = random_graph((6,), "ifc4", seed=5, negative_alpha=0.5, calibration=8)
    (node,) = pkg.nodes
    w = np.array(plane_weights(node)[0], np.float64)
    assert np.array_equal(node.weights(), w * node.weight_scale[:, None].astype(np.float64))
    x = np.random.default_rng(0).normal(size=(3, 6))
    assert np.allclose(run_float(pkg, x), x @ node.weights().T + node.bias, rtol=1e-12)
