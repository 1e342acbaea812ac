"""XOR decoders: the FleXOR decryption network M⊕ in gates."""

from functools import reduce

import numpy as np
from amaranth.hdl import Const, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..xor import xor_gate_count

__all__ = ["XorDecoder", "XorDecoderArray"]


def _matrix(matrix, name="matrix"):
    m = np.asarray(matrix)
    if m.ndim != 2 or m.size == 0:
        raise TypeError(f"{name.capitalize()} must be a non-empty 2-d 0/1 array, "
                        f"not shape {list(m.shape)}")
    if not np.isin(m, (0, 1)).all():
        raise ValueError(f"{name.capitalize()} must hold only 0 and 1")
    n_out, n_in = m.shape
    if n_in > n_out:
        raise ValueError(f"{name.capitalize()} has n_in ({n_in}) greater than n_out ({n_out})")
    return tuple(tuple(int(v) for v in row) for row in m)


class XorDecoder(wiring.Component):
    """One M⊕: ``o[r] = ⊕_j M[r, j] · i[j]``, purely combinational.

    On LUT FPGAs a row with at most 4 taps is one LUT4, so the floor is one LUT per output.

    Parameters
    ----------
    matrix : array ``[n_out, n_in]`` of 0/1

    Attributes
    ----------
    i : In(n_in)
        Stored (encrypted) bits.
    o : Out(n_out)
        Decrypted weight bits (1 ↔ +1).
    """

    def __init__(self, matrix):
        self._matrix = _matrix(matrix)
        super().__init__({"i": In(self.n_in), "o": Out(self.n_out)})

    @property
    def matrix(self):
        return np.array(self._matrix, dtype=np.uint8)

    @property
    def n_in(self):
        return len(self._matrix[0])

    @property
    def n_out(self):
        return len(self._matrix)

    @property
    def xor_gates(self):
        """Two-input XOR gates: ``Σ max(taps − 1, 0)``."""
        return xor_gate_count(self._matrix)

    def elaborate(self, platform):
        m = Module()
        for r, row in enumerate(self._matrix):
            taps = [self.i[j] for j, bit in enumerate(row) if bit]
            m.d.comb += self.o[r].eq(reduce(lambda a, b: a ^ b, taps) if taps else Const(0, 1))
        return m


class XorDecoderArray(wiring.Component):
    """``q`` bit-planes × ``lanes`` decoders side by side; plane ``p`` uses its own M⊕.

    Bit layout (both ports, LSB first): plane-major, then lane, then bit. Decoder
    ``(p, l)`` reads ``i[(p·lanes + l)·n_in :+ n_in]`` and drives
    ``o[(p·lanes + l)·n_out :+ n_out]``, so ``o`` holds each plane's ``lanes·n_out``
    consecutive weight bits in row-major weight order.

    Parameters
    ----------
    matrices : array ``[q, n_out, n_in]`` of 0/1
    lanes : int
        Decoders per bit-plane.
    """

    def __init__(self, matrices, lanes):
        mats = np.asarray(matrices)
        if mats.ndim != 3 or mats.shape[0] == 0:
            raise TypeError(f"Matrices must be a 3-d 0/1 array [q, n_out, n_in], "
                            f"not shape {list(mats.shape)}")
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes <= 0:
            raise TypeError(f"Lanes must be a positive integer, not {lanes!r}")
        self._matrices = tuple(_matrix(mat) for mat in mats)
        self._lanes = lanes
        q, n_out, n_in = mats.shape
        super().__init__({"i": In(q * lanes * n_in), "o": Out(q * lanes * n_out)})

    @property
    def q(self):
        return len(self._matrices)

    @property
    def lanes(self):
        return self._lanes

    @property
    def n_in(self):
        return len(self._matrices[0][0])

    @property
    def n_out(self):
        return len(self._matrices[0])

    @property
    def xor_gates(self):
        return self._lanes * sum(xor_gate_count(mat) for mat in self._matrices)

    def elaborate(self, platform):
        m = Module()
        for p, mat in enumerate(self._matrices):
            for lane in range(self._lanes):
                dec = XorDecoder(mat)
                m.submodules[f"dec_p{p}_l{lane}"] = dec
                n = p * self._lanes + lane
                m.d.comb += [
                    dec.i.eq(self.i[n * self.n_in:(n + 1) * self.n_in]),
                    self.o[n * self.n_out:(n + 1) * self.n_out].eq(dec.o),
                ]
        return m
