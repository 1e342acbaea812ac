"""FleXOR layers for PyTorch (appendix B of the paper).

Forward: the stored bits are ``sign(e)`` (``e ≥ 0`` ↔ bit 1 ↔ +1) and each decrypted weight is an
XOR of them; in the ±1 domain an XOR of ``n`` inputs is ``(−1)^(n+1) · Π sign(x_j)`` (Table 1).
Backward (Eq. 5): ``∂y/∂x_j = (−1)^(n+1) · S_tanh · (1 − tanh²(x_j·S_tanh)) · Π_{k≠j} sign(x_k)``,
which equals ``y · sign(x_j) · S_tanh · (1 − tanh²(x_j·S_tanh))`` because every sign is ±1.
"""

import math

import numpy as np
import torch
from torch import nn

from ..xor import make_xor_matrix

__all__ = ["XorDecrypt", "FlexorLinear", "s_tanh_schedule"]


def _sign(x):
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


class XorDecrypt(torch.autograd.Function):
    """``[n_slices, n_in]`` real encrypted weights → ``[n_slices, n_out]`` ±1 decrypted bits."""

    @staticmethod
    def forward(ctx, encrypted, matrix, s_tanh):
        negative = (encrypted < 0).to(encrypted.dtype)
        taps = matrix.sum(dim=1)                                 # [n_out]
        parity = torch.remainder(negative @ matrix.t(), 2)       # Π sign = 1 − 2·parity
        prod = 1 - 2 * parity
        out = torch.where(torch.remainder(taps + 1, 2) == 0, prod, -prod)
        ctx.save_for_backward(encrypted, matrix, out)
        ctx.s_tanh = float(s_tanh)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        encrypted, matrix, out = ctx.saved_tensors
        s = ctx.s_tanh
        local = _sign(encrypted) * s * (1 - torch.tanh(encrypted * s) ** 2)
        grad = ((grad_out * out) @ matrix) * local
        return grad, None, None


def s_tanh_schedule(step, total, start=10.0, end=100.0):
    """Geometric ramp of S_tanh from ``start`` to ``end`` over ``total`` steps."""
    t = min(max(step / max(total - 1, 1), 0.0), 1.0)
    return start * (end / start) ** t


class FlexorLinear(nn.Module):
    """Linear layer whose weights are ``Σ_i α_i[o] · B_i`` with ``B_i`` decrypted by M⊕_i.

    Parameters: ``encrypted`` ``[q, n_slices, n_in]`` (real; the stored bit is its sign),
    ``alpha`` ``[q, out]``, ``bias`` ``[out]``. ``xor`` ``[q, n_out, n_in]`` is a fixed buffer,
    one M⊕ per bit-plane, ``n_tap`` ones per row (``None``: random fill), seeded.
    """

    def __init__(self, in_features, out_features, *, q=1, n_in=6, n_out=10, n_tap=2, seed=0,
                 s_tanh=100.0, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.q, self.n_in, self.n_out, self.n_tap = q, n_in, n_out, n_tap
        self.s_tanh = s_tanh
        numel = in_features * out_features
        self.n_slices = -(-numel // n_out)
        rng = np.random.default_rng(seed)
        mats = np.stack([make_xor_matrix(n_out, n_in, n_tap, seed=int(rng.integers(2 ** 31)))
                         for _ in range(q)])
        self.register_buffer("xor", torch.tensor(mats, dtype=torch.float32))
        gen = torch.Generator().manual_seed(seed)
        init = (torch.rand(q, self.n_slices, n_in, generator=gen) * 2 - 1) * (1.0 / s_tanh)
        self.encrypted = nn.Parameter(init)
        scale = 1.0 / math.sqrt(in_features)
        self.alpha = nn.Parameter(torch.full((q, out_features), scale) *
                                  (0.5 ** torch.arange(q, dtype=torch.float32))[:, None])
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def signs(self):
        """Decrypted ±1 weights ``[q, out, in]``."""
        numel = self.in_features * self.out_features
        planes = [XorDecrypt.apply(self.encrypted[i], self.xor[i], self.s_tanh)
                  .reshape(-1)[:numel].reshape(self.out_features, self.in_features)
                  for i in range(self.q)]
        return torch.stack(planes)

    def weight(self):
        return torch.einsum("io,ioc->oc", self.alpha, self.signs())

    def forward(self, x):
        out = x @ self.weight().t()
        return out + self.bias if self.bias is not None else out

    @property
    def bits_per_weight(self):
        return self.q * self.n_in / self.n_out

    def extra_repr(self):
        return (f"{self.in_features}, {self.out_features}, q={self.q}, n_in={self.n_in}, "
                f"n_out={self.n_out}, n_tap={self.n_tap}")


class BitwiseSoftQuantizer(nn.Module):
    """Input feature compression (Schrödter et al. 2026): ``b`` trainable thresholds per
    feature; training uses ``sigmoid((x − t)·sharpness)``, inference the hard step ``x ≥ t``.

    Output ``[batch, features·b]``, feature-major, like the hardware quantizer.
    Thresholds start at evenly spaced quantiles of ``init_data`` when it is given.
    """

    def __init__(self, features, bits, *, init_data=None, sharpness=10.0):
        super().__init__()
        self.features, self.bits = features, bits
        self.sharpness = sharpness
        if init_data is not None:
            data = torch.as_tensor(np.asarray(init_data), dtype=torch.float32)
            qs = torch.linspace(0, 1, bits + 2)[1:-1]
            init = torch.quantile(data, qs, dim=0).t().contiguous()       # [features, bits]
        else:
            init = torch.linspace(-1, 1, bits + 2)[1:-1].repeat(features, 1)
        self.thresholds = nn.Parameter(init)

    def forward(self, x):
        d = x[:, :, None] - self.thresholds[None]
        if self.training:
            out = torch.sigmoid(d * self.sharpness)
        else:
            out = (d >= 0).to(x.dtype)
        return out.reshape(x.shape[0], -1)
