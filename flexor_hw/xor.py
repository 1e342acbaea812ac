"""The FleXOR XOR core: M⊕ generation, bit packing and decryption.

Decryption is ``d = M · e mod 2`` per slice. GF(2) linearity gives the fast form used here:
split ``e`` into bytes, ``M · e = ⊕_k M[:, 8k:8k+8] · e_k``, and each byte term is a lookup in a
256-entry table of packed output words. One gather per byte of stored bits decodes a whole
slice, and the result stays bit-packed (bit ``r`` of a word is output ``r``).
"""

import operator

import numpy as np

__all__ = [
    "make_xor_matrix", "pack_bits", "unpack_bits", "xor_tables",
    "decrypt_words", "decrypt", "decrypt_plane", "xor_gate_count",
]


def _positive(name, value):
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be a positive integer, not {value!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, not {value}")
    return value


def make_xor_matrix(n_out, n_in, n_tap=2, *, seed):
    """Generate an M⊕ matrix.

    Parameters
    ----------
    n_out, n_in : int
        Decrypted and stored bits per slice (``n_in <= n_out``).
    n_tap : int or None
        Ones per row. ``None`` fills each entry with a fair coin, redrawing empty rows.
    seed : int
        Seed of the generator; the same arguments always give the same matrix.

    Returns
    -------
    numpy.ndarray
        ``uint8 [n_out, n_in]`` of 0/1.
    """
    n_out = _positive("n_out", n_out)
    n_in = _positive("n_in", n_in)
    if n_in > n_out:
        raise ValueError(f"n_in ({n_in}) must not exceed n_out ({n_out})")
    rng = np.random.default_rng(seed)
    if n_tap is None:
        m = rng.integers(0, 2, size=(n_out, n_in), dtype=np.uint8)
        empty = ~m.any(axis=1)
        while empty.any():
            m[empty] = rng.integers(0, 2, size=(int(empty.sum()), n_in), dtype=np.uint8)
            empty = ~m.any(axis=1)
        return m
    n_tap = _positive("n_tap", n_tap)
    if n_tap > n_in:
        raise ValueError(f"n_tap ({n_tap}) must not exceed n_in ({n_in})")
    m = np.zeros((n_out, n_in), dtype=np.uint8)
    for r in range(n_out):
        m[r, rng.choice(n_in, size=n_tap, replace=False)] = 1
    return m


def pack_bits(bits):
    """Pack 0/1 values along the last axis into little-endian ``uint64`` words.

    Bit ``j`` of the input row is bit ``j % 64`` of word ``j // 64``.
    """
    bits = np.asarray(bits, dtype=np.uint8)
    n = bits.shape[-1]
    n_words = max(1, -(-n // 64))
    padded = np.zeros(bits.shape[:-1] + (n_words * 64,), dtype=np.uint8)
    padded[..., :n] = bits
    packed = np.packbits(padded, axis=-1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64)


def unpack_bits(words, n):
    """Inverse of :func:`pack_bits`: the first ``n`` bits of each row of words."""
    words = np.ascontiguousarray(np.asarray(words, dtype="<u8"))
    bits = np.unpackbits(words.view(np.uint8), axis=-1, bitorder="little")
    return bits[..., :n]


def _word_dtype(n_out):
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if n_out <= 8 * np.dtype(dtype).itemsize:
            return np.dtype(dtype)
    return None


def xor_tables(matrix):
    """Per-byte lookup tables of M⊕: ``tables[k, v]`` = packed ``M[:, 8k:8k+8] · v``.

    Returns ``uint[n_bytes_in, 256, n_words_out]`` where the word type is the narrowest
    unsigned type that holds ``n_out`` bits (``uint64`` words when more).
    """
    matrix = np.asarray(matrix, dtype=np.uint8)
    n_out, n_in = matrix.shape
    n_bytes = -(-n_in // 8)
    values = np.arange(256, dtype=np.uint8)
    byte_bits = np.unpackbits(values[:, None], axis=1, bitorder="little")  # [256, 8]
    dtype = _word_dtype(n_out)
    n_words = 1 if dtype is not None else -(-n_out // 64)
    tables = []
    for k in range(n_bytes):
        cols = matrix[:, 8 * k:8 * k + 8]                      # [n_out, <=8]
        out = (byte_bits[:, :cols.shape[1]].astype(np.int64) @ cols.T.astype(np.int64)) & 1
        packed = pack_bits(out.astype(np.uint8))               # [256, n_words64]
        if dtype is not None:
            tables.append(packed[:, :1].astype(dtype))
        else:
            tables.append(packed)
    result = np.stack(tables)
    assert result.shape[2] == n_words
    return result


_GATHER8 = np.uint64(0x0102040810204080)   # moves byte j's low bit to bit 56 + j


def _stored_bytes(encrypted):
    """Pack 0/1 ``[n, n_in]`` into ``uint8 [n, ceil(n_in/8)]``, bit j of byte k = column 8k+j.

    ``np.packbits`` along a short axis is slow; viewing each 8 columns as one little-endian
    uint64 and multiplying by :data:`_GATHER8` gathers the 8 bits into the top byte without
    carries (all partial products land on distinct bit positions).
    """
    n, n_in = encrypted.shape
    n_bytes = -(-n_in // 8)
    if n_in % 8 or not encrypted.flags.c_contiguous:
        padded = np.zeros((n, n_bytes * 8), np.uint8)
        padded[:, :n_in] = encrypted
        encrypted = padded
    lanes = encrypted.view("<u8")                                  # [n, n_bytes]
    return ((lanes * _GATHER8) >> np.uint64(56)).astype(np.uint8)


def decrypt_words(matrix, encrypted):
    """Decrypt all slices of one bit-plane into packed words.

    Parameters
    ----------
    matrix : array ``[n_out, n_in]`` of 0/1
    encrypted : array ``[n_slices, n_in]`` of 0/1

    Returns
    -------
    numpy.ndarray
        ``[n_slices, n_words]`` packed decrypted bits (bit ``r`` of the slice's word is output
        row ``r``); the word type is as in :func:`xor_tables`.
    """
    encrypted = np.asarray(encrypted, dtype=np.uint8)
    tables = xor_tables(matrix)
    stored = _stored_bytes(encrypted)
    if tables.shape[2] == 1:
        out = np.take(tables[0, :, 0], stored[:, 0])
        for k in range(1, tables.shape[0]):
            out ^= np.take(tables[k, :, 0], stored[:, k])
        return out[:, None]
    out = tables[0][stored[:, 0]]
    for k in range(1, tables.shape[0]):
        out ^= tables[k][stored[:, k]]
    return out


def decrypt(matrix, encrypted):
    """Decrypt all slices of one bit-plane: ``uint8 [n_slices, n_out]`` of 0/1."""
    n_out = np.shape(matrix)[0]
    words = decrypt_words(matrix, encrypted)
    little = np.ascontiguousarray(words.astype(words.dtype.newbyteorder("<"), copy=False))
    bits = np.unpackbits(little.view(np.uint8), axis=1, bitorder="little")
    return bits[:, :n_out]


def decrypt_plane(matrix, encrypted, numel):
    """Decrypt one bit-plane to its ``numel`` weight bits in row-major order (padding dropped)."""
    return decrypt(matrix, encrypted).reshape(-1)[:numel]


def xor_gate_count(matrix):
    """Two-input XOR gates of one decoder: ``Σ max(taps − 1, 0)`` over the rows."""
    taps = np.asarray(matrix, dtype=np.int64).sum(axis=1)
    return int(np.maximum(taps - 1, 0).sum())
