"""What ``linear`` and ``conv2d`` share: FleXOR or plain integer weights, their constants and
the exact sums ``S_i = Σ_f B_i[o, f] · x[f]`` (docs/design.md, the arithmetic contract).

Weights come in two kinds:

- ``flexor``: q bit-planes, each decrypted by its M⊕ from ``encrypted`` slices (global over the
  PyTorch-order weight tensor), scaled by ``alpha [q, out]``;
- ``int``: one plane of ``bits``-bit integers ``weight`` scaled per output channel by
  ``weight_scale`` (first/last layers, full-precision layers of imported checkpoints).
  Internally ``alpha`` is ``weight_scale[None]`` and ``q = 1``, so both kinds meet one contract.
"""

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ..errors import PackageError
from ..limits import MAX_N_OUT, MAX_Q
from ..xor import decrypt_plane
from .base import (Node, QuantFormat, check_acc, check_array, fixed, is_int, round_const,
                   signed_width, value_width, requantize)

__all__ = ["LayerConstants", "WeightedNode", "fold_batchnorm", "int_weights"]

_EXACT_F32 = 2 ** 24    # float32 BLAS is exact while every partial sum stays below this
_EXACT_F64 = 2 ** 53


@dataclass(frozen=True, eq=False)
class LayerConstants:
    """Everything the datapath of one weighted node needs: constants, ranges and widths.

    Attributes
    ----------
    frac_bits : int
        F.
    A : numpy.ndarray
        int64 ``[q, out]`` scaled α.
    beta : numpy.ndarray
        int64 ``[out]`` scaled bias.
    x_lo, x_hi : int
        Range of the node's integer input.
    s_lo, s_hi : int
        Range of every ``S_i[o]``.
    acc_lo, acc_hi : int
        Range of ``acc[o] + round`` over all rows and inputs.
    round_const : int
        ``⌊2^(F−1)⌋``.
    y_lo, y_hi : int
        Clamp limits of the output (ReLU folded in).
    """

    frac_bits: int
    A: np.ndarray
    beta: np.ndarray
    x_lo: int
    x_hi: int
    s_lo: int
    s_hi: int
    acc_lo: int
    acc_hi: int
    round_const: int
    y_lo: int
    y_hi: int

    @property
    def x_shape(self):
        return value_width(self.x_lo, self.x_hi)

    @property
    def s_width(self):
        return signed_width(self.s_lo, self.s_hi)

    @property
    def a_width(self):
        return signed_width(min(0, int(self.A.min())), max(0, int(self.A.max())))

    @property
    def beta_width(self):
        return signed_width(min(0, int(self.beta.min())), max(0, int(self.beta.max())))

    @property
    def acc_width(self):
        return signed_width(self.acc_lo, self.acc_hi)

    @property
    def y_shape(self):
        return value_width(self.y_lo, self.y_hi)

    def widths(self):
        """Datapath widths, as written to build manifests."""
        return {"x": list(self.x_shape), "s": self.s_width, "alpha_const": self.a_width,
                "bias_const": self.beta_width, "acc": self.acc_width, "y": list(self.y_shape)}


def check_flexor_spec(spec, where):
    """Validate ``q, n_in, n_out, n_tap`` of FleXOR weights (a manifest object holding them)."""
    for key, top in (("q", MAX_Q), ("n_in", MAX_N_OUT), ("n_out", MAX_N_OUT)):
        if not is_int(spec[key]) or not 0 < spec[key] <= top:
            raise PackageError(f"manifest: {where} {key} must be an integer from 1 to {top}, "
                               f"not {spec[key]!r}")
    if spec["n_in"] > spec["n_out"]:
        raise PackageError(f"manifest: {where} n_in ({spec['n_in']}) must not exceed "
                           f"n_out ({spec['n_out']})")
    n_tap = spec["n_tap"]
    if n_tap is not None and (not is_int(n_tap) or not 1 <= n_tap <= spec["n_in"]):
        raise PackageError(f"manifest: {where} n_tap must be null or an integer from 1 to "
                           f"n_in ({spec['n_in']}), not {n_tap!r}")
    return {"q": spec["q"], "n_in": spec["n_in"], "n_out": spec["n_out"], "n_tap": n_tap}


@dataclass(eq=False)
class WeightedNode(Node):
    """Common fields of ``linear`` and ``conv2d``. ``int_bits`` is ``None`` for FleXOR
    weights, else the width of plain integer weights (arrays ``weight``, ``alpha`` =
    ``weight_scale[None]``)."""

    name: str
    weight_shape: tuple
    relu: bool
    output: QuantFormat
    q: int = 1
    n_in: "int | None" = None
    n_out: "int | None" = None
    n_tap: "int | None" = None
    xor: "np.ndarray | None" = None
    encrypted: "np.ndarray | None" = None
    alpha: "np.ndarray | None" = None
    bias: "np.ndarray | None" = None
    inputs: tuple = ("input",)
    int_bits: "int | None" = None
    weight: "np.ndarray | None" = None
    _memo: dict = field(default_factory=dict, repr=False)

    weighted = True

    # -- shape and storage ------------------------------------------------------------------

    @property
    def is_flexor(self):
        return self.int_bits is None

    @property
    def out_features(self):
        return int(self.weight_shape[0])

    @property
    def fan_in(self):
        return math.prod(int(d) for d in self.weight_shape[1:])

    @property
    def numel(self):
        return self.out_features * self.fan_in

    @property
    def n_slices(self):
        return -(-self.numel // self.n_out) if self.is_flexor else None

    @property
    def bits_per_weight(self):
        return self.q * self.n_in / self.n_out if self.is_flexor else float(self.int_bits)

    @property
    def stored_bits(self):
        return self.q * self.n_slices * self.n_in if self.is_flexor \
            else self.numel * self.int_bits

    @property
    def weight_scale(self):
        return None if self.is_flexor else self.alpha[0]

    @cached_property
    def weight_bits(self):
        """Decrypted bits ``uint8 [q, out, fan_in]`` (1 ↔ +1, 0 ↔ −1) of FleXOR weights."""
        planes = [decrypt_plane(self.xor[i], self.encrypted[i], self.numel)
                  for i in range(self.q)]
        return np.stack(planes).reshape(self.q, self.out_features, self.fan_in)

    def planes(self):
        """Integer weights of each plane, int64 ``[q, out, fan_in]``: ±1 or ``weight``."""
        if "planes" not in self._memo:
            if self.is_flexor:
                p = self.weight_bits.astype(np.int64) * 2 - 1
            else:
                p = self.weight.astype(np.int64).reshape(1, self.out_features, self.fan_in)
            self._memo["planes"] = p
        return self._memo["planes"]

    def weights(self):
        """Real-valued weights ``Σ_i α_i[o] · W_i`` as float64 ``[out, fan_in]``."""
        return np.einsum("io,ioc->oc", self.alpha.astype(np.float64),
                         self.planes().astype(np.float64))

    # -- manifest and arrays ----------------------------------------------------------------

    @classmethod
    def _parse_weights(cls, entry, where):
        spec = entry.get("weights")
        if not isinstance(spec, dict) or spec.get("kind") not in ("flexor", "int"):
            raise PackageError(f"manifest: {where} weights must be an object with kind "
                               f"'flexor' or 'int', not {spec!r}")
        if spec["kind"] == "int":
            bits = spec.get("bits")
            if not is_int(bits) or not 2 <= bits <= 16:
                raise PackageError(f"manifest: {where} weights.bits must be an integer from "
                                   f"2 to 16, not {bits!r}")
            return {"int_bits": bits}
        for key in ("q", "n_in", "n_out", "n_tap"):
            if key not in spec:
                raise PackageError(f"manifest: {where} weights has no {key!r}")
        return check_flexor_spec(spec, where)

    @classmethod
    def _parse_common(cls, entry, where, ndim, shape_text):
        for key in ("weight_shape", "weights", "relu", "output"):
            if key not in entry:
                raise PackageError(f"manifest: {where} has no {key!r}")
        ws = entry["weight_shape"]
        if not isinstance(ws, list) or len(ws) != ndim or not all(is_int(s) and s > 0
                                                                  for s in ws):
            raise PackageError(f"manifest: {where} weight_shape must be {shape_text} of "
                               f"positive integers, not {ws!r}")
        if not isinstance(entry["relu"], bool):
            raise PackageError(f"manifest: {where} relu must be true or false")
        output = QuantFormat.from_json(entry["output"], f"{where} output")
        return dict(name=entry["name"], inputs=tuple(entry["inputs"]), weight_shape=tuple(ws),
                    relu=entry["relu"], output=output, **cls._parse_weights(entry, where))

    def weights_json(self):
        if self.is_flexor:
            return {"kind": "flexor", "q": self.q, "n_in": self.n_in, "n_out": self.n_out,
                    "n_tap": self.n_tap}
        return {"kind": "int", "bits": self.int_bits}

    def to_json(self):
        return {**self.base_json(), "weight_shape": list(self.weight_shape),
                "weights": self.weights_json(), "relu": self.relu,
                "output": self.output.to_json(), **self.extra_json()}

    def extra_json(self):
        return {}

    def members(self):
        if self.is_flexor:
            out = {"xor": self.xor.astype(np.uint8), "encrypted": self.encrypted.astype(np.uint8),
                   "alpha": self.alpha.astype(np.float32)}
        else:
            out = {"weight": np.asarray(self.weight).astype(
                       np.int8 if self.int_bits <= 8 else np.int16),
                   "weight_scale": self.alpha[0].astype(np.float32)}
        out["bias"] = self.bias.astype(np.float32)
        return out

    def member_names(self):
        return (("xor", "encrypted", "alpha") if self.is_flexor else
                ("weight", "weight_scale")) + ("bias",)

    def read_members(self, prefix, get, has):
        if self.is_flexor:
            self.xor, self.encrypted, self.alpha = (get(prefix + m) for m in
                                                    ("xor", "encrypted", "alpha"))
        else:
            self.weight = get(prefix + "weight")
            self.alpha = get(prefix + "weight_scale")
        self.bias = get(prefix + "bias") if has(prefix + "bias") else \
            np.zeros(self.out_features, np.float32)

    def check_arrays(self, prefix):
        """Validate and canonicalize the arrays; ``prefix`` names the members in errors."""
        self._memo.clear()
        self.__dict__.pop("weight_bits", None)
        out = self.out_features
        if self.is_flexor:
            q, n_in, n_out = self.q, self.n_in, self.n_out
            self.xor = check_array(prefix + "xor", self.xor, (q, n_out, n_in), binary=True)
            self.encrypted = check_array(prefix + "encrypted", self.encrypted,
                                         (q, self.n_slices, n_in), binary=True)
            self.alpha = check_array(prefix + "alpha", self.alpha, (q, out), floating=True)
            if self.n_tap is not None:
                taps = self.xor.sum(axis=2)
                bad = np.argwhere(taps != self.n_tap)
                if bad.size:
                    i, r = bad[0]
                    raise PackageError(f"member {prefix + 'xor'!r}: row {r} of bit-plane {i} "
                                       f"has {taps[i, r]} ones, expected n_tap = {self.n_tap}")
        else:
            top = (1 << (self.int_bits - 1)) - 1
            self.weight = check_array(prefix + "weight", self.weight, self.weight_shape,
                                      int_range=(-top - 1, top))
            scale = np.asarray(self.alpha)
            if scale.ndim == 2 and scale.shape[0] == 1:      # alpha form, [1, out]
                scale = scale[0]
            self.alpha = check_array(prefix + "weight_scale", scale, (out,), floating=True)[None]
            self.q = 1
        self.bias = check_array(prefix + "bias", self.bias, (out,), floating=True)

    # -- the arithmetic contract ------------------------------------------------------------

    def _s_rows(self, x_lo, x_hi):
        """Exact ``[lo, hi]`` of every ``S_i[o]``: int64 ``[q, out]`` each."""
        if self.is_flexor:
            s_max = self.fan_in * max(abs(x_lo), abs(x_hi))
            full = np.full((self.q, self.out_features), s_max, np.int64)
            return -full, full
        w = self.planes()
        pos, neg = np.maximum(w, 0).sum(axis=2), np.minimum(w, 0).sum(axis=2)
        return pos * x_lo + neg * x_hi, pos * x_hi + neg * x_lo

    def constants(self, in_formats, in_shapes, frac_bits):
        """Hardware constants and widths for input format ``in_formats[0]`` (docs/design.md)."""
        (fin,), fout = in_formats, self.output
        A = fixed(self.name, "alpha", self.alpha.astype(np.float64) * (fin.scale / fout.scale),
                  frac_bits)
        beta = fixed(self.name, "bias", self.bias.astype(np.float64) / fout.scale, frac_bits)
        rc = round_const(frac_bits)
        s_lo, s_hi = self._s_rows(fin.lo, fin.hi)
        # Exact per-row extremes of Σ_i A_i·S_i + β + round, in Python ints (no overflow).
        A_obj = A.astype(object)
        lo_rows = beta.astype(object) + rc
        hi_rows = beta.astype(object) + rc
        for i in range(self.q):
            a, b = A_obj[i] * s_lo[i].astype(object), A_obj[i] * s_hi[i].astype(object)
            lo_rows = lo_rows + np.minimum(a, b)
            hi_rows = hi_rows + np.maximum(a, b)
        acc_lo, acc_hi = int(min(lo_rows)), int(max(hi_rows))
        check_acc(self.name, acc_lo, acc_hi, frac_bits)
        y_lo = max(fout.lo, 0) if self.relu else fout.lo
        return LayerConstants(frac_bits=frac_bits, A=A, beta=beta, x_lo=fin.lo, x_hi=fin.hi,
                              s_lo=int(s_lo.min()), s_hi=int(s_hi.max()), acc_lo=acc_lo,
                              acc_hi=acc_hi, round_const=rc, y_lo=y_lo, y_hi=fout.hi)

    def _plane_matrix(self, dtype):
        """``[fan_in, q·out]`` in ``dtype``: every plane side by side, for one product."""
        key = ("matrix", np.dtype(dtype).str)
        if key not in self._memo:
            p = self.planes()
            self._memo[key] = np.ascontiguousarray(
                p.transpose(2, 0, 1).reshape(self.fan_in, self.q * self.out_features),
                dtype=dtype)
        return self._memo[key]

    def _exact_dtype(self, x_max):
        """The narrowest product type in which ``Σ_f W[o, f]·x[f]`` is exact for ``|x| ≤
        x_max``: every partial sum is an integer below ``fan_in · max|W| · x_max``, and such
        integers add exactly in float32 below 2^24 and in float64 below 2^53, in any order."""
        if "w_max" not in self._memo:
            self._memo["w_max"] = int(np.abs(self.planes()).max(initial=0))
        bound = self.fan_in * self._memo["w_max"] * int(x_max)
        return np.float32 if bound < _EXACT_F32 else np.float64 if bound < _EXACT_F64 \
            else np.int64

    def binary_sums(self, cols, x_max=None):
        """``S`` for rows of fan-in vectors ``cols [n, fan_in]``: int64 ``[q, n, out]``, exact.

        ``x_max`` bounds ``|cols|`` (computed when not given); float32 BLAS is used while
        every partial sum stays below 2^24, float64 below 2^53, int64 beyond.
        """
        if x_max is None:
            x_max = int(np.abs(cols).max(initial=0))
        dtype = self._exact_dtype(x_max)
        s = np.matmul(cols.astype(dtype, copy=False), self._plane_matrix(dtype))
        s = s.astype(np.int64).reshape(len(cols), self.q, self.out_features)
        return s.transpose(1, 0, 2)

    def binary_sums_t(self, cols_t, x_max):
        """``S`` for columns of fan-in vectors ``cols_t [fan_in, n]``: int64 ``[q, out, n]``,
        exact (see :meth:`binary_sums`); the product ``W · colsᵀ`` keeps each output channel's
        values contiguous."""
        dtype = self._exact_dtype(x_max)
        w = self._plane_matrix(dtype).T                   # [q·out, fan_in], a view
        s = np.matmul(w, cols_t.astype(dtype, copy=False)).astype(np.int64)
        return s.reshape(self.q, self.out_features, cols_t.shape[1])

    def requantize_cols(self, S, consts):
        """:meth:`requantize_rows` for ``S [q, out, n]`` → ``[out, n]``."""
        return self._requantize(S, consts.A[:, :, None], consts.beta[:, None], consts)

    def requantize_rows(self, S, consts):
        """``y = clamp((Σ_i A_i·S_i + β + round) >> F)``: ``S [q, n, out]`` → ``[n, out]``."""
        return self._requantize(S, consts.A[:, None, :], consts.beta[None, :], consts)

    @staticmethod
    def _requantize(S, A, beta, consts):
        """``Σ_i A_i·S_i + β`` into one int64 buffer, then the contract's requantization."""
        acc = np.multiply(S[0], A[0], dtype=np.int64)
        for i in range(1, len(S)):
            acc += S[i] * A[i]
        acc += beta
        return requantize(acc, consts.frac_bits, consts.y_lo, consts.y_hi)

    def affine_float(self, cols):
        """Float reference of the weighted sum: ``cols [n, fan_in]`` → ``[n, out]``."""
        z = cols @ self.weights().T + self.bias.astype(np.float64)
        return np.maximum(z, 0) if self.relu else z


def fold_batchnorm(node, gamma, beta, mean, var, eps=1e-5):
    """Fold an inference BatchNorm that follows ``node`` into its α and bias, in place:
    ``g = γ/√(var+ε)``, ``α' = α·g``, ``bias' = (bias − μ)·g + β`` (a negative γ gives a
    negative α, which the contract allows)."""
    gamma, beta, mean, var = (np.asarray(v, np.float64).reshape(-1)
                              for v in (gamma, beta, mean, var))
    if not len(gamma) == len(beta) == len(mean) == len(var) == node.out_features:
        raise PackageError(f"node {node.name!r}: BatchNorm has {len(gamma)} channels, expected "
                           f"{node.out_features}")
    if (var < 0).any() or not all(np.isfinite(v).all() for v in (gamma, beta, mean, var)):
        raise PackageError(f"node {node.name!r}: BatchNorm statistics hold negative variances, "
                           f"NaN or infinite values")
    g = gamma / np.sqrt(var + eps)
    node.alpha = (np.asarray(node.alpha, np.float64) * g[None]).astype(np.float32)
    node.bias = ((np.asarray(node.bias, np.float64) - mean) * g + beta).astype(np.float32)
    node._memo.clear()
    return node


def int_weights(weight, bits=8):
    """Per-output-channel symmetric quantization of float weights: ``(W_int, scale)`` with
    ``W ≈ scale[o] · W_int[o, ...]``, ``|W_int| ≤ 2^(bits−1) − 1``."""
    w = np.asarray(weight, np.float64)
    top = (1 << (bits - 1)) - 1
    peak = np.abs(w.reshape(len(w), -1)).max(axis=1)
    scale = np.where(peak > 0, peak / top, 1.0)
    w_int = np.clip(np.rint(w / scale.reshape((-1,) + (1,) * (w.ndim - 1))), -top, top)
    return w_int.astype(np.int8 if bits <= 8 else np.int16), scale.astype(np.float32)
