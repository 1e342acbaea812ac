"""Random valid packages of any shape, so the flow can be tried and tested without training."""

import numpy as np

from .calibrate import calibrate_scales
from .errors import InputError
from .limits import MAX_ACTIVATIONS, MAX_N_OUT, MAX_NODES, MAX_Q, MAX_WEIGHTS, count_limit
from .package import Layer, Package, QuantFormat, chain
from .xor import make_xor_matrix

__all__ = ["random_package", "random_graph", "calibrate_scales", "parse_graph_spec"]


def _per_layer(name, value, n_layers):
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n_layers
    if len(values) != n_layers:
        raise InputError(f"{name} needs one value or {n_layers} values, not {len(values)}")
    return values


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_spec(n_ins, n_outs, qs, taps, input_bits, input_signed):
    """Every FleXOR and input parameter within its range, before anything is allocated
    (:class:`InputError`, a ``ValueError``, naming the parameter)."""
    for name, values, top in (("q", qs, MAX_Q), ("n_in", n_ins, MAX_N_OUT),
                              ("n_out", n_outs, MAX_N_OUT)):
        for v in values:
            if not _is_int(v) or not 1 <= v <= top:
                raise InputError(f"{name} must be an integer from 1 to {top}, not {v!r}")
    for n_in, n_out, n_tap in zip(n_ins, n_outs, taps):
        if n_in > n_out:
            raise InputError(f"n_in ({n_in}) must not exceed n_out ({n_out})")
        if n_tap is not None and (not _is_int(n_tap) or not 1 <= n_tap <= n_in):
            raise InputError(f"n_tap must be 'random' or an integer from 1 to n_in ({n_in}), "
                             f"not {n_tap!r}")
    low = 2 if input_signed else 1
    if not _is_int(input_bits) or not low <= input_bits <= 32:
        raise InputError(f"input_bits must be an integer from {low} to 32 for a "
                         f"{'signed' if input_signed else 'unsigned'} input, not {input_bits!r}")


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
        raise InputError(f"features must list at least two positive sizes (input and output), "
                         f"not {features}")
    count_limit("the layer count", len(features) - 1, MAX_NODES)
    n_layers = len(features) - 1
    n_ins = _per_layer("n_in", n_in, n_layers)
    n_outs = _per_layer("n_out", n_out, n_layers)
    qs = _per_layer("q", q, n_layers)
    taps = _per_layer("n_tap", n_tap, n_layers)
    _check_spec(n_ins, n_outs, qs, taps, input_bits, input_signed)
    b = quantizer_bits or 1
    count_limit("the input's value count", features[0] * b, MAX_ACTIVATIONS)
    for k in range(n_layers):
        count_limit(f"layer {k + 1}'s output count", features[k + 1], MAX_ACTIVATIONS)
        count_limit(f"layer {k + 1}'s weight count", features[k + 1] * features[k] * b
                    if k == 0 else features[k + 1] * features[k], MAX_WEIGHTS)
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


_SPEC_HELP = ("comma-separated layers: c<out>k<k>[s<s>][p<p>] conv, fc<out> linear (prefix 'i' "
              "for int8 weights: ic16k3p1, ifc10), mp<k>[s<s>] max pool, gap global average "
              "pool, res<out>[s<s>] a ResNet basic block (two 3×3 convs and a residual add, "
              "option-A shortcut)")


def parse_graph_spec(text):
    """Parse a layer spec such as ``"c8k3p1,mp2,res16s2,gap,ifc10"`` (see ``_SPEC_HELP``) into
    ``[(kind, int8, params)]``."""
    import re
    pattern = re.compile(r"^(?:(?P<i>i?)(?:c(?P<c>\d+)k(?P<k>\d+)(?:s(?P<s>\d+))?(?:p(?P<p>\d+))?"
                         r"|fc(?P<fc>\d+))|mp(?P<mp>\d+)(?:s(?P<ms>\d+))?|(?P<gap>gap)"
                         r"|res(?P<res>\d+)(?:s(?P<rs>\d+))?)$")
    layers = []
    for part in [p.strip() for p in str(text).split(",") if p.strip()]:
        m = pattern.match(part)
        if not m or any(v is not None and v.isdigit() and int(v) == 0 and k != "p"
                        for k, v in m.groupdict().items()):
            raise ValueError(f"layer spec {part!r} is not understood; expected {_SPEC_HELP}")
        g = m.groupdict()
        int8 = g["i"] == "i"
        if g["c"]:
            layers.append(("conv", int8, dict(out=int(g["c"]), k=int(g["k"]),
                                              s=int(g["s"] or 1), p=int(g["p"] or 0))))
        elif g["fc"]:
            layers.append(("fc", int8, dict(out=int(g["fc"]))))
        elif g["mp"]:
            layers.append(("mp", False, dict(k=int(g["mp"]), s=int(g["ms"] or g["mp"]))))
        elif g["gap"]:
            layers.append(("gap", False, {}))
        else:
            layers.append(("res", False, dict(out=int(g["res"]), s=int(g["rs"] or 1))))
    if not layers:
        raise ValueError(f"layer spec is empty; expected {_SPEC_HELP}")
    return layers


def random_graph(input_shape, spec, *, n_in=6, n_out=10, q=1, n_tap=2, seed=0, name="random",
                 input_bits=8, input_signed=False, output_bits=8, negative_alpha=0.1,
                 calibration=64):
    """A random, calibrated format-v3 package: ``input_shape`` ``[C, H, W]`` (or
    ``[features]``) and a layer ``spec`` (:func:`parse_graph_spec`).

    Weighted layers have ReLU and unsigned outputs but the last node, which is linear with a
    signed output; a residual block's first conv has ReLU, its second none (signed output),
    and the add has ReLU. A fraction ``negative_alpha`` of α (and of int weight scales) is
    negative, like a negative BatchNorm γ folded in.
    """
    from .ops import Add, Conv2d, GlobalAvgPool, Linear, MaxPool2d
    layers = parse_graph_spec(spec) if isinstance(spec, str) else list(spec)
    input_shape = [int(v) for v in input_shape]
    if not input_shape or min(input_shape) <= 0:
        raise InputError(f"the input shape must list positive sizes, not {input_shape}")
    count_limit("the input's value count", int(np.prod(input_shape, dtype=object)),
                MAX_ACTIVATIONS)
    count_limit("the layer count", len(layers), MAX_NODES // 3)   # a residual block is 3 nodes
    _check_spec([n_in], [n_out], [q], [n_tap], input_bits, input_signed)
    rng = np.random.default_rng(seed)
    inp = QuantFormat(1.0 / ((1 << (input_bits - 1)) if input_signed else (1 << input_bits)),
                      input_bits, input_signed)
    package = Package(name=name, input_shape=tuple(input_shape), input=inp, nodes=[])
    nodes = package.nodes
    state = {"prev": "input", "count": 0}

    def fmt(signed):
        return QuantFormat(1.0, output_bits, signed)

    def weighted(cls, shape, int8, relu, signed, inputs, **extra):
        state["count"] += 1
        nm = f"{'conv' if cls is Conv2d else 'fc'}{state['count']}"
        out, fan_in = shape[0], int(np.prod(shape[1:], dtype=object))
        count_limit(f"node {nm!r}: its weight count", out * fan_in, MAX_WEIGHTS)
        sign = np.where(rng.random(out) < negative_alpha, -1.0, 1.0)
        bias = rng.normal(0, 0.2, size=out).astype(np.float32)
        if int8:
            w = rng.integers(-127, 128, size=shape).astype(np.int8)
            scale = (rng.uniform(0.5, 1.5, out) / np.sqrt(fan_in) / 64 * sign).astype(np.float32)
            node = cls(name=nm, weight_shape=tuple(shape), relu=relu, output=fmt(signed),
                       int_bits=8, weight=w, alpha=scale[None], bias=bias,
                       inputs=tuple(inputs), **extra)
        else:
            xor = np.stack([make_xor_matrix(n_out, n_in, n_tap, seed=int(rng.integers(2 ** 31)))
                            for _ in range(q)])
            n_slices = -(-out * fan_in // n_out)
            enc = rng.integers(0, 2, size=(q, n_slices, n_in), dtype=np.uint8)
            mag = rng.uniform(0.5, 1.5, size=(q, out)) / np.sqrt(fan_in)
            mag *= 0.5 ** np.arange(q)[:, None]
            node = cls(name=nm, weight_shape=tuple(shape), relu=relu, output=fmt(signed), q=q,
                       n_in=n_in, n_out=n_out, n_tap=n_tap, xor=xor, encrypted=enc,
                       alpha=(mag * sign).astype(np.float32), bias=bias,
                       inputs=tuple(inputs), **extra)
        nodes.append(node)
        return node

    for index, (kind, int8, p) in enumerate(layers):
        last = index == len(layers) - 1
        shape = package.shapes()[state["prev"]] if nodes else \
            tuple(input_shape)
        if kind == "conv":
            if len(shape) != 3:
                raise ValueError(f"a conv layer needs a [C, H, W] input, not {list(shape)}")
            node = weighted(Conv2d, (p["out"], shape[0], p["k"], p["k"]), int8, not last, last,
                            [state["prev"]], stride=(p["s"], p["s"]), padding=(p["p"], p["p"]))
        elif kind == "fc":
            node = weighted(Linear, (p["out"], int(np.prod(shape))), int8, not last, last,
                            [state["prev"]])
        elif kind == "mp":
            state["count"] += 1
            node = MaxPool2d(name=f"pool{state['count']}", kernel=(p["k"], p["k"]),
                             stride=(p["s"], p["s"]), inputs=(state["prev"],))
            nodes.append(node)
        elif kind == "gap":
            state["count"] += 1
            node = GlobalAvgPool(name=f"gap{state['count']}", output=fmt(last),
                                 inputs=(state["prev"],))
            nodes.append(node)
        else:
            if len(shape) != 3:
                raise ValueError(f"a residual block needs a [C, H, W] input, not {list(shape)}")
            block_in = state["prev"]
            a = weighted(Conv2d, (p["out"], shape[0], 3, 3), False, True, False, [block_in],
                         stride=(p["s"], p["s"]), padding=(1, 1))
            b = weighted(Conv2d, (p["out"], p["out"], 3, 3), False, False, True, [a.name],
                         padding=(1, 1))
            extra = p["out"] - shape[0]
            if extra < 0:
                raise ValueError(f"a residual block cannot shrink {shape[0]} channels to "
                                 f"{p['out']}")
            state["count"] += 1
            node = Add(name=f"add{state['count']}", output=fmt(last), relu=not last,
                       inputs=(b.name, block_in), stride=p["s"],
                       pad_channels=(extra // 2, extra - extra // 2))
            nodes.append(node)
        state["prev"] = node.name
        package.shapes()                    # fails early, naming the node, on a bad spec
    package.validate()
    lo, hi = inp.lo, inp.hi
    x = rng.integers(lo, hi + 1, size=(calibration, *input_shape)) * inp.scale
    calibrate_scales(package, x)
    return package.validate()
