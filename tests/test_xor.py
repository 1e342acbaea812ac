import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from flexor_hw.xor import (decrypt, decrypt_plane, make_xor_matrix, pack_bits, unpack_bits,
                           xor_gate_count)


def matmul_gf2(matrix, encrypted):
    return (encrypted.astype(np.int64) @ matrix.T.astype(np.int64)) % 2


@st.composite
def layer_shapes(draw):
    n_out = draw(st.integers(1, 80))
    n_in = draw(st.integers(1, n_out))
    n_tap = draw(st.one_of(st.none(), st.integers(1, n_in)))
    return n_out, n_in, n_tap


@given(layer_shapes(), st.integers(0, 2 ** 32), st.integers(1, 40))
@settings(max_examples=60, deadline=None)
def test_decrypt_matches_gf2_matmul(shape, seed, n_slices):
    n_out, n_in, n_tap = shape
    m = make_xor_matrix(n_out, n_in, n_tap, seed=seed)
    e = np.random.default_rng(seed).integers(0, 2, (n_slices, n_in), dtype=np.uint8)
    assert (decrypt(m, e) == matmul_gf2(m, e)).all()


@given(layer_shapes(), st.integers(0, 2 ** 32))
@settings(max_examples=60, deadline=None)
def test_decrypt_is_linear_over_gf2(shape, seed):
    n_out, n_in, n_tap = shape
    m = make_xor_matrix(n_out, n_in, n_tap, seed=seed)
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, (9, n_in), dtype=np.uint8)
    b = rng.integers(0, 2, (9, n_in), dtype=np.uint8)
    assert (decrypt(m, a ^ b) == decrypt(m, a) ^ decrypt(m, b)).all()
    assert not decrypt(m, np.zeros_like(a)).any()


@given(st.integers(1, 200), st.integers(0, 2 ** 32))
@settings(max_examples=60, deadline=None)
def test_pack_unpack_round_trip(n, seed):
    bits = np.random.default_rng(seed).integers(0, 2, (5, n), dtype=np.uint8)
    words = pack_bits(bits)
    assert words.dtype == np.uint64 and words.shape == (5, -(-n // 64))
    assert (unpack_bits(words, n) == bits).all()


def test_pack_bit_order():
    bits = np.zeros(70, np.uint8)
    bits[[0, 3, 64]] = 1
    assert pack_bits(bits).tolist() == [0b1001, 1]


@pytest.mark.parametrize("n_tap", [1, 2, 3, 6])
def test_matrix_has_n_tap_ones_per_row(n_tap):
    m = make_xor_matrix(20, 6, n_tap, seed=5)
    assert m.shape == (20, 6) and m.dtype == np.uint8
    assert (m.sum(axis=1) == n_tap).all()


def test_matrix_is_seeded():
    assert (make_xor_matrix(20, 8, 2, seed=1) == make_xor_matrix(20, 8, 2, seed=1)).all()
    assert (make_xor_matrix(20, 8, 2, seed=1) != make_xor_matrix(20, 8, 2, seed=2)).any()


def test_random_fill_has_no_empty_rows():
    for seed in range(20):
        m = make_xor_matrix(40, 2, None, seed=seed)
        assert m.any(axis=1).all()


def test_decrypt_plane_drops_padding():
    m = make_xor_matrix(10, 6, 2, seed=0)
    e = np.random.default_rng(0).integers(0, 2, (3, 6), dtype=np.uint8)
    plane = decrypt_plane(m, e, 25)
    assert plane.shape == (25,)
    assert (plane == matmul_gf2(m, e).reshape(-1)[:25]).all()


def test_paper_example_gate_count():
    m = np.array([[1, 0, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0],
                  [0, 0, 1, 1], [0, 1, 0, 1], [0, 1, 1, 1]], np.uint8)
    assert xor_gate_count(m) == 2 + 1 + 2 + 1 + 1 + 2
    x = np.array([[1, 0, 1, 0]], np.uint8)      # y1 = x1^x3^x4 = 0, y2 = x1^x2 = 1 ...
    assert decrypt(m, x).tolist() == [[0, 1, 0, 1, 0, 1]]


@pytest.mark.parametrize("args, exc, msg", [
    ((10, 0, 2), ValueError, r"^n_in must be a positive integer, not 0$"),
    ((10, 2.5, 2), TypeError, r"^n_in must be a positive integer, not 2\.5$"),
    ((5, 6, 2), ValueError, r"^n_in \(6\) must not exceed n_out \(5\)$"),
    ((10, 4, 5), ValueError, r"^n_tap \(5\) must not exceed n_in \(4\)$"),
])
def test_matrix_parameter_errors(args, exc, msg):
    with pytest.raises(exc, match=msg):
        make_xor_matrix(*args, seed=0)
