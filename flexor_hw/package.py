"""The ``.flexor.npz`` package (docs/package-format.md): load, save, validation.

Format version 3 is a graph of nodes (``linear``, ``conv2d``, ``maxpool2d``,
``global_avgpool``, ``add``; one module per op in :mod:`flexor_hw.ops`). Versions 1 (a chain of
``linear`` layers) and 2 (v1 + an input quantizer) still load, as chains of ``linear`` nodes, and
a package that such a chain expresses is still written as version 1 or 2.

Loading never executes code and is bounded: every member's ``.npy`` header is checked (no
pickled objects; declared size within :mod:`flexor_hw.limits`) before its data is read, and the
manifest's declared sizes are checked before any array is.
"""

import hashlib
import io
import json
import math
import zipfile
from dataclasses import dataclass, field

import numpy as np

from .errors import BuildError, PackageError
from .limits import (MAX_ACTIVATIONS, MAX_MACS, MAX_MANIFEST_BYTES, MAX_MEMBER_BYTES,
                     MAX_NAME_CHARS, MAX_NODES, MAX_WEIGHTS, NpzReader, count_limit,
                     loads_json, read_bounded)
from .ops import OPS, QUANTIZED_BIT, Linear, QuantFormat
from .ops.base import is_int as _is_int
from .ops.weighted import check_flexor_spec

__all__ = ["FORMAT", "VERSION", "VERSIONS", "QuantFormat", "QUANTIZED_BIT", "Layer", "Package",
           "chain", "load", "save", "sha256_file"]

FORMAT = "flexor-package"
VERSION = 3                 # the newest; a package is written in the oldest version that holds it
VERSIONS = (1, 2, 3)
INPUT = "input"             # the name by which nodes refer to the network input

Layer = Linear              # a v1/v2 layer is a FleXOR ``linear`` node


def chain(layers):
    """Wire weighted nodes one after another (the first reads the input); returns them."""
    for k, layer in enumerate(layers):
        layer.inputs = (INPUT,) if k == 0 else (layers[k - 1].name,)
    return list(layers)


@dataclass(eq=False)
class Package:
    """A FleXOR network: input format and a graph of nodes (listed in topological order).

    ``calibration`` (optional): how the output scales were found (:mod:`flexor_hw.calibrate`),
    ``{"hidden": {"rule": "percentile", "percentile": p}, "output": {"rule": "max",
    "headroom": h}}``; written to the manifest as it is.

    ``thresholds`` (optional): int64 ``[features, b]``, an input quantizer (bitwise soft
    quantization): raw input feature ``j`` becomes the ``b`` bits ``x[j] >= thresholds[j, k]``
    (integers in the raw input format), feature-major, and those bits are what nodes reading
    ``"input"`` see (flat, ``[features · b]``).
    """

    name: str
    input_shape: tuple
    input: QuantFormat
    nodes: list = field(default_factory=list)
    thresholds: "np.ndarray | None" = None
    calibration: "dict | None" = None

    # -- the graph --------------------------------------------------------------------------

    @property
    def bits_per_feature(self):
        return None if self.thresholds is None else int(self.thresholds.shape[1])

    def node(self, name):
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def output_node(self):
        return self.order()[-1]

    def order(self):
        """Nodes in execution order (topological; manifest order where free). Checks the graph:
        names, dangling inputs, cycles, exactly one output."""
        return _check_graph(self.nodes)

    def shapes(self):
        """Output shape of every node, and of ``"input"`` (what the first nodes read)."""
        features = _prod(self.input_shape)
        shapes = {INPUT: tuple(self.input_shape) if self.thresholds is None
                  else (features * self.bits_per_feature,)}
        _limit("manifest: the input's value count", _prod(shapes[INPUT]), MAX_ACTIVATIONS)
        macs = 0
        for node in self.order():
            in_shapes = [shapes[i] for i in node.inputs]
            if node.weighted:
                _limit(f"manifest: node {node.name!r}: its weight count",
                       _prod(node.weight_shape), MAX_WEIGHTS)
            shape = tuple(node.infer_shape(in_shapes))
            _limit(f"manifest: node {node.name!r}: its output value count", _prod(shape),
                   MAX_ACTIVATIONS)
            macs += node.macs(in_shapes)
            _limit("manifest: multiply-accumulates per inference", macs, MAX_MACS)
            shapes[node.name] = shape
        return shapes

    def format_of(self, name):
        """Integer format of a node's output (``"input"``: what the first nodes read)."""
        if name == INPUT:
            return self.input if self.thresholds is None else QUANTIZED_BIT
        node = self.node(name)
        return node.output_format([self.format_of(i) for i in node.inputs])

    def in_formats(self, node):
        return [self.format_of(i) for i in node.inputs]

    @property
    def output(self):
        return self.format_of(self.output_node.name)

    def weighted_nodes(self):
        return [n for n in self.order() if n.weighted]

    @property
    def is_chain(self):
        """A chain of FleXOR ``linear`` layers from the input: what versions 1 and 2 hold."""
        nodes = self.nodes
        return bool(nodes) and all(
            n.op == "linear" and n.is_flexor and
            tuple(n.inputs) == ((INPUT,) if k == 0 else (nodes[k - 1].name,))
            for k, n in enumerate(nodes))

    @property
    def layers(self):
        """The layers of a chain of FleXOR ``linear`` nodes (what the layer engines map)."""
        if not self.is_chain:
            other = next((n for n in self.order() if n.op != "linear" or not n.is_flexor),
                         None)
            what = (f"node {other.name!r} is {other.op}" +
                    ("" if other.op != "linear" else " with plain integer weights")
                    if other is not None else "its nodes are not a chain")
            raise BuildError(f"package {self.name!r}: the hardware maps chains of FleXOR "
                             f"linear layers so far, and {what}")
        return self.nodes

    def input_format(self, k):
        """Integer format of layer ``k``'s input, for chains (see :attr:`layers`)."""
        return self.format_of(INPUT if k == 0 else self.layers[k - 1].name)

    # -- manifest ---------------------------------------------------------------------------

    @property
    def version(self):
        if self.is_chain:
            return 1 if self.thresholds is None else 2
        return 3

    def manifest(self):
        version = self.version
        out = {"format": FORMAT, "version": version, "name": self.name,
               "input": {"shape": list(self.input_shape), **self.input.to_json()}}
        if self.thresholds is not None:
            out["input_quantizer"] = {"bits_per_feature": self.bits_per_feature}
        if self.calibration is not None:
            out["calibration"] = self.calibration
        if version < 3:
            out["layers"] = [_v1_entry(layer) for layer in self.nodes]
        else:
            out["nodes"] = [node.to_json() for node in self.nodes]
        return out

    def member_arrays(self):
        """``(member name, array)`` of every array the archive holds, in a fixed order."""
        members = []
        if self.thresholds is not None:
            members.append(("input/thresholds", self.thresholds.astype(np.int64)))
        v1 = self.version < 3
        for k, node in enumerate(self.nodes):
            prefix = f"layers/{k}/" if v1 else f"nodes/{node.name}/"
            members += [(prefix + m, a) for m, a in node.members().items()]
        return members

    def validate(self):
        """Check the whole package; raise :class:`PackageError` naming the first problem."""
        manifest = self.manifest()
        if manifest["version"] < 3:
            _validate_manifest(manifest)
        else:
            _parse_v3(manifest)
        if self.thresholds is not None:
            self.thresholds = _check_thresholds(np.asarray(self.thresholds), self)
        v1 = manifest["version"] < 3
        for k, node in enumerate(self.nodes):
            if node.weighted:
                node.check_arrays(f"layers/{k}/" if v1 else f"nodes/{node.name}/")
        self.shapes()
        return self

    def macs(self):
        """Multiply-accumulates per inference of every node (weighted nodes only)."""
        shapes = self.shapes()
        return {n.name: n.macs([shapes[i] for i in n.inputs]) for n in self.order()}


def _prod(shape):
    return math.prod(int(s) for s in shape)


def _limit(what, value, limit):
    return count_limit(what, value, limit, PackageError)


def _v1_entry(layer):
    return {"name": layer.name, "kind": "linear", "weight_shape": list(layer.weight_shape),
            "q": layer.q, "n_in": layer.n_in, "n_out": layer.n_out, "n_tap": layer.n_tap,
            "relu": layer.relu, "output": layer.output.to_json()}


def _check_graph(nodes):
    _limit("manifest: the node count", len(nodes), MAX_NODES)
    names = {}
    for k, node in enumerate(nodes):
        name = node.name
        if not isinstance(name, str) or not name or "/" in name or name == INPUT:
            raise PackageError(f"manifest: nodes[{k}].name must be a non-empty string without "
                               f"'/', other than {INPUT!r}, not {name!r}")
        if len(name) > MAX_NAME_CHARS:
            raise PackageError(f"manifest: nodes[{k}].name has {len(name)} characters, more "
                               f"than flexor-hw's limit of {MAX_NAME_CHARS}")
        if name in names:
            raise PackageError(f"manifest: node name {name!r} is used twice")
        names[name] = k
    for node in nodes:
        if len(node.inputs) != node.arity:
            raise PackageError(f"manifest: node {node.name!r} ({node.op}) takes {node.arity} "
                               f"input{'s' if node.arity > 1 else ''}, not "
                               f"{len(node.inputs)}")
        for i in node.inputs:
            if i != INPUT and i not in names:
                raise PackageError(f"manifest: node {node.name!r} reads {i!r}, which is not "
                                   f"a node of the package (nor {INPUT!r})")
    # Kahn's algorithm, taking the earliest ready node in manifest order each time.
    pending = {n.name: len([i for i in n.inputs if i != INPUT]) for n in nodes}
    users = {n.name: [] for n in nodes}
    for n in nodes:
        for i in n.inputs:
            if i != INPUT:
                users[i].append(n.name)
    ready = sorted(names[n] for n, c in pending.items() if c == 0)
    order = []
    while ready:
        node = nodes[ready.pop(0)]
        order.append(node)
        for u in users[node.name]:
            pending[u] -= 1
            if pending[u] == 0:
                ready.append(names[u])
                ready.sort()
    if len(order) != len(nodes):
        stuck = [n.name for n in nodes if pending[n.name] > 0]
        raise PackageError(f"manifest: nodes {', '.join(map(repr, stuck))} form a cycle "
                           f"(or read from one)")
    sinks = [n.name for n in nodes if not users[n.name]]
    if len(sinks) != 1:
        raise PackageError(f"manifest: nodes {', '.join(map(repr, sinks))} are all unused; a "
                           f"package has exactly one output node, read by no other")
    if order[-1].name != sinks[0]:          # the output may sit anywhere in the manifest
        order.remove(nodes[names[sinks[0]]])
        order.append(nodes[names[sinks[0]]])
    return order


def _parse_v3(manifest):
    """Validate a version-3 manifest; return ``(input format, nodes without arrays)``."""
    _validate_header(manifest)
    input_format = QuantFormat.from_json(manifest["input"], "input")
    entries = manifest.get("nodes")
    if not isinstance(entries, list) or not entries:
        raise PackageError("manifest: nodes must be a non-empty list")
    _limit("manifest: the node count", len(entries), MAX_NODES)
    nodes = []
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise PackageError(f"manifest: nodes[{k}] must be an object")
        for key in ("name", "op", "inputs"):
            if key not in entry:
                raise PackageError(f"manifest: nodes[{k}] has no {key!r}")
        name = entry["name"]
        if not isinstance(name, str) or not name:
            raise PackageError(f"manifest: nodes[{k}].name must be a non-empty string")
        where = f"node {name!r}"
        op = OPS.get(entry["op"])
        if op is None:
            raise PackageError(f"manifest: {where} has unknown op {entry['op']!r} (known: "
                               f"{', '.join(sorted(OPS))})")
        inputs = entry["inputs"]
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise PackageError(f"manifest: {where} inputs must be a list of node names")
        nodes.append(op.from_json(entry, where))
    _check_graph(nodes)
    return input_format, nodes


def _validate_header(manifest):
    if not isinstance(manifest, dict):
        raise PackageError("manifest must be a JSON object")
    if manifest.get("format") != FORMAT:
        raise PackageError(f"manifest: format must be {FORMAT!r}, not {manifest.get('format')!r}")
    version = manifest.get("version")
    if version not in VERSIONS or not _is_int(version):
        raise PackageError(f"manifest: unknown format version {version!r} "
                           f"(this flexor-hw reads versions 1, 2 and 3)")
    if not isinstance(manifest.get("name"), str) or not manifest["name"]:
        raise PackageError("manifest: name must be a non-empty string")
    if len(manifest["name"]) > MAX_NAME_CHARS:
        raise PackageError(f"manifest: name has {len(manifest['name'])} characters, more than "
                           f"flexor-hw's limit of {MAX_NAME_CHARS}")
    inp = manifest.get("input")
    if not isinstance(inp, dict):
        raise PackageError("manifest: input must be an object with shape, scale, bits, signed")
    shape = inp.get("shape")
    if not isinstance(shape, list) or not shape or not all(_is_int(s) and s > 0 for s in shape):
        raise PackageError(f"manifest: input.shape must be a list of positive integers, "
                           f"not {shape!r}")
    _limit("manifest: the input's value count", _prod(shape), MAX_ACTIVATIONS)
    quantizer = manifest.get("input_quantizer")
    if quantizer is not None:
        if version < 2:
            raise PackageError("manifest: input_quantizer needs format version 2")
        b = quantizer.get("bits_per_feature") if isinstance(quantizer, dict) else None
        if not _is_int(b) or not 1 <= b <= 32:
            raise PackageError(f"manifest: input_quantizer.bits_per_feature must be an integer "
                               f"from 1 to 32, not {b!r}")
    if "calibration" in manifest:
        _check_calibration_entry(manifest["calibration"])
    return version


def _check_calibration_entry(entry):
    """``calibration``: the rule that set the hidden nodes' scales and the one that set the
    output's, each ``{"rule": "percentile", "percentile": P}`` (0 < P ≤ 100) or
    ``{"rule": "max", "headroom": H}`` (H ≥ 1)."""
    if not isinstance(entry, dict) or set(entry) != {"hidden", "output"}:
        raise PackageError("manifest: calibration must be an object with 'hidden' and "
                           "'output' rules")
    for part, rule in entry.items():
        kind = rule.get("rule") if isinstance(rule, dict) else None
        key = {"percentile": "percentile", "max": "headroom"}.get(kind)
        value = rule.get(key) if key and len(rule) == 2 else None
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and \
            math.isfinite(value)
        if not (number and (0 < value <= 100 if kind == "percentile" else value >= 1)):
            raise PackageError(f"manifest: calibration.{part} must be {{'rule': 'percentile', "
                               f"'percentile': P}} (0 < P <= 100) or {{'rule': 'max', "
                               f"'headroom': H}} (H >= 1), not {rule!r}")


def _validate_manifest(manifest):
    """Validate a version-1/2 manifest; return ``(input format, [(entry, output format)])``."""
    version = _validate_header(manifest)
    if version == 3:
        raise PackageError("manifest: format version 3 holds 'nodes', not 'layers'")
    inp, shape, quantizer = manifest["input"], manifest["input"]["shape"], \
        manifest.get("input_quantizer")
    input_format = QuantFormat.from_json(inp, "input")
    layers = manifest.get("layers")
    if not isinstance(layers, list) or not layers:
        raise PackageError("manifest: layers must be a non-empty list")
    _limit("manifest: the layer count", len(layers), MAX_NODES)
    features = int(np.prod(shape))
    if quantizer is not None:
        features *= quantizer["bits_per_feature"]
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
        check_flexor_spec(entry, where)
        if not isinstance(entry["relu"], bool):
            raise PackageError(f"manifest: {where} relu must be true or false")
        output = QuantFormat.from_json(entry["output"], f"{where} output")
        if ws[1] != features:
            raise PackageError(f"manifest: {where} has {ws[1]} inputs but its input has "
                               f"{features} features")
        features = ws[0]
        parsed.append((entry, output))
    return input_format, parsed


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


def load(path):
    """Read and validate a package. Raises :class:`PackageError` on any problem.

    Bounded (:mod:`flexor_hw.limits`): the file is a regular file of at most
    ``MAX_FILE_BYTES``, every member's declared size is checked before it is read, and the
    manifest's declared sizes are checked before any array is.
    """
    path = str(path)
    data = read_bounded(path, "package", error=PackageError)
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise PackageError(f"{path!r} is not a .flexor.npz package "
                           f"(not a zip archive, or truncated)")
    npz = NpzReader(data, repr(path), error=PackageError)
    with npz:
        members = set(npz.files)

        dtypes = {}

        def get(name, limit=MAX_MEMBER_BYTES):
            if name not in members:
                raise PackageError(f"member {name!r} is missing")
            array = npz.read(name, limit=limit)
            dtypes[name] = array.dtype
            return array

        raw = get("manifest", MAX_MANIFEST_BYTES * 4)        # UTF-32: 4 bytes a character
        if raw.shape != () or raw.dtype.kind != "U":
            raise PackageError(f"member 'manifest' must be a 0-d unicode string, "
                               f"not {raw.dtype} {list(raw.shape)}")
        manifest = loads_json(str(raw), "member 'manifest'", error=PackageError,
                              constants=True)        # NaN scales are refused by name below
        _validate_header(manifest)
        expected = {"manifest"}
        has = members.__contains__
        thresholds = None
        if manifest.get("input_quantizer") is not None:
            expected.add("input/thresholds")
            thresholds = get("input/thresholds")
        if manifest["version"] == 3:
            input_format, nodes = _parse_v3(manifest)
            prefixes = [f"nodes/{node.name}/" for node in nodes]
        else:
            input_format, parsed = _validate_manifest(manifest)
            nodes = chain([Layer(name=entry["name"], weight_shape=tuple(entry["weight_shape"]),
                                 q=entry["q"], n_in=entry["n_in"], n_out=entry["n_out"],
                                 n_tap=entry["n_tap"], relu=entry["relu"], output=output)
                           for entry, output in parsed])
            prefixes = [f"layers/{k}/" for k in range(len(nodes))]
        package = Package(name=manifest["name"], input_shape=tuple(manifest["input"]["shape"]),
                          input=input_format, nodes=nodes,
                          calibration=manifest.get("calibration"))
        if thresholds is not None:
            package.thresholds = _check_thresholds(thresholds, package)
            _check_dtypes(dtypes, {"input/thresholds": np.dtype(np.int64)})
            b = manifest["input_quantizer"]["bits_per_feature"]
            if package.thresholds.shape[1] != b:
                raise PackageError(f"member 'input/thresholds' has "
                                   f"{package.thresholds.shape[1]} thresholds per feature, but "
                                   f"the manifest says {b}")
        package.shapes()        # every node's input fits (names the node otherwise)
        for node, prefix in zip(nodes, prefixes):
            if node.weighted:
                expected.update(prefix + m for m in node.member_names())
                node.read_members(prefix, get, has)
                node.check_arrays(prefix)
                _check_dtypes(dtypes, {prefix + m: a.dtype for m, a in node.members().items()})
        unexpected = sorted(members - expected)
        if unexpected:
            raise PackageError(f"member {unexpected[0]!r} is not part of format version "
                               f"{manifest['version']}")
    return package


def _check_dtypes(read, expected):
    """The members as read have exactly the dtypes the format states (after the value checks,
    which name what is wrong with the values first)."""
    for name, dtype in expected.items():
        if name in read and read[name] != dtype:
            raise PackageError(f"member {name!r} has dtype {read[name]}, expected {dtype} "
                               f"(docs/package-format.md)")


def save(package, path):
    """Validate and write a package. The bytes depend only on the package's contents."""
    package.validate()
    members = [("manifest", np.array(json.dumps(package.manifest())))]
    members += package.member_arrays()
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
