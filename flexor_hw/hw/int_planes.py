"""An int node seen as FleXOR weights: its two's complement bit-planes with identity M⊕."""

from dataclasses import replace

import numpy as np

__all__ = ["IntPlanes"]


class IntPlanes:
    """A plain int layer seen as the engine's layer: its weights' two's complement bit-planes,
    ``bits`` of them, each stored as it is (identity M⊕, slices of ``slice_bits`` weights).

    With unipolar planes (``S_b = T_b = Σ_{bit=1} x``, no ``2T − Σx``) and constants
    ``A_b = A·2^b`` (``−A·2^(bits−1)`` for the sign plane), the MAC's ``Σ_b A_b·T_b`` is
    ``A·Σ_f W[o, f]·x[f]`` exactly: the same contract, the same verified datapath, no
    multipliers per lane.
    """

    def __init__(self, node, slice_bits=8):
        self.node = node
        self.name, self.op = node.name, node.op
        self.weight_shape = node.weight_shape
        self.q = node.int_bits
        self.n_in = self.n_out = slice_bits
        self.n_tap = 1
        self.out_features, self.fan_in, self.numel = node.out_features, node.fan_in, node.numel
        self.n_slices = -(-self.numel // slice_bits)
        self.bits_per_weight = float(node.int_bits)
        self.stored_bits = node.stored_bits
        self.xor = np.broadcast_to(np.eye(slice_bits, dtype=np.uint8),
                                   (self.q, slice_bits, slice_bits))
        w = node.weight.astype(np.int64).reshape(-1) & ((1 << self.q) - 1)
        bits = (w[None, :] >> np.arange(self.q)[:, None]) & 1           # [q, numel]
        padded = np.zeros((self.q, self.n_slices * slice_bits), np.uint8)
        padded[:, :self.numel] = bits
        self.encrypted = padded.reshape(self.q, self.n_slices, slice_bits)

    def constants(self, consts):
        """The engine's constants: ``A_b`` per plane, unipolar ``S`` ranges, and accumulator
        bounds that hold for every partial sum of ``Σ_b A_b·T_b + β``."""
        from ..ops.base import check_acc
        weights = np.array([1 << b for b in range(self.q - 1)] + [-(1 << (self.q - 1))],
                           dtype=object)
        A = (consts.A[0].astype(object)[None, :] * weights[:, None])
        s_lo, s_hi = self.fan_in * min(0, consts.x_lo), self.fan_in * max(0, consts.x_hi)
        lo = consts.beta.astype(object) + consts.round_const
        hi = lo.copy()
        for b in range(self.q):
            lo = lo + np.minimum(A[b] * s_lo, A[b] * s_hi)
            hi = hi + np.maximum(A[b] * s_lo, A[b] * s_hi)
        acc_lo, acc_hi = int(min(lo)), int(max(hi))
        check_acc(self.name, acc_lo, acc_hi, consts.frac_bits)
        return replace(consts, A=A.astype(np.int64), s_lo=s_lo, s_hi=s_hi, acc_lo=acc_lo,
                       acc_hi=acc_hi)
