import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import random_inputs
from flexor_hw.errors import BuildError, InputError
from flexor_hw.golden import (error_bound, layer_constants, layer_int, network_constants,
                              run_float, run_int, signed_width)
from flexor_hw.synthetic import random_package


def naive_layer(layer, fin, fout, x, frac_bits):
    """The arithmetic contract with Python ints, straight from docs/design.md."""
    bits = []
    for i in range(layer.q):
        flat = (layer.encrypted[i].astype(int) @ layer.xor[i].T.astype(int)) % 2
        bits.append(flat.reshape(-1)[:layer.numel].reshape(layer.out_features, layer.fan_in))
    lo = max(layer.output.lo, 0) if layer.relu else layer.output.lo
    out = []
    for o in range(layer.out_features):
        acc = round(float(layer.bias[o]) / fout.scale * 2 ** frac_bits)
        for i in range(layer.q):
            s = sum(int(v) if b else -int(v) for b, v in zip(bits[i][o], x))
            a = round(float(layer.alpha[i, o]) * fin.scale / fout.scale * 2 ** frac_bits)
            acc += a * s
        y = (acc + ((1 << frac_bits) >> 1)) >> frac_bits
        out.append(min(max(y, lo), layer.output.hi))
    return out


@pytest.mark.parametrize("frac_bits", [0, 1, 8, 16])
@pytest.mark.parametrize("signed", [False, True])
def test_integer_model_matches_contract(frac_bits, signed):
    pkg = random_package([23, 9, 4], n_in=[5, 3], n_out=[9, 7], q=[2, 1], n_tap=[2, None],
                         seed=11, input_signed=signed)
    x = random_inputs(pkg, 6, seed=frac_bits)
    outs = run_int(pkg, x, frac_bits)
    for k, layer in enumerate(pkg.layers):
        xin = x if k == 0 else outs[k - 1]
        for b in range(len(x)):
            expected = naive_layer(layer, pkg.input_format(k), layer.output, xin[b].tolist(),
                                   frac_bits)
            assert outs[k][b].tolist() == expected


@given(st.integers(0, 10 ** 6), st.integers(1, 3), st.sampled_from([0, 4, 12, 20]),
       st.booleans())
@settings(max_examples=30, deadline=None)
def test_integer_model_within_derived_bound_of_float(seed, q, frac_bits, signed):
    pkg = random_package([31, 17, 6], n_in=7, n_out=11, q=q, seed=seed, input_signed=signed)
    x = random_inputs(pkg, 20, seed=seed)
    consts = network_constants(pkg, frac_bits)
    xin = x
    for k, layer in enumerate(pkg.layers):
        fin, fout = pkg.input_format(k), layer.output
        y_int = layer_int(layer, consts[k], xin)
        z = xin * fin.scale @ layer.weights().T + layer.bias
        z_clamped = np.clip(z / fout.scale, consts[k].y_lo, consts[k].y_hi)
        bound = error_bound(layer, consts[k], xin)
        assert (np.abs(y_int - z_clamped) <= bound + 1e-9).all()
        xin = y_int


def test_bound_is_tight_enough_to_mean_something(small_package):
    x = random_inputs(small_package, 10)
    c = layer_constants(small_package, 0, 16)
    assert error_bound(small_package.layers[0], c, x).max() < 0.6


@given(st.integers(0, 10 ** 6), st.integers(1, 50))
@settings(max_examples=20, deadline=None)
def test_results_independent_of_batch_and_chunking(seed, chunk):
    pkg = random_package([19, 11, 3], n_in=4, n_out=10, q=2, seed=seed)
    x = random_inputs(pkg, 37, seed=seed)
    whole = run_int(pkg, x)[-1]
    assert (run_int(pkg, x, chunk=chunk)[-1] == whole).all()
    singles = np.concatenate([run_int(pkg, x[i:i + 1])[-1] for i in range(len(x))])
    assert (singles == whole).all()


def test_float_reference_is_relu_chain(small_package):
    x = random_inputs(small_package, 4) * small_package.input.scale
    l1, l2 = small_package.layers
    h = np.maximum(x @ l1.weights().T + l1.bias, 0)
    assert np.array_equal(run_float(small_package, x), h @ l2.weights().T + l2.bias)


def test_constants_ranges_hold(small_package):
    c = layer_constants(small_package, 0, 16)
    layer = small_package.layers[0]
    assert c.s_hi == layer.fan_in * 255 and c.s_lo == -c.s_hi
    assert c.y_lo == 0 and c.y_hi == 255          # ReLU, unsigned 8-bit
    assert c.round_const == 1 << 15
    # acc range covers the real extremes: all-max input with all-+1 weights
    assert c.acc_hi >= int((np.abs(c.A).sum(axis=0) * c.s_hi + c.beta).max())
    last = layer_constants(small_package, 1, 16)
    assert (last.y_lo, last.y_hi) == (-128, 127)


def test_signed_width():
    assert signed_width(0, 0) == 1
    assert signed_width(-1, 0) == 1
    assert signed_width(0, 1) == 2
    assert signed_width(-128, 127) == 8
    assert signed_width(-129, 127) == 9
    assert signed_width(0, 128) == 9


@pytest.mark.parametrize("frac_bits, msg", [
    (-1, r"^frac_bits must be an integer from 0 to 32, not -1$"),
    (33, r"^frac_bits must be an integer from 0 to 32, not 33$"),
    (2.5, r"^frac_bits must be an integer from 0 to 32, not 2\.5$"),
])
def test_frac_bits_range(small_package, frac_bits, msg):
    with pytest.raises(BuildError, match=msg):
        layer_constants(small_package, 0, frac_bits)


def test_input_checks(small_package):
    with pytest.raises(InputError, match=r"^input has shape \[2, 36\], expected \[batch, 37\]$"):
        run_int(small_package, np.zeros((2, 36), np.int64))
    with pytest.raises(InputError, match=r"^input has dtype float64, expected integers"):
        run_int(small_package, np.zeros((2, 37)))
    with pytest.raises(InputError, match=r"^input values span \[4, 256\], outside the declared "
                                         r"range \[0, 255\]$"):
        run_int(small_package, np.arange(37)[None, :] * 7 + 4)
    with pytest.raises(InputError, match=r"outside the declared range"):
        run_int(small_package, np.full((1, 37), -1))
