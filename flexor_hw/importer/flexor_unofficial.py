"""Reader of ``sgsuh/flexor-unofficial`` checkpoints (its ``flexor/export.py:export_model``,
saved with ``torch.save``; docs/importing.md).

Layout: ``{"layers": {NAME: entry}, "fp_state": {key: tensor}}``. NAME is the path of the
``FleXORWeight`` submodule, ``"<layer>.flexor"``; the layer's bias is
``fp_state["<layer>.bias"]``. entry: ``shape``, ``spec`` {n_in, n_out, q, n_tap, seed},
``n_slices``, ``matrices`` bool ``[q, n_out, n_in]``, ``packed`` (q uint8 tensors: bits
``[n_slices, n_in]`` row-major, MSB first, zero-padded; 1 ↔ ``w_e ≥ 0``), ``alpha [q, out]``.
``fp_state`` holds every other state: biases, BatchNorm (ε = 1e-5) and full-precision layers,
which become int8 per-channel layers here.

The checkpoint does not name its architecture; it is recognized from the keys:
``lenet5`` (conv1, conv2, fc1, fc2), ``resnet`` (conv1, bn1, layer{1,2,3}.{j}.{conv1, bn1,
conv2, bn2}, fc; depth 6n+2 from the blocks) or ``mlp`` (FleXOR linears in order, ReLU between).
"""

import re

import numpy as np

from ..calibrate import calibrate_scales, check_calibration
from ..errors import FlexorError, PackageError
from ..ops import Add, Conv2d, GlobalAvgPool, Linear, MaxPool2d, QuantFormat
from ..ops.weighted import fold_batchnorm, int_weights
from ..package import Package

__all__ = ["ARCHS", "detect_arch", "import_flexor_unofficial"]

ARCHS = ("mlp", "lenet5", "resnet")
BN_EPS = 1e-5


def _array(value, where):
    try:
        import torch
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    try:
        return np.asarray(value)
    except Exception:  # noqa: BLE001
        raise PackageError(f"checkpoint: {where} is not an array") from None


class _Reader:
    """The checkpoint's entries by layer name, tracking which ``fp_state`` keys are used."""

    def __init__(self, ckpt):
        if not isinstance(ckpt, dict) or not isinstance(ckpt.get("layers"), dict):
            raise PackageError("checkpoint: expected a dict with a 'layers' dict (the output "
                               "of flexor-unofficial's export_model)")
        fp_state = ckpt.get("fp_state", {}) or {}
        if not isinstance(fp_state, dict):
            raise PackageError("checkpoint: 'fp_state' must be a dict")
        self.flexor = {}
        for key, entry in ckpt["layers"].items():
            name = key[:-len(".flexor")] if str(key).endswith(".flexor") else str(key)
            self.flexor[name] = entry
        self.fp = dict(fp_state)
        self.used = set()

    def has_layer(self, name):
        return name in self.flexor or f"{name}.weight" in self.fp

    def fp_value(self, key, where=None):
        if key not in self.fp:
            raise PackageError(f"checkpoint: {where or key!r} is missing from fp_state")
        self.used.add(key)
        return _array(self.fp[key], key).astype(np.float64)

    def weighted(self, cls, name, inputs, **extra):
        """A node for layer ``name``: FleXOR weights, or int8 from full-precision ones."""
        bias = self.fp_value(f"{name}.bias") if f"{name}.bias" in self.fp else None
        if name in self.flexor:
            fields = _flexor_fields(name, self.flexor[name])
            shape = fields.pop("shape")
        elif f"{name}.weight" in self.fp:
            w = self.fp_value(f"{name}.weight")
            w_int, scale = int_weights(w, 8)
            shape, fields = tuple(w.shape), dict(int_bits=8, weight=w_int, alpha=scale[None])
        else:
            raise PackageError(f"checkpoint: layer {name!r} is missing (neither "
                               f"'{name}.flexor' in layers nor '{name}.weight' in fp_state)")
        want = 4 if cls is Conv2d else 2
        if len(shape) != want:
            raise PackageError(f"checkpoint: layer {name!r} has weight shape {list(shape)}, "
                               f"expected {want} dimensions for a "
                               f"{'conv' if want == 4 else 'linear'} layer")
        bias = np.zeros(shape[0], np.float32) if bias is None else bias.astype(np.float32)
        return cls(name=name, weight_shape=tuple(int(s) for s in shape), relu=False,
                   output=QuantFormat(1.0, 8, True), bias=bias, inputs=tuple(inputs),
                   **fields, **extra)

    def batchnorm(self, node, bn):
        stats = [self.fp_value(f"{bn}.{k}", f"{bn}.{k}")
                 for k in ("weight", "bias", "running_mean", "running_var")]
        self.used.add(f"{bn}.num_batches_tracked")
        fold_batchnorm(node, *stats, eps=BN_EPS)

    def unused(self):
        keys = set(self.fp) - self.used
        return sorted(k for k in keys if not k.endswith("num_batches_tracked"))


def _flexor_fields(name, entry):
    where = f"layer {name + '.flexor'!r}"
    try:
        shape = [int(v) for v in entry["shape"]]
        spec = entry["spec"]
        q, n_in, n_out = int(spec["q"]), int(spec["n_in"]), int(spec["n_out"])
        n_tap = spec.get("n_tap")
        n_slices = int(entry["n_slices"])
        matrices = _array(entry["matrices"], f"{where} matrices")
        packed = list(entry["packed"])
        alpha = _array(entry["alpha"], f"{where} alpha")
    except (KeyError, TypeError, ValueError) as e:
        raise PackageError(f"checkpoint: {where} lacks or mangles {e}") from None
    if len(packed) != q:
        raise PackageError(f"checkpoint: {where} packed has {len(packed)} planes, expected "
                           f"q = {q}")
    if matrices.dtype != np.bool_ and not np.issubdtype(matrices.dtype, np.integer):
        raise PackageError(f"checkpoint: {where} matrices has dtype {matrices.dtype}, expected "
                           f"bool (or 0/1 integers)")
    encrypted = []
    for i, plane in enumerate(packed):
        raw = _array(plane, f"{where} packed[{i}]")
        if raw.dtype == np.bool_ or not np.issubdtype(raw.dtype, np.integer):
            raise PackageError(f"checkpoint: {where} packed[{i}] has dtype {raw.dtype}, "
                               f"expected uint8 bytes of packed bits")
        if raw.size and (raw.min() < 0 or raw.max() > 255):
            raise PackageError(f"checkpoint: {where} packed[{i}] holds values outside "
                               f"[0, 255] ([{raw.min()}, {raw.max()}]); expected uint8 bytes "
                               f"of packed bits")
        raw = raw.astype(np.uint8).reshape(-1)
        bits = np.unpackbits(raw, bitorder="big")
        if bits.size < n_slices * n_in:
            raise PackageError(f"checkpoint: {where} packed[{i}] holds {bits.size} bits, "
                               f"expected {n_slices * n_in}")
        encrypted.append(bits[:n_slices * n_in].reshape(n_slices, n_in))
    return dict(shape=tuple(shape), q=q, n_in=n_in, n_out=n_out,
                n_tap=None if n_tap is None else int(n_tap),
                xor=matrices.astype(np.uint8), encrypted=np.stack(encrypted),
                alpha=alpha.astype(np.float32))


def detect_arch(ckpt):
    """``"lenet5"``, ``"resnet"`` or ``"mlp"`` from a checkpoint's keys; ``None`` if none fits."""
    r = _Reader(ckpt)
    if all(r.has_layer(n) for n in ("conv1", "conv2", "fc1", "fc2")):
        return "lenet5"
    if r.has_layer("conv1") and "bn1.weight" in r.fp and r.has_layer("fc") and \
            r.has_layer("layer1.0.conv1"):
        return "resnet"
    shapes = [e.get("shape") if isinstance(e, dict) else None for e in r.flexor.values()]
    if shapes and all(s is not None and len(s) == 2 for s in shapes):
        return "mlp"
    return None


def _mlp(r):
    names = list(r.flexor)
    if not names:
        raise PackageError("checkpoint: an MLP needs at least one FleXOR layer in 'layers'")
    nodes, prev = [], "input"
    for k, name in enumerate(names):
        node = r.weighted(Linear, name, [prev])
        node.relu = k < len(names) - 1
        nodes.append(node)
        prev = name
    return nodes, (nodes[0].fan_in,)


def _lenet5(r):
    c1 = r.weighted(Conv2d, "conv1", ["input"])
    c1.relu, c1.padding = True, tuple(k // 2 for k in c1.kernel)        # 'same' padding
    p1 = MaxPool2d(name="pool1", kernel=(2, 2), stride=(2, 2), inputs=("conv1",))
    c2 = r.weighted(Conv2d, "conv2", ["pool1"])
    c2.relu, c2.padding = True, tuple(k // 2 for k in c2.kernel)
    p2 = MaxPool2d(name="pool2", kernel=(2, 2), stride=(2, 2), inputs=("conv2",))
    f1 = r.weighted(Linear, "fc1", ["pool2"])
    f1.relu = True
    f2 = r.weighted(Linear, "fc2", ["fc1"])
    side = int(round((f1.fan_in / c2.out_features) ** 0.5)) * 4
    return [c1, p1, c2, p2, f1, f2], (c1.in_channels, side, side)


def _resnet(r):
    blocks = {}
    for name in list(r.flexor) + [k[:-len(".weight")] for k in r.fp if k.endswith(".weight")]:
        m = re.match(r"^layer([123])\.(\d+)\.conv[12]$", name)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    n = len(blocks.get(1, ()))
    if sorted(blocks) != [1, 2, 3] or any(blocks[s] != set(range(n)) for s in (1, 2, 3)):
        raise PackageError("checkpoint: a CIFAR ResNet needs blocks layer1.0 … layer3.{n-1} "
                           "with the same count n in each of its three stages")
    stem = r.weighted(Conv2d, "conv1", ["input"], padding=(1, 1))
    r.batchnorm(stem, "bn1")
    stem.relu = True
    nodes, prev, channels = [stem], "conv1", stem.out_features
    for stage in (1, 2, 3):
        for j in range(n):
            p = f"layer{stage}.{j}"
            stride = 2 if stage > 1 and j == 0 else 1
            a = r.weighted(Conv2d, f"{p}.conv1", [prev], stride=(stride, stride),
                           padding=(1, 1))
            r.batchnorm(a, f"{p}.bn1")
            a.relu = True
            b = r.weighted(Conv2d, f"{p}.conv2", [a.name], padding=(1, 1))
            r.batchnorm(b, f"{p}.bn2")
            out = b.out_features
            extra = out - channels
            add = Add(name=f"{p}.add", output=QuantFormat(1.0, 8, False), relu=True,
                      inputs=(b.name, prev), stride=stride,
                      pad_channels=(extra // 2, extra - extra // 2))
            nodes += [a, b, add]
            prev, channels = add.name, out
    gap = GlobalAvgPool(name="avgpool", output=QuantFormat(1.0, 8, False), inputs=(prev,))
    fc = r.weighted(Linear, "fc", ["avgpool"])
    return nodes + [gap, fc], (stem.in_channels, 32, 32)


_BUILDERS = {"mlp": _mlp, "lenet5": _lenet5, "resnet": _resnet}


def import_flexor_unofficial(ckpt, x, *, arch=None, name="imported", input_bits=8,
                             input_signed=None, input_shape=None, output_bits=8,
                             last_output_bits=16):
    """See :func:`flexor_hw.importer.import_checkpoint`."""
    r = _Reader(ckpt)
    if arch is None:
        arch = detect_arch(ckpt)
        if arch is None:
            keys = sorted(r.flexor)[:6]
            raise FlexorError(f"checkpoint: cannot tell the architecture from its keys "
                              f"(layers {', '.join(keys) or 'none'}); pass --arch "
                              f"{'|'.join(ARCHS)}")
    elif arch not in _BUILDERS:
        raise FlexorError(f"unknown architecture {arch!r}; expected one of {', '.join(ARCHS)}")
    nodes, default_shape = _BUILDERS[arch](r)
    unused = r.unused()
    if unused:
        raise FlexorError(f"checkpoint has entries the {arch} architecture does not use (the "
                          f"hardware cannot map them): {', '.join(unused)}")
    x = np.asarray(x)
    shape = tuple(input_shape) if input_shape else default_shape
    for node in nodes:
        if node.weighted or node.op != "maxpool2d":
            last = node is nodes[-1]
            relu = getattr(node, "relu", False)
            node.output = QuantFormat(1.0, last_output_bits if last else output_bits,
                                      last or not relu)
    probe = Package(name=name, input_shape=shape, input=QuantFormat(1.0, input_bits, True),
                    nodes=nodes)
    x = check_calibration(probe, x)
    signed = bool((x < 0).any()) if input_signed is None else input_signed
    top = (1 << (input_bits - 1)) - 1 if signed else (1 << input_bits) - 1
    peak = float(np.abs(x).max()) or 1.0
    package = Package(name=name, input_shape=shape,
                      input=QuantFormat(peak / top, input_bits, signed), nodes=nodes)
    package.validate()
    calibrate_scales(package, x)
    return package.validate()
