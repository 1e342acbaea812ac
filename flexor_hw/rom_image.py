"""ROM images of a folded matrix-vector unit: encrypted slices arranged so that each word
holds what its ``PE`` rows need for ``SIMD`` columns.

FleXOR slices of ``n_out`` bits are global over the PyTorch-order weight tensor and straddle
rows when ``n_out ∤ F``. Slices are moved (and, where a row segment starts inside one, stored
again in the neighbouring word), never re-cut: the word for row group ``nf`` and column block
``sf`` holds, for PE row ``j`` and plane ``i``, the ``slots`` slices from the one holding bit
``r·F + sf·SIMD`` on, and the row's ``SIMD`` bits start at that bit's offset in the decoded
slots. The offsets a PE row meets are few (``F mod n_out`` and ``SIMD mod n_out`` decide
them); the unit counts them (``(r·F + sf·SIMD) mod n_out``) and selects among just those.
Where ``n_out`` divides ``F`` and ``SIMD`` every offset is 0: no selection at all.

Where ``SIMD`` divides ``n_out`` (and ``F``), consecutive column blocks take their bits from
the same slices: the unit reads such a word once and keeps it for the ``n_out / SIMD`` steps
it serves, so the ROM stores it once (one PE row, or rows that meet their slices together:
``n_out | F``; :func:`~flexor_hw.gateware.mvau.hold_steps`).

Where ``n_out`` divides ``SIMD`` (``SIMD = k·n_out``) but not ``F``, a row's column blocks
need ``k + 1`` slices each and consecutive blocks share one: the word would store every
slice at a block's end twice. Such units *carry* it instead: a word holds the ``k`` slices
after the shared one, the unit keeps the last slice of the word before, and a row's first
slice comes from a small ROM of row-group heads (:func:`mvau_head_words`). The weights are
then stored once, plus a slice per row.
"""

import binascii
import collections
import dataclasses
import functools

import numpy as np

from .gateware.mvau import MvauParams, hold_steps, xor_offset, xor_refusal
from .xor import decrypt

__all__ = ["hex_lines", "tile_geometry", "carries", "mvau_rom_bytes", "mvau_head_words",
           "mvau_const_words", "mvau_params", "is_plain", "xor_constants"]


_Shape = collections.namedtuple("_Shape", "fan_in out_features n_out")


def _grid(layer, pe, simd):
    """Global bit index of each (row group, column block, PE row)'s first column, and which
    rows exist: ``[NF, SF, PE]`` each."""
    f, o = layer.fan_in, layer.out_features
    nf, sf = -(-o // pe), -(-f // simd)
    rows = np.arange(nf)[:, None, None] * pe + np.arange(pe)[None, None, :]
    cols = np.arange(sf)[None, :, None] * simd
    g0 = rows.astype(np.int64) * f + cols
    return np.broadcast_to(g0, (nf, sf, pe)), np.broadcast_to(rows < o, (nf, sf, pe))


def tile_geometry(layer, pe, simd):
    """``(slots, offsets)``: encrypted slices per PE row and plane in a word, and per PE row
    the sorted tuple of bit offsets its column blocks start at."""
    return _tile_geometry(layer.fan_in, layer.out_features, layer.n_out, pe, simd)


@functools.lru_cache(maxsize=4096)
def _tile_geometry(fan_in, out_features, n_out, pe, simd):
    """:func:`tile_geometry` by the layer's shape alone (the folding pass asks it of every
    candidate folding on every try)."""
    layer = _Shape(fan_in, out_features, n_out)
    g0, exists = _grid(layer, pe, simd)
    off = g0 % layer.n_out
    slots = int(((off + simd + layer.n_out - 1) // layer.n_out)[exists].max())
    offsets = []
    for j in range(pe):
        seen = np.unique(off[..., j][exists[..., j]])
        offsets.append(tuple(int(v) for v in seen) if seen.size else (0,))
    return slots, tuple(offsets)


def carries(layer, pe, simd, *, plain=False, slots=None):
    """Whether the unit carries the slice its column blocks share (``n_out | SIMD``, and some
    block starts inside a slice): see the module's text. ``slots``: the tile geometry's, when
    the caller has it."""
    if plain or simd % layer.n_out:
        return False
    if slots is None:
        slots = tile_geometry(layer, pe, simd)[0]
    return slots == simd // layer.n_out + 1


def is_plain(layer, baseline=False):
    """Whether the ROM holds weight bits as they are: the 1-bit baseline, or identity M⊕
    (an int layer's bit-planes, whose 'slices' are the bits themselves)."""
    xor = np.asarray(layer.xor)
    return baseline or (xor.shape[1] == xor.shape[2] and
                        bool((xor == np.eye(xor.shape[1], dtype=xor.dtype)).all()))


def _plain_bits(layer):
    """Decrypted weight bits ``[q, O, F]``."""
    planes = [decrypt(layer.xor[i], layer.encrypted[i]).reshape(-1)[:layer.numel]
              for i in range(layer.q)]
    return np.stack(planes).reshape(layer.q, layer.out_features, layer.fan_in)


def mvau_rom_bytes(layer, pe, simd, *, plain=False, stationary=False):
    """Weight ROM image of a :class:`~flexor_hw.gateware.mvau.MatrixVectorUnit`:
    ``uint8 [NF·SF, ⌈width/8⌉]``, little-endian words in the order the unit reads them
    (row group major, then column block).

    Word layout, LSB first: plane ``i``, PE row ``j`` at ``(i·PE + j)·row_bits`` (``slots``
    slices of ``n_in`` stored bits each, or ``SIMD`` weight bits when ``plain``). Where a
    row's bits start in its slots is counted by the unit, not stored. Where a word serves
    several steps (:func:`~flexor_hw.gateware.mvau.hold_steps`), one word per those steps.
    ``stationary``: column block major, the order an input-stationary unit reads them in
    (each word holds whole slices for its own rows and columns, so words move freely).
    """
    image = _rom_bytes(layer, pe, simd, plain)
    if stationary:
        nf, sf = -(-layer.out_features // pe), -(-layer.fan_in // simd)
        if image.shape[0] != nf * sf:
            raise ValueError("An input-stationary unit reads a word a step: not one whose "
                             "words serve several steps")
        image = image.reshape(nf, sf, -1).transpose(1, 0, 2).reshape(nf * sf, -1)
    return image


def _rom_bytes(layer, pe, simd, plain):
    """:func:`mvau_rom_bytes` in row group major order."""
    q, o, f = layer.q, layer.out_features, layer.fan_in
    nf, sf = -(-o // pe), -(-f // simd)
    if plain:
        padded = np.zeros((q, nf * pe, sf * simd), np.uint8)
        padded[:, :o, :f] = _plain_bits(layer)
        bits = padded.reshape(q, nf, pe, sf, simd).transpose(1, 3, 0, 2, 4)
        bits = bits.reshape(nf * sf, q * pe * simd)
        return np.packbits(bits, axis=1, bitorder="little")
    slots, offsets = tile_geometry(layer, pe, simd)
    g0, exists = _grid(layer, pe, simd)
    first = g0 // layer.n_out
    carry = carries(layer, pe, simd, slots=slots)
    stored = slots - carry                  # a carrying unit's words start a slice later
    idx = first[..., None] + carry + np.arange(stored)              # [NF, SF, PE, stored]
    words = _pick(layer, idx, exists[..., None])                    # [q, NF, SF, PE, stored, n_in]
    words = words.transpose(1, 2, 0, 3, 4, 5).reshape(nf * sf, q * pe * stored * layer.n_in)
    # a word serving several steps (hold_steps) is stored once, at its first
    return np.packbits(words, axis=1, bitorder="little")[::hold_steps(f, layer.n_out, pe, simd)]


def _pick(layer, idx, exists):
    """Encrypted slices ``idx`` of every plane, zero where the row does not exist (``exists``,
    broadcast against ``idx``) or the index is past the last slice: ``[q, *idx.shape, n_in]``."""
    valid = exists & (idx < layer.n_slices)
    enc = np.asarray(layer.encrypted, np.uint8)                      # [q, n_slices, n_in]
    return enc[:, np.where(valid, idx, 0)] * valid[None, ..., None]


def mvau_head_words(layer, pe, simd):
    """Row-group heads of a carrying unit (:func:`carries`): per row group one word holding,
    for plane ``i`` and PE row ``j`` at ``(i·PE + j)·n_in``, the encrypted slice its row's
    first column is in. ``NF`` Python ints."""
    g0, exists = _grid(layer, pe, simd)
    first, exists = g0[:, 0, :] // layer.n_out, exists[:, 0, :]     # [NF, PE]
    heads = _pick(layer, first, exists)                              # [q, NF, PE, n_in]
    nf = first.shape[0]
    bits = heads.transpose(1, 0, 2, 3).reshape(nf, layer.q * pe * layer.n_in)
    packed = np.packbits(bits, axis=1, bitorder="little")
    return tuple(int.from_bytes(w.tobytes(), "little") for w in packed)


def mvau_const_words(consts, out_features, pe, out_simd):
    """Constants of a unit: one word per output beat (``R`` rows of ``A_0 … A_{q−1}, β``,
    two's complement fields, LSB first), ``NF·PE/R`` words; rows past the last are zero."""
    q = consts.A.shape[0]
    fields = [consts.a_width] * q + [consts.beta_width]
    row_width = sum(fields)
    nf = -(-out_features // pe)
    words = []
    for beat in range(nf * pe // out_simd):
        word = 0
        for u in range(out_simd):
            row = beat * out_simd + u
            if row >= out_features:
                continue
            values = [int(consts.A[i, row]) for i in range(q)] + [int(consts.beta[row])]
            pos = u * row_width
            for value, width in zip(values, fields):
                word |= (value & ((1 << width) - 1)) << pos
                pos += width
        words.append(word)
    return words


def xor_constants(layer, consts, x_shape):
    """The constants of a unit whose lanes add ``w ? x : ~x`` (``xor_masks``): its rows sum
    ``S' = S + K·N₀`` (:func:`~flexor_hw.gateware.mvau.xor_offset`; ``N₀[i, o]`` the −1
    weights of plane ``i``'s row ``o``), so ``β' = β − Σ_i A_i·K·N₀_i`` keeps every
    ``Σ_i A_i·S'_i + β'`` equal to the contract's ``Σ_i A_i·S_i + β`` (``acc`` unchanged), and
    ``S'`` spans ``F`` terms of ``[min(x_lo, K − x_hi), max(x_hi, K − x_lo)]``."""
    k = xor_offset(x_shape)
    n0 = (np.asarray(layer.weight_bits) == 0).sum(axis=2).astype(object)     # [q, out]
    shift = (consts.A.astype(object) * n0).sum(axis=0) * k
    beta = (consts.beta.astype(object) - shift).astype(np.int64)
    t_lo, t_hi = min(consts.x_lo, k - consts.x_hi), max(consts.x_hi, k - consts.x_lo)
    f = layer.fan_in
    return dataclasses.replace(consts, beta=beta, s_lo=f * min(0, t_lo), s_hi=f * max(0, t_hi))


def mvau_params(layer, consts, pe, simd, out_simd=1, *, baseline=False, unipolar=False,
                contents=True, rom_logic=False, rom_block=False, vectors_lutram=None,
                scatter=None,
                in_simd=None, bits_register=True, address_register=False, masked_adders=False,
                rom_page_words=None, lut_multipliers=False, stationary=False, xor_masks=True):
    """:class:`~flexor_hw.gateware.mvau.MvauParams` of a layer (a weighted node, or an int
    node's :class:`~flexor_hw.hw.int_planes.IntPlanes`) at a folding; with ``contents`` the ROM and
    constant words (for Amaranth's simulator). ``xor_masks``: lanes that add an activation
    or its complement, with the unit's own constants (:func:`xor_constants`), wherever the
    unit can (:func:`~flexor_hw.gateware.mvau.xor_refusal`), or never (False)."""
    plain = is_plain(layer, baseline)
    slots, offsets = (0, ()) if plain else tile_geometry(layer, pe, simd)
    carry = carries(layer, pe, simd, plain=plain, slots=slots)
    rom = None
    if contents:
        rom = tuple(int.from_bytes(w.tobytes(), "little")
                    for w in mvau_rom_bytes(layer, pe, simd, plain=plain,
                                            stationary=stationary))
    params = MvauParams(
        fan_in=layer.fan_in, out_features=layer.out_features, q=layer.q, n_in=layer.n_in,
        n_out=layer.n_out, pe=pe, simd=simd, out_simd=out_simd, consts=consts,
        xor=np.asarray(layer.xor), plain=plain, unipolar=unipolar, slots=slots,
        offsets=offsets, carry=carry,
        head_words=mvau_head_words(layer, pe, simd) if carry else None,
        rom_logic=rom_logic, rom_block=rom_block, vectors_lutram=vectors_lutram,
        scatter=scatter,
        in_simd=in_simd, bits_register=bits_register, address_register=address_register,
        masked_adders=masked_adders, rom_page_words=rom_page_words,
        lut_multipliers=lut_multipliers, stationary=stationary, rom_words=rom)
    if xor_masks and getattr(layer, "is_flexor", False) and xor_refusal(params) is None:
        consts = xor_constants(layer, consts, params.x_shape)
        params = dataclasses.replace(params, xor_masks=True, consts=consts)
    if contents:
        params = dataclasses.replace(params, const_words=tuple(
            mvau_const_words(consts, layer.out_features, pe, out_simd)))
    return params


def hex_lines(words_bytes, width):
    """``$readmemh`` text for little-endian word bytes: one word per line, MSB first."""
    n_words, n_bytes = words_bytes.shape
    digits = -(-width // 4)
    flipped = np.ascontiguousarray(words_bytes[:, ::-1])
    text = np.frombuffer(binascii.hexlify(flipped.tobytes()), dtype="S1")
    text = text.reshape(n_words, 2 * n_bytes)[:, 2 * n_bytes - digits:]
    lines = np.concatenate([text, np.full((n_words, 1), b"\n", dtype="S1")], axis=1)
    return lines.tobytes()
