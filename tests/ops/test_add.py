"""add golden model (residual join, option-A shortcut) against a naive reference."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from flexor_hw.errors import PackageError
from flexor_hw.golden import graph_constants, run_float, run_graph_float, run_graph_int
from flexor_hw.synthetic import random_graph

from .naive_ref import add_naive, rint


@given(c=st.integers(1, 4), extra=st.integers(0, 4), s=st.sampled_from([1, 2]),
       h=st.integers(2, 7), w=st.integers(2, 7), frac_bits=st.sampled_from([0, 9, 16]),
       seed=st.integers(0, 10 ** 6))
@settings(max_examples=30, deadline=None)
def test_add_equals_naive_reference(c, extra, s, h, w, frac_bits, seed):
    pkg = random_graph((c, h, w), f"c{c}k1,res{c + extra}s{s},fc3", seed=seed,
                       negative_alpha=0.3, calibration=8)
    x = np.random.default_rng(seed).integers(0, 256, (2, c, h, w))
    outs = run_graph_int(pkg, x, frac_bits)
    add = next(n for n in pkg.nodes if n.op == "add")
    consts = graph_constants(pkg, frac_bits)[add.name]
    fa, fb = (pkg.format_of(i) for i in add.inputs)
    assert consts.A_a == rint(fa.scale / add.output.scale * 2 ** frac_bits)
    assert consts.A_b == rint(fb.scale / add.output.scale * 2 ** frac_bits)
    a, b = (outs[i].tolist() for i in add.inputs)
    assert outs[add.name].tolist() == add_naive(add, consts, a, b)


def test_option_a_shortcut_float():
    pkg = random_graph((2, 5, 5), "c2k1,res6s2", seed=1, calibration=8)
    x = np.random.default_rng(0).normal(size=(2, 2, 5, 5))
    outs = run_graph_float(pkg, x)
    add = pkg.nodes[-1]
    a, b = outs[add.inputs[0]], outs[add.inputs[1]]
    assert add.pad_channels == (2, 2)
    b2 = np.zeros_like(a)
    b2[:, 2:4] = b[:, :, ::2, ::2]
    assert not add.relu                 # the last node: linear, signed
    assert np.array_equal(run_float(pkg, x), a + b2)


def test_shape_mismatch_names_both_inputs():
    pkg = random_graph((2, 6, 6), "c2k1,res4s2", seed=0, calibration=8)
    pkg.nodes[-1].stride = 1
    with pytest.raises(PackageError, match=r"^manifest: node 'add4' adds 'conv3' of shape "
                                           r"\[4, 3, 3\] to 'conv1' of shape \[2, 6, 6\] after "
                                           r"its shortcut \(\[4, 6, 6\]\); the shapes must "
                                           r"match$"):
        pkg.validate()
