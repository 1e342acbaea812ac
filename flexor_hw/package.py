"""The ``.flexor.npz`` package, format version 1 (DESIGN §2): typed model, load, save, validation.

Loading never executes code: the archive is read with ``np.load(..., allow_pickle=False)`` and a
member holding pickled objects is rejected with an error that names it.
"""

import hashlib
import io
import json
import math
import zipfile
import zlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .errors import PackageError
from .xor import decrypt_plane

__all__ = ["FORMAT", "VERSION", "QuantFormat", "Layer", "Package", "load", "save", "sha256_file"]

FORMAT = "flexor-package"
VERSION = 2                 # written only when a package needs it (an input quantizer)
VERSIONS = (1, 2)
_LAYER_MEMBERS = ("xor", "encrypted", "alpha", "bias")


@dataclass(frozen=True)
class QuantFormat:
    """Integer activation format: real value ≈ ``scale · x``, ``x`` a ``bits``-wide integer."""

    scale: float
    bits: int
    signed: bool

    @property
    def lo(self):
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def hi(self):
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    def to_json(self):
        return {"scale": float(self.scale), "bits": int(self.bits), "signed": bool(self.signed)}

    @classmethod
    def from_json(cls, obj, where):
        if not isinstance(obj, dict):
            raise PackageError(f"manifest: {where} must be an object with scale, bits, signed")
        for key in ("scale", "bits", "signed"):
            if key not in obj:
                raise PackageError(f"manifest: {where} has no {key!r}")
        scale, bits, signed = obj["scale"], obj["bits"], obj["signed"]
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) \
                or not math.isfinite(scale) or scale <= 0:
            raise PackageError(f"manifest: {where}.scale must be a finite positive number, "
                               f"not {scale!r}")
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 32:
            raise PackageError(f"manifest: {where}.bits must be an integer from 1 to 32, "
                               f"not {bits!r}")
        if not isinstance(signed, bool):
            raise PackageError(f"manifest: {where}.signed must be true or false, not {signed!r}")
        if signed and bits < 2:
            raise PackageError(f"manifest: {where}.bits must be at least 2 for a signed format")
        return cls(float(scale), bits, signed)


@dataclass(eq=False)
class Layer:
    """One FleXOR layer: encrypted binary codes, M⊕ per bit-plane, α and bias.

    Arrays: ``xor`` uint8 ``[q, n_out, n_in]``, ``encrypted`` uint8 ``[q, n_slices, n_in]``,
    ``alpha`` float32 ``[q, out]``, ``bias`` float32 ``[out]``.
    """

    name: str
    weight_shape: tuple
    q: int
    n_in: int
    n_out: int
    n_tap: "int | None"
    relu: bool
    output: QuantFormat
    xor: np.ndarray
    encrypted: np.ndarray
    alpha: np.ndarray
    bias: np.ndarray
    kind: str = "linear"

    @property
    def out_features(self):
        return int(self.weight_shape[0])

    @property
    def fan_in(self):
        return int(np.prod(self.weight_shape[1:]))

    @property
    def numel(self):
        return self.out_features * self.fan_in

    @property
    def n_slices(self):
        return -(-self.numel // self.n_out)

    @property
    def bits_per_weight(self):
        return self.q * self.n_in / self.n_out

    @property
    def stored_bits(self):
        return self.q * self.n_slices * self.n_in

    @cached_property
    def weight_bits(self):
        """Decrypted bits ``uint8 [q, out, fan_in]`` (1 ↔ +1, 0 ↔ −1)."""
        planes = [decrypt_plane(self.xor[i], self.encrypted[i], self.numel)
                  for i in range(self.q)]
        return np.stack(planes).reshape(self.q, self.out_features, self.fan_in)

    def weights(self):
        """Real-valued weights ``Σ_i α_i[o] · B_i`` as float64 ``[out, fan_in]``."""
        signs = self.weight_bits.astype(np.float64) * 2 - 1
        return np.einsum("io,ioc->oc", self.alpha.astype(np.float64), signs)

    def manifest_entry(self):
        return {"name": self.name, "kind": self.kind, "weight_shape": list(self.weight_shape),
                "q": self.q, "n_in": self.n_in, "n_out": self.n_out, "n_tap": self.n_tap,
                "relu": self.relu, "output": self.output.to_json()}


@dataclass(eq=False)
class Package:
    """A FleXOR network: input format and a chain of layers.

    ``thresholds`` (format version 2, optional): int64 ``[features, b]``, an input quantizer
    (bitwise soft quantization): raw input feature ``j`` becomes the ``b`` bits
    ``x[j] >= thresholds[j, k]`` (integers in the raw input format), feature-major, and
    those bits are the first layer's inputs.
    """

    name: str
    input_shape: tuple
    input: QuantFormat
    layers: list = field(default_factory=list)
    thresholds: "np.ndarray | None" = None

    @property
    def bits_per_feature(self):
        return None if self.thresholds is None else int(self.thresholds.shape[1])

    def input_format(self, k):
        """Integer format of layer ``k``'s input (the previous layer's output; the quantizer's
        1-bit outputs for layer 0 when there is a quantizer)."""
        if k == 0:
            return self.input if self.thresholds is None else QUANTIZED_BIT
        return self.layers[k - 1].output

    @property
    def output(self):
        return self.layers[-1].output

    def manifest(self):
        out = {"format": FORMAT, "version": 1 if self.thresholds is None else 2,
               "name": self.name,
               "input": {"shape": list(self.input_shape), **self.input.to_json()},
               "layers": [layer.manifest_entry() for layer in self.layers]}
        if self.thresholds is not None:
            out["input_quantizer"] = {"bits_per_feature": self.bits_per_feature}
        return out

    def validate(self):
        """Check the whole package; raise :class:`PackageError` naming the first problem."""
        _validate_manifest(self.manifest())
        if self.thresholds is not None:
            self.thresholds = _check_thresholds(np.asarray(self.thresholds), self)
        for k, layer in enumerate(self.layers):
            _validate_arrays(k, layer)
        return self


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _validate_manifest(manifest):
    if not isinstance(manifest, dict):
        raise PackageError("manifest must be a JSON object")
    if manifest.get("format") != FORMAT:
        raise PackageError(f"manifest: format must be {FORMAT!r}, not {manifest.get('format')!r}")
    version = manifest.get("version")
    if version not in VERSIONS or not _is_int(version):
        raise PackageError(f"manifest: unknown format version {version!r} "
                           f"(this flexor-hw reads versions 1 and 2)")
    if not isinstance(manifest.get("name"), str) or not manifest["name"]:
        raise PackageError("manifest: name must be a non-empty string")
    inp = manifest.get("input")
    if not isinstance(inp, dict):
        raise PackageError("manifest: input must be an object with shape, scale, bits, signed")
    shape = inp.get("shape")
    if not isinstance(shape, list) or not shape or not all(_is_int(s) and s > 0 for s in shape):
        raise PackageError(f"manifest: input.shape must be a list of positive integers, "
                           f"not {shape!r}")
    input_format = QuantFormat.from_json(inp, "input")
    layers = manifest.get("layers")
    if not isinstance(layers, list) or not layers:
        raise PackageError("manifest: layers must be a non-empty list")
    features = int(np.prod(shape))
    quantizer = manifest.get("input_quantizer")
    if quantizer is not None:
        if version < 2:
            raise PackageError("manifest: input_quantizer needs format version 2")
        b = quantizer.get("bits_per_feature") if isinstance(quantizer, dict) else None
        if not _is_int(b) or not 1 <= b <= 32:
            raise PackageError(f"manifest: input_quantizer.bits_per_feature must be an integer "
                               f"from 1 to 32, not {b!r}")
        features *= b
    names = set()
    parsed = []
    for k, entry in enumerate(layers):
        where = f"layers[{k}]"
        if not isinstance(entry, dict):
            raise PackageError(f"manifest: {where} must be an object")
        for key in ("name", "kind", "weight_shape", "q", "n_in", "n_out", "n_tap", "relu",
                    "output"):
            if key not in entry:
                raise PackageError(f"manifest: {where} has no {key!r}")
        name = entry["name"]
        if not isinstance(name, str) or not name:
            raise PackageError(f"manifest: {where}.name must be a non-empty string")
        if name in names:
            raise PackageError(f"manifest: layer name {name!r} is used twice")
        names.add(name)
        where = f"layer {name!r}"
        if entry["kind"] != "linear":
            raise PackageError(f"manifest: {where} has kind {entry['kind']!r}; "
                               f"format version 1 supports 'linear'")
        ws = entry["weight_shape"]
        if not isinstance(ws, list) or len(ws) != 2 or not all(_is_int(s) and s > 0 for s in ws):
            raise PackageError(f"manifest: {where} weight_shape must be [out, in] of positive "
                               f"integers, not {ws!r}")
        for key in ("q", "n_in", "n_out"):
            if not _is_int(entry[key]) or entry[key] <= 0:
                raise PackageError(f"manifest: {where} {key} must be a positive integer, "
                                   f"not {entry[key]!r}")
        if entry["n_in"] > entry["n_out"]:
            raise PackageError(f"manifest: {where} n_in ({entry['n_in']}) must not exceed "
                               f"n_out ({entry['n_out']})")
        n_tap = entry["n_tap"]
        if n_tap is not None and (not _is_int(n_tap) or not 1 <= n_tap <= entry["n_in"]):
            raise PackageError(f"manifest: {where} n_tap must be null or an integer from 1 to "
                               f"n_in ({entry['n_in']}), not {n_tap!r}")
        if not isinstance(entry["relu"], bool):
            raise PackageError(f"manifest: {where} relu must be true or false")
        output = QuantFormat.from_json(entry["output"], f"{where} output")
        if ws[1] != features:
            raise PackageError(f"manifest: {where} has {ws[1]} inputs but its input has "
                               f"{features} features")
        features = ws[0]
        parsed.append((entry, output))
    return input_format, parsed


def _check_array(member, array, shape, *, binary=False, floating=False):
    if array.dtype.hasobject:
        raise PackageError(f"member {member!r} holds Python objects; expected numbers")
    if array.shape != tuple(shape):
        raise PackageError(f"member {member!r} has shape {list(array.shape)}, "
                           f"expected {list(shape)}")
    if binary:
        if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
            raise PackageError(f"member {member!r} has dtype {array.dtype}, expected uint8 0/1")
        if array.size and (array.min() < 0 or array.max() > 1):
            raise PackageError(f"member {member!r} holds values other than 0 and 1")
        return array.astype(np.uint8)
    if floating:
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise PackageError(f"member {member!r} has dtype {array.dtype}, expected float32")
        if not np.isfinite(array).all():
            raise PackageError(f"member {member!r} holds NaN or infinite values")
        return array.astype(np.float32)
    return array


QUANTIZED_BIT = QuantFormat(1.0, 1, False)


def _check_thresholds(array, package, member="input/thresholds"):
    n = int(np.prod(package.input_shape))
    b = array.shape[1] if array.ndim == 2 else None
    if array.dtype.hasobject:
        raise PackageError(f"member {member!r} holds Python objects; expected integers")
    if array.ndim != 2 or array.shape[0] != n or b < 1:
        raise PackageError(f"member {member!r} has shape {list(array.shape)}, expected "
                           f"[{n}, bits_per_feature]")
    if not np.issubdtype(array.dtype, np.integer):
        raise PackageError(f"member {member!r} has dtype {array.dtype}, expected integers "
                           f"in the raw input format")
    lo, hi = package.input.lo, package.input.hi + 1      # hi + 1: a bit that is never set
    if array.size and (array.min() < lo or array.max() > hi):
        raise PackageError(f"member {member!r} holds values outside [{lo}, {hi}] (the raw "
                           f"input range, plus {hi} for 'never')")
    return array.astype(np.int64)


def _validate_arrays(k, layer):
    p = f"layers/{k}/"
    q, n_in, n_out = layer.q, layer.n_in, layer.n_out
    layer.xor = _check_array(p + "xor", np.asarray(layer.xor), (q, n_out, n_in), binary=True)
    layer.encrypted = _check_array(p + "encrypted", np.asarray(layer.encrypted),
                                   (q, layer.n_slices, n_in), binary=True)
    layer.alpha = _check_array(p + "alpha", np.asarray(layer.alpha), (q, layer.out_features),
                               floating=True)
    layer.bias = _check_array(p + "bias", np.asarray(layer.bias), (layer.out_features,),
                              floating=True)
    if layer.n_tap is not None:
        taps = layer.xor.sum(axis=2)
        bad = np.argwhere(taps != layer.n_tap)
        if bad.size:
            i, r = bad[0]
            raise PackageError(f"member {p + 'xor'!r}: row {r} of bit-plane {i} has {taps[i, r]} "
                               f"ones, expected n_tap = {layer.n_tap}")


def load(path):
    """Read and validate a package. Raises :class:`PackageError` on any problem."""
    path = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise PackageError(f"cannot read package {path!r}: {e.strerror or e}") from None
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise PackageError(f"{path!r} is not a .flexor.npz package "
                           f"(not a zip archive, or truncated)")
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any failure here is a broken archive
        raise PackageError(f"{path!r} is not a readable .npz archive: {e}") from None
    with npz:
        members = set(npz.files)

        def get(name):
            if name not in members:
                raise PackageError(f"member {name!r} is missing")
            try:
                return npz[name]
            except ValueError as e:
                if "pickle" in str(e):
                    raise PackageError(f"member {name!r} holds pickled Python objects; "
                                       f"packages must contain only arrays") from None
                raise PackageError(f"member {name!r} cannot be read: {e}") from None
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
                raise PackageError(f"member {name!r} cannot be read (truncated or corrupt "
                                   f"archive): {e}") from None

        raw = get("manifest")
        if raw.shape != () or raw.dtype.kind != "U":
            raise PackageError(f"member 'manifest' must be a 0-d unicode string, "
                               f"not {raw.dtype} {list(raw.shape)}")
        try:
            manifest = json.loads(str(raw))
        except json.JSONDecodeError as e:
            raise PackageError(f"member 'manifest' is not valid JSON: {e}") from None
        input_format, parsed = _validate_manifest(manifest)
        layers = []
        expected = {"manifest"}
        thresholds = None
        if manifest.get("input_quantizer") is not None:
            expected.add("input/thresholds")
            thresholds = get("input/thresholds")
        for k, (entry, output) in enumerate(parsed):
            p = f"layers/{k}/"
            expected.update(p + m for m in _LAYER_MEMBERS)
            out = entry["weight_shape"][0]
            bias = get(p + "bias") if p + "bias" in members else np.zeros(out, np.float32)
            layer = Layer(name=entry["name"], kind=entry["kind"],
                          weight_shape=tuple(entry["weight_shape"]), q=entry["q"],
                          n_in=entry["n_in"], n_out=entry["n_out"], n_tap=entry["n_tap"],
                          relu=entry["relu"], output=output, xor=get(p + "xor"),
                          encrypted=get(p + "encrypted"), alpha=get(p + "alpha"), bias=bias)
            _validate_arrays(k, layer)
            layers.append(layer)
        unexpected = sorted(members - expected)
        if unexpected:
            raise PackageError(f"member {unexpected[0]!r} is not part of format version "
                               f"{manifest['version']}")
    package = Package(name=manifest["name"], input_shape=tuple(manifest["input"]["shape"]),
                      input=input_format, layers=layers)
    if thresholds is not None:
        package.thresholds = _check_thresholds(thresholds, package)
        b = manifest["input_quantizer"]["bits_per_feature"]
        if package.thresholds.shape[1] != b:
            raise PackageError(f"member 'input/thresholds' has {package.thresholds.shape[1]} "
                               f"thresholds per feature, but the manifest says {b}")
    return package


def save(package, path):
    """Validate and write a package. The bytes depend only on the package's contents."""
    package.validate()
    members = [("manifest", np.array(json.dumps(package.manifest())))]
    if package.thresholds is not None:
        members.append(("input/thresholds", package.thresholds.astype(np.int64)))
    for k, layer in enumerate(package.layers):
        p = f"layers/{k}/"
        members += [(p + "xor", layer.xor.astype(np.uint8)),
                    (p + "encrypted", layer.encrypted.astype(np.uint8)),
                    (p + "alpha", layer.alpha.astype(np.float32)),
                    (p + "bias", layer.bias.astype(np.float32))]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, array in members:
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.array(array, order="C"), allow_pickle=False)
            zf.writestr(info, buf.getvalue())


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
