"""FleXOR layers for PyTorch (appendix B of the paper).

Forward: the stored bits are ``sign(e)`` (``e ≥ 0`` ↔ bit 1 ↔ +1) and each decrypted weight is an
XOR of them; in the ±1 domain an XOR of ``n`` inputs is ``(−1)^(n+1) · Π sign(x_j)`` (Table 1).
Backward (Eq. 5): ``∂y/∂x_j = (−1)^(n+1) · S_tanh · (1 − tanh²(x_j·S_tanh)) · Π_{k≠j} sign(x_k)``,
which equals ``y · sign(x_j) · S_tanh · (1 − tanh²(x_j·S_tanh))`` because every sign is ±1.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..xor import make_xor_matrix

__all__ = ["XorDecrypt", "FlexorWeight", "FlexorLinear", "FlexorConv2d", "IntLinear", "IntConv2d",
           "int_quantize", "s_tanh_schedule", "BitwiseSoftQuantizer"]


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


class FlexorWeight(nn.Module):
    """A weight tensor of any ``shape`` (PyTorch order) as ``Σ_i α_i[o] · B_i``.

    ``B_i`` is decrypted by M⊕_i from the slices of the flattened tensor (slices are global, as
    in the package format). Parameters: ``encrypted`` ``[q, n_slices, n_in]`` (real; the stored
    bit is its sign) and ``alpha`` ``[q, out]``; ``xor`` ``[q, n_out, n_in]`` is a fixed buffer,
    one M⊕ per bit-plane, ``n_tap`` ones per row (``None``: random fill), seeded.
    """

    def __init__(self, shape, *, q=1, n_in=6, n_out=10, n_tap=2, seed=0, s_tanh=100.0):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.q, self.n_in, self.n_out, self.n_tap = q, n_in, n_out, n_tap
        self.s_tanh = s_tanh
        self.numel = math.prod(self.shape)
        self.n_slices = -(-self.numel // n_out)
        rng = np.random.default_rng(seed)
        mats = np.stack([make_xor_matrix(n_out, n_in, n_tap, seed=int(rng.integers(2 ** 31)))
                         for _ in range(q)])
        self.register_buffer("xor", torch.tensor(mats, dtype=torch.float32))
        gen = torch.Generator().manual_seed(seed)
        init = (torch.rand(q, self.n_slices, n_in, generator=gen) * 2 - 1) * (1.0 / s_tanh)
        self.encrypted = nn.Parameter(init)
        scale = 1.0 / math.sqrt(self.numel // self.shape[0])
        self.alpha = nn.Parameter(torch.full((q, self.shape[0]), scale) *
                                  (0.5 ** torch.arange(q, dtype=torch.float32))[:, None])

    def signs(self):
        """Decrypted ±1 weights ``[q, *shape]``."""
        planes = [XorDecrypt.apply(self.encrypted[i], self.xor[i], self.s_tanh)
                  .reshape(-1)[:self.numel].reshape(self.shape) for i in range(self.q)]
        return torch.stack(planes)

    def forward(self):
        alpha = self.alpha.reshape(self.q, self.shape[0], *([1] * (len(self.shape) - 1)))
        return (alpha * self.signs()).sum(dim=0)

    def stored_bits(self):
        """The stored bits ``uint8 [q, n_slices, n_in]`` (1 ↔ ``encrypted ≥ 0``)."""
        return (self.encrypted.detach() >= 0).to(torch.uint8).numpy()

    @property
    def bits_per_weight(self):
        return self.q * self.n_in / self.n_out


class _FlexorLayer(nn.Module):
    """Shared parts of :class:`FlexorLinear` and :class:`FlexorConv2d`."""

    def _init_flexor(self, shape, q, n_in, n_out, n_tap, seed, s_tanh, bias):
        self.flexor = FlexorWeight(shape, q=q, n_in=n_in, n_out=n_out, n_tap=n_tap, seed=seed,
                                   s_tanh=s_tanh)
        self.bias = nn.Parameter(torch.zeros(shape[0])) if bias else None

    # The encrypted weights by the names the package uses.
    q = property(lambda self: self.flexor.q)
    n_in = property(lambda self: self.flexor.n_in)
    n_out = property(lambda self: self.flexor.n_out)
    n_tap = property(lambda self: self.flexor.n_tap)
    xor = property(lambda self: self.flexor.xor)
    encrypted = property(lambda self: self.flexor.encrypted)
    alpha = property(lambda self: self.flexor.alpha)
    bits_per_weight = property(lambda self: self.flexor.bits_per_weight)

    @property
    def s_tanh(self):
        return self.flexor.s_tanh

    @s_tanh.setter
    def s_tanh(self, value):
        self.flexor.s_tanh = value

    def signs(self):
        return self.flexor.signs()


class FlexorLinear(_FlexorLayer):
    """Linear layer whose weights ``[out, in]`` are a :class:`FlexorWeight`."""

    def __init__(self, in_features, out_features, *, q=1, n_in=6, n_out=10, n_tap=2, seed=0,
                 s_tanh=100.0, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._init_flexor((out_features, in_features), q, n_in, n_out, n_tap, seed, s_tanh,
                          bias)

    def weight(self):
        return self.flexor()

    def forward(self, x):
        return F.linear(x, self.flexor(), self.bias)

    def extra_repr(self):
        return (f"{self.in_features}, {self.out_features}, q={self.q}, n_in={self.n_in}, "
                f"n_out={self.n_out}, n_tap={self.n_tap}")


class FlexorConv2d(_FlexorLayer):
    """2-D convolution (groups = 1) whose weights ``[out, in, kh, kw]`` are a
    :class:`FlexorWeight`: slices run over the flattened PyTorch-order tensor, so the fan-in
    order of a slice is ``(c, ky, kx)``, as the package and the hardware expect."""

    def __init__(self, in_channels, out_channels, kernel_size, *, stride=1, padding=0, q=1,
                 n_in=6, n_out=10, n_tap=2, seed=0, s_tanh=100.0, bias=True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = (_pair(kernel_size), _pair(stride),
                                                       _pair(padding))
        self._init_flexor((out_channels, in_channels, *self.kernel_size), q, n_in, n_out,
                          n_tap, seed, s_tanh, bias)

    def weight(self):
        return self.flexor()

    def forward(self, x):
        return F.conv2d(x, self.flexor(), self.bias, self.stride, self.padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, q={self.q}, n_in={self.n_in}, "
                f"n_out={self.n_out}, n_tap={self.n_tap}")


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value), int(value))


class _RoundSte(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def int_quantize(weight, bits=8):
    """Per-output-channel symmetric quantization: ``(W_int, scale)`` with
    ``W ≈ scale[o] · W_int[o, ...]``, ``|W_int| ≤ 2^(bits−1) − 1`` (straight-through rounding)."""
    top = (1 << (bits - 1)) - 1
    peak = weight.detach().abs().reshape(weight.shape[0], -1).amax(dim=1).clamp_min(1e-12)
    scale = peak / top
    shape = (-1,) + (1,) * (weight.dim() - 1)
    return torch.clamp(_RoundSte.apply(weight / scale.reshape(shape)), -top, top), scale


class _IntLayer(nn.Module):
    """Weights trained in float and used through their ``bits``-bit per-channel quantization
    (fake quantization, straight-through), so training sees what the package will hold."""

    def quantized_weight(self):
        w_int, scale = int_quantize(self.weight, self.bits)
        return w_int * scale.reshape((-1,) + (1,) * (self.weight.dim() - 1))


class IntLinear(_IntLayer):
    """Linear layer with ``bits``-bit per-channel weights (first/last layers)."""

    def __init__(self, in_features, out_features, *, bits=8, bias=True):
        super().__init__()
        ref = nn.Linear(in_features, out_features, bias=bias)
        self.in_features, self.out_features, self.bits = in_features, out_features, bits
        self.weight = ref.weight
        self.bias = ref.bias

    def forward(self, x):
        return F.linear(x, self.quantized_weight(), self.bias)


class IntConv2d(_IntLayer):
    """2-D convolution with ``bits``-bit per-channel weights (first/last layers)."""

    def __init__(self, in_channels, out_channels, kernel_size, *, stride=1, padding=0, bits=8,
                 bias=True):
        super().__init__()
        ref = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                        bias=bias)
        self.in_channels, self.out_channels, self.bits = in_channels, out_channels, bits
        self.kernel_size, self.stride, self.padding = ref.kernel_size, ref.stride, ref.padding
        self.weight = ref.weight
        self.bias = ref.bias

    def forward(self, x):
        return F.conv2d(x, self.quantized_weight(), self.bias, self.stride, self.padding)


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
