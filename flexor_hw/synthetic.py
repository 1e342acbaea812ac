"""Random valid packages of any shape, so the flow can be tried and tested without training."""

import numpy as np

from .golden import layer_float, quantize_real
from .package import Layer, Package, QuantFormat, chain
from .xor import make_xor_matrix

__all__ = ["random_package", "calibrate_scales"]


def _per_layer(name, value, n_layers):
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n_layers
    if len(values) != n_layers:
        raise ValueError(f"{name} needs one value or {n_layers} values, not {len(values)}")
    return values


def calibrate_scales(package, x_real, *, percentile=99.9):
    """Set each layer's output scale so the given percentile of |output| maps to the top code.

    Runs the float reference layer by layer on ``x_real``; layers keep their bits and sign.
    """
    x = quantize_real(package, x_real)
    for layer in package.layers:
        x = layer_float(layer, x)
        top = float(np.percentile(np.abs(x), percentile)) if x.size else 1.0
        hi = layer.output.hi
        scale = top / hi if top > 0 else 1.0 / hi
        layer.output = QuantFormat(scale, layer.output.bits, layer.output.signed)
    return package


def random_package(features, *, n_in=6, n_out=10, q=1, n_tap=2, seed=0, name="random",
                   input_bits=8, input_signed=False, output_bits=8, negative_alpha=0.1,
                   quantizer_bits=None):
    """A random, calibrated package: ``features = [in, hidden..., out]``.

    ``n_in``, ``n_out``, ``q`` and ``n_tap`` take one value or one per layer (``n_tap=None``
    fills M⊕ randomly). Hidden layers have ReLU and unsigned outputs; the last layer is linear
    with signed outputs. A fraction ``negative_alpha`` of α is negative, to exercise signs.
    ``quantizer_bits = b`` adds an input quantizer: the first layer then sees
    ``features[0] · b`` bits (format version 2).
    """
    features = [int(f) for f in features]
    if len(features) < 2 or min(features) <= 0:
        raise ValueError(f"features must list at least two positive sizes, not {features}")
    n_layers = len(features) - 1
    n_ins = _per_layer("n_in", n_in, n_layers)
    n_outs = _per_layer("n_out", n_out, n_layers)
    qs = _per_layer("q", q, n_layers)
    taps = _per_layer("n_tap", n_tap, n_layers)
    rng = np.random.default_rng(seed)
    inp = QuantFormat(1.0 / ((1 << (input_bits - 1)) if input_signed else (1 << input_bits)),
                      input_bits, input_signed)
    layers = []
    b = quantizer_bits or 1
    for k in range(n_layers):
        fan_in, out = features[k] * (b if k == 0 else 1), features[k + 1]
        last = k == n_layers - 1
        nq = qs[k]
        xor = np.stack([make_xor_matrix(n_outs[k], n_ins[k], taps[k],
                                        seed=int(rng.integers(2 ** 31))) for _ in range(nq)])
        n_slices = -(-out * fan_in // n_outs[k])
        encrypted = rng.integers(0, 2, size=(nq, n_slices, n_ins[k]), dtype=np.uint8)
        magnitude = rng.uniform(0.5, 1.5, size=(nq, out)) / np.sqrt(fan_in)
        magnitude *= 0.5 ** np.arange(nq)[:, None]       # later planes refine earlier ones
        sign = np.where(rng.random((nq, out)) < negative_alpha, -1.0, 1.0)
        alpha = (magnitude * sign).astype(np.float32)
        bias = rng.normal(0, 0.2, size=out).astype(np.float32)
        layers.append(Layer(name=f"fc{k + 1}", weight_shape=(out, fan_in), q=nq,
                            n_in=n_ins[k], n_out=n_outs[k], n_tap=taps[k], relu=not last,
                            output=QuantFormat(1.0, output_bits, last), xor=xor,
                            encrypted=encrypted, alpha=alpha, bias=bias))
    package = Package(name=name, input_shape=(features[0],), input=inp, nodes=chain(layers))
    lo, hi = inp.lo, inp.hi
    if quantizer_bits:
        package.thresholds = np.sort(rng.integers(lo, hi + 2, size=(features[0], b)), axis=1)
    x = rng.integers(lo, hi + 1, size=(256, features[0])) * inp.scale
    calibrate_scales(package, x)
    return package.validate()
