"""How one layer maps onto the layer engine: geometry, ROM images and cycle counts.

The engine reads one ROM word per step. A word holds ``lanes`` consecutive encrypted slices of
every bit-plane, so it decodes to ``W = lanes · n_out`` consecutive weight bits per plane, in the
row-major weight order of the package (slices are global and may straddle rows). A window
wider than the fan-in is cut into sub-steps of at most ``fan_in`` bits, so each step contains at
most one row boundary.
"""

import binascii
import operator
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from .errors import BuildError
from .gateware.params import EngineParams
from .golden import graph_constants, layer_constants
from .xor import decrypt

__all__ = ["LayerPlan", "Stage", "plan_layer", "plan_network", "plan_graph", "auto_lanes",
           "drop_idle_shadows", "use_activation_memory",
           "hex_lines"]


@dataclass(frozen=True, eq=False)
class LayerPlan:
    layer: object
    consts: object
    lanes: int
    baseline: bool = False      # ROM holds the decrypted bits: no XOR network (for comparison)
    unipolar: bool = False      # planes are 0/1 bits of int weights: S_i = T_i (int_planes)
    double_buffer: bool = True  # a shadow register loads the next vector during compute
    fifo_extra: int = 0         # output FIFO places beyond the pipeline's own
    act_memory: bool = False    # input vectors in a VectorBuffer memory, not registers
    mac_lanes: int = 0          # cap on the MAC's lanes (0: none): a word in sub-steps

    @property
    def q(self):
        return self.layer.q

    @property
    def fan_in(self):
        return self.layer.fan_in

    @property
    def out_features(self):
        return self.layer.out_features

    @cached_property
    def shape(self):
        """The engine's plain parameters without ROM contents (geometry, cycles, latency)."""
        return self.params(contents=False)

    def params(self, contents=True):
        """:class:`~flexor_hw.gateware.params.EngineParams` of this layer; with ``contents``
        the ROM and constant words too (for Amaranth's simulator)."""
        layer = self.layer
        return EngineParams(
            fan_in=layer.fan_in, out_features=layer.out_features, numel=layer.numel,
            n_slices=layer.n_slices, n_in=layer.n_in, n_out=layer.n_out, q=layer.q,
            lanes=self.lanes, consts=self.consts, x_width=self.consts.x_shape[0],
            xor=layer.xor, mac_lanes=self.mac_lanes, baseline=self.baseline,
            unipolar=self.unipolar, double_buffer=self.double_buffer,
            act_memory=self.act_memory, fifo_extra=self.fifo_extra,
            rom_words=tuple(self.rom_words()) if contents else None,
            const_words=tuple(self.const_words()) if contents else None)

    def rom_bytes(self):
        """Weight ROM image: ``uint8 [n_words, ceil(rom_width / 8)]``, little-endian words.

        Word ``w``, plane ``p``, lane ``l`` holds slice ``w·lanes + l`` of plane ``p`` at bits
        ``(p·lanes + l)·n_in :+ n_in`` (stored bit ``j`` at offset ``j``); missing slices of the
        last word are zero. A baseline plan stores the decrypted ``n_out`` bits instead.
        """
        layer = self.layer
        if self.baseline:       # decrypted slices, n_out bits each, in the same word layout
            stored = np.stack([decrypt(layer.xor[i], layer.encrypted[i]) for i in range(self.q)])
        else:
            stored = layer.encrypted
        width = stored.shape[2]
        padded = np.zeros((self.q, self.n_words * self.lanes, width), np.uint8)
        padded[:, :layer.n_slices] = stored
        bits = padded.reshape(self.q, self.n_words, self.lanes, width)
        bits = bits.transpose(1, 0, 2, 3).reshape(self.n_words, self.rom_width)
        return np.packbits(bits, axis=1, bitorder="little")

    def rom_words(self):
        """Weight ROM as Python ints (for Amaranth's simulator)."""
        return [int.from_bytes(row.tobytes(), "little") for row in self.rom_bytes()]

    def const_words(self):
        """Per-row constants as Python ints (two's complement fields, LSB first)."""
        fields = self.const_fields
        words = []
        for o in range(self.out_features):
            values = [int(self.consts.A[i, o]) for i in range(self.q)] + \
                     [int(self.consts.beta[o])]
            word, pos = 0, 0
            for value, width in zip(values, fields):
                word |= (value & ((1 << width) - 1)) << pos
                pos += width
            words.append(word)
        return words


# Figures of a plan are the engine's own (gateware.params): the plan only fills the numbers in.
for _name in ("window", "step_lanes", "steps_per_word", "step_sizes", "n_words", "n_steps",
              "rom_width", "rom_bits", "last_output_step", "cycles_per_inference",
              "tail_cycles", "shadow_bits", "activation_memory_bits",
              "activation_register_bits", "tree_stages", "sum_stages", "mac_latency",
              "row_interval", "fifo_depth", "latency_cycles", "const_fields", "const_width"):
    setattr(LayerPlan, _name, property(lambda self, _n=_name: getattr(self.shape, _n),
                                       doc=f"See :class:`EngineParams`.{_name}."))
del _name


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
        from .ops.base import check_acc
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


def hardware_layer(node):
    """What a layer engine maps for a weighted node: the node, or its int bit-planes."""
    return node if node.is_flexor else IntPlanes(node)


def use_activation_memory(plan):
    """The plan with its input vectors in a VectorBuffer when that saves registers: every
    step of a word takes ``M`` bits (``M`` divides the window, and the fan-in) and the fan-in
    spans at least four steps. Narrow layers keep the rotating register, which costs less
    there."""
    m = plan.step_lanes
    if plan.window % m == 0 and m <= plan.fan_in and plan.fan_in >= 4 * m:
        return replace(plan, act_memory=True)
    return plan


def check_lanes(layer, lanes, what="layer"):
    """``lanes`` as an int from 1 to the layer's slices per bit-plane, or a BuildError."""
    try:
        lanes = operator.index(lanes)
    except TypeError:
        raise BuildError(f"lanes must be a positive integer, not {lanes!r}") from None
    if not 1 <= lanes <= layer.n_slices:
        raise BuildError(f"lanes must be from 1 to {layer.n_slices} for {what} {layer.name!r} "
                         f"(its slices per bit-plane), not {lanes}")
    return lanes


def plan_layer(package, k, lanes, frac_bits, *, baseline=False):
    """Validate ``lanes`` and ``frac_bits`` for layer ``k`` and return its :class:`LayerPlan`."""
    layer = package.layers[k]
    lanes = check_lanes(layer, lanes)
    return LayerPlan(layer, layer_constants(package, k, frac_bits), lanes, baseline)


def auto_lanes(package, frac_bits):
    """Fewest lanes per layer so that no layer is slower than the slowest input loader.

    An engine loads its input one beat per cycle, so a vector costs at least fan-in + 1
    cycles in some layer; more lanes than needed to meet that only cost area.
    """
    target = max(layer.fan_in + 1 for layer in package.layers)
    lanes = []
    for k, layer in enumerate(package.layers):
        plan = plan_layer(package, k, 1, frac_bits)        # constants do not depend on lanes
        low = max(1, min(layer.n_slices, -(-layer.n_slices // target)))
        steps = {n: replace(plan, lanes=n).n_steps
                 for n in range(low, min(layer.n_slices, 4 * low) + 1)}
        lanes.append(min(steps, key=lambda n: (steps[n] > target, steps[n], n)))
    return lanes


def plan_network(package, lanes, frac_bits, *, baseline=False):
    """Plans of every layer. ``lanes``: one int for every layer, one per layer, or "auto"."""
    n = len(package.layers)
    if lanes == "auto":
        lanes = auto_lanes(package, frac_bits)
    per_layer = list(lanes) if isinstance(lanes, (list, tuple)) else [lanes] * n
    if len(per_layer) != n:
        raise BuildError(f"lanes needs one value or {n} values (one per layer), "
                         f"not {len(per_layer)}")
    plans = [plan_layer(package, k, per_layer[k], frac_bits, baseline=baseline)
             for k in range(n)]
    return drop_idle_shadows(plans)


def drop_idle_shadows(plans):
    """Single-buffer the layers that are not bottlenecks, to save their shadow registers.

    A layer without a shadow loads only while idle, so it takes fan-in + 1 + steps cycles per
    vector; it qualifies when that stays within the slowest layer's cycles. Its producer keeps
    emitting meanwhile, so the producer's output FIFO grows by what it emits during the
    layer's steps — worth it only when that costs well under the shadow's bits.
    """
    bottleneck = max(p.cycles_per_inference for p in plans)
    plans = list(plans)
    for k, plan in enumerate(plans):
        if plan.fan_in + 1 + plan.n_steps > bottleneck:
            continue
        extra = 0
        if k > 0:
            prev = plans[k - 1]
            extra = -(-plan.n_steps * plan.fan_in // bottleneck) + 2
            if 2 * extra * prev.consts.y_shape[0] >= plan.shadow_bits:
                continue
            plans[k - 1] = replace(prev, fifo_extra=prev.fifo_extra + extra)
        plans[k] = replace(plan, double_buffer=False)
    return plans


def hex_lines(words_bytes, width):
    """``$readmemh`` text for little-endian word bytes: one word per line, MSB first."""
    n_words, n_bytes = words_bytes.shape
    digits = -(-width // 4)
    flipped = np.ascontiguousarray(words_bytes[:, ::-1])
    text = np.frombuffer(binascii.hexlify(flipped.tobytes()), dtype="S1")
    text = text.reshape(n_words, 2 * n_bytes)[:, 2 * n_bytes - digits:]
    lines = np.concatenate([text, np.full((n_words, 1), b"\n", dtype="S1")], axis=1)
    return lines.tobytes()


@dataclass(frozen=True, eq=False)
class Stage:
    """One hardware stage of a graph network, in plain terms for the gateware.

    ``kind`` is ``"conv"`` (a window unit and a layer engine), ``"linear"`` (a layer engine,
    after a ``Flatten`` when ``flatten`` is the ``(C, H, W)`` of a spatial input) or
    ``"maxpool"``. ``in_shape`` is the input's ``(C, H, W)`` or ``(features,)``;
    activations stream in ``(y, x, c)`` order between spatial stages.
    """

    kind: str
    node: object
    in_shape: tuple
    out_shape: tuple
    plan: "LayerPlan | None" = None
    x_range: tuple = (0, 0)            # integer range of the stage's input
    consts: object = None              # gap and add: the node's constants
    skip_range: tuple = (0, 0)         # add: integer range of the skip input
    skip_shape: tuple = ()             # add: shape of the skip input (before its shortcut)
    skip_depth: int = 0                # add: places of the skip FIFO (skip_fifo_depth)
    skip_from: str = ""                # add: the node whose output the skip path forks off

    @property
    def flatten(self):
        return self.kind == "linear" and len(self.in_shape) == 3

    @property
    def pixels(self):
        """Output pixels per image of a conv (vectors its engine computes per image)."""
        return self.out_shape[1] * self.out_shape[2] if self.kind == "conv" else 1

    @property
    def cycles_per_image(self):
        """Unstalled cycles per image at the stage's steady state."""
        if self.kind == "maxpool":
            c, oh, ow = self.out_shape
            return oh * ow * c * self.node.kernel[0] * self.node.kernel[1]
        if self.kind == "gap":
            return int(np.prod(self.in_shape)) + self.out_shape[0]
        if self.kind == "add":
            return int(np.prod(self.skip_shape))     # every skip beat passes, kept or not
        cycles = self.pixels * self.plan.cycles_per_inference
        if self.flatten:                 # the frame buffer streams one beat per cycle
            cycles = max(cycles, int(np.prod(self.in_shape)))
        return cycles


def _steps_per_vector(n_slices, n_out, lanes, mac_lanes, fan_in):
    """ROM steps of one vector with ``lanes`` slices per word cut into steps of
    ``mac_lanes`` bits (as :class:`LayerPlan` counts them)."""
    window = lanes * n_out
    m = min(window, fan_in, mac_lanes)
    return -(-n_slices // lanes) * -(-window // m), m


def balanced_lanes(layer, pixels, target):
    """``(lanes, mac_lanes)`` of the fewest MAC lanes that keep a weighted node's cycles per
    image, ``pixels · max(steps, fan_in + 2)``, within ``target``.

    A word of ``lanes`` slices decodes ``W = lanes · n_out`` bits per plane; the MAC takes
    them ``M`` at a time (``M`` divides ``W`` or is the fan-in), so a node that needs less than
    one slice per cycle gets fewer MAC lanes, and the network's lanes stay where its
    bottleneck needs them (FINN's folding). Ties go to fewer slices per word (a narrower ROM).
    """
    f, n_out, n_slices = layer.fan_in, layer.n_out, layer.n_slices
    per_vector = max(1, target // pixels)
    need = -(-n_slices * n_out // per_vector)       # bits per step that meet the target
    max_lanes = min(n_slices, max(1, -(-need // n_out)) * 4 + 4)
    fits = []                                       # (M, lanes) that meet the target
    for lanes in range(1, max_lanes + 1):
        window = lanes * n_out
        for m in sorted({min(window, f)} | {m for m in range(1, min(window, f) + 1)
                                             if window % m == 0}):
            steps, m = _steps_per_vector(n_slices, n_out, lanes, m, f)
            if pixels * max(steps, f + 2) <= target:
                fits.append((m, lanes))
                break                   # a larger M for these lanes only costs more
    if not fits:                        # nothing meets the target: the most slices per word
        return max_lanes, 0
    # Within 10 % of the fewest MAC lanes, the fewest slices per word: a wide ROM word
    # costs block RAMs by its width (a 36-bit port each), while a few MAC lanes cost little.
    fewest = min(m for m, _ in fits)
    m, lanes = min(((m, n) for m, n in fits if m <= fewest * 1.1), key=lambda c: (c[1], c[0]))
    return lanes, (0 if m == min(lanes * n_out, f) else m)


def _graph_lanes(package, nodes, shapes, lanes, frac_bits):
    """``(lanes, mac_lanes)`` per weighted node (``mac_lanes`` 0: as many as the window)."""
    weighted = [n for n in nodes if n.weighted]
    if lanes == "auto":
        # The input-bound target, per image: no engine needs to be faster than the slowest
        # one loading its windows at one beat per cycle (and a tail cycle).
        def pixels(n):
            s = shapes[n.name]
            return s[1] * s[2] if len(s) == 3 else 1
        target = max(pixels(n) * (n.fan_in + 2) for n in weighted)
        return [balanced_lanes(hardware_layer(n), pixels(n), target) for n in weighted]
    per = list(lanes) if isinstance(lanes, (list, tuple)) else [lanes] * len(weighted)
    if len(per) != len(weighted):
        raise BuildError(f"lanes needs one value or {len(weighted)} values (one per weighted "
                         f"node), not {len(per)}")
    return [(n, 0) for n in per]


def rows_needed(node, out_row, in_height, *, held=False):
    """Complete input rows a window stage needs before it can emit output row ``out_row``;
    with ``held``, the rows its line buffer can hold by then (``kh + sh`` rows: it takes
    ``sh`` rows beyond what it needs)."""
    k, st = node.kernel[0], node.stride[0]
    p = node.padding[0] if node.op == "conv2d" else 0
    return max(0, min(in_height, out_row * st - p + k + (st if held else 0)))


def skip_fifo_depth(main_path, add, shapes, channels_in, width_in, *, full_rate=True):
    """Places the skip FIFO of a residual block needs so that the block cannot deadlock.

    The fork sends each beat of the block input X to the main path and to the skip FIFO,
    waiting for both. The add takes output ``(oy, ox, c)`` of the main path together with its
    skip beat, which sits ``Q = ((oy·s)·W + ox·s)·C + c`` beats into X. Before the main path
    can emit any output of row ``oy``, its window units need ``P(oy)`` beats of X: whole rows,
    composed back through every window stage of the path (``rows_needed``). Beats
    ``[Q, P)`` must wait in the FIFO meanwhile, so the depth is ``max_oy (P(oy) − Q(oy))``
    over the rows of the add (``Q`` at ``ox = c = 0``), plus one pixel of slack for the
    fork's and shortcut's registers. With fewer places the fork stalls the main path while it
    still needs input: the classic deadlock of skip connections in dataflow accelerators.

    That minimum is deadlock-free but paces the main path at the add's speed (1.2–1.7× the
    cycles per image in simulation). With ``full_rate`` (the default) ``P`` counts the rows
    every window stage's line buffer can hold (``sh`` more than it needs), so the fork never
    holds the main path back and the block runs at its slowest stage's rate.

    With a stride-``s`` shortcut the pixels it drops never enter the FIFO (they are dropped
    as they arrive), so of the beats ``[Q, P)`` only those of rows and columns that are
    multiples of ``s`` take a place: ``⌈rows/s⌉ · ⌈W/s⌉ · C``.
    """
    s = add.stride
    kept_row_beats = -(-width_in // s) * channels_in
    out_rows = shapes[add.name][1]
    worst = 0
    for oy in range(out_rows):
        rows = oy + 1               # rows of the last main stage's output needed (0..oy)
        for node in reversed(main_path):
            if node.op in ("conv2d", "maxpool2d"):
                rows = rows_needed(node, rows - 1, shapes[node.inputs[0]][1], held=full_rate)
        worst = max(worst, -(-(rows - oy * s) // s) * kept_row_beats)
    return worst + channels_in + 2


def plan_graph(package, lanes, frac_bits, *, baseline=False):
    """Stages of a graph network: ``conv2d``, ``maxpool2d``, ``linear``, ``global_avgpool``
    (FleXOR weights) in a chain, and residual ``add`` nodes whose second input forks off the
    input of the main path that ends in their first input.

    ``lanes``: one int for every weighted node, one per weighted node, or ``"auto"``.
    Raises :class:`BuildError` naming the first node the hardware cannot map yet.
    """
    nodes = package.order()
    names = [n.name for n in nodes]
    for k, node in enumerate(nodes):
        expected = "input" if k == 0 else nodes[k - 1].name
        if node.op not in ("conv2d", "maxpool2d", "linear", "global_avgpool", "add"):
            raise BuildError(f"node {node.name!r} is {node.op}: the hardware does not map it "
                             f"yet")
        if node.inputs[0] != expected:
            raise BuildError(f"node {node.name!r} reads {', '.join(node.inputs)}: the hardware "
                             f"maps chains of nodes with residual adds so far")
        if node.op == "add":
            src = node.inputs[1]
            start = 0 if src == "input" else names.index(src) + 1
            users = [n.name for n in nodes if src in n.inputs]
            if len(users) != 2 or not 0 <= start < k or nodes[start].inputs[0] != src or \
                    any(n.op == "add" for n in nodes[start:k]):
                raise BuildError(f"node {node.name!r}: its skip input {src!r} must be the "
                                 f"input of the main path that ends in {node.inputs[0]!r}, "
                                 f"read by nothing else")
    if package.thresholds is not None:
        raise BuildError("an input quantizer is supported in front of chains of linear layers "
                         "only, so far")
    shapes = package.shapes()
    consts = graph_constants(package, frac_bits)
    per_node = iter(_graph_lanes(package, nodes, shapes, lanes, frac_bits))
    stages = []
    for k, node in enumerate(nodes):
        in_shape = shapes[node.inputs[0]]
        fmt = package.format_of(node.inputs[0])
        plan, extra = None, {}
        if node.weighted:
            n, mac_lanes = next(per_node)
            if node.is_flexor:
                n = check_lanes(node, n, "node")
                plan = LayerPlan(node, consts[node.name], n, baseline, mac_lanes=mac_lanes)
            else:
                view = hardware_layer(node)
                n = check_lanes(view, n, "node")
                plan = LayerPlan(view, view.constants(consts[node.name]), n, unipolar=True,
                                 mac_lanes=mac_lanes)
            plan = use_activation_memory(plan)
        elif node.op in ("global_avgpool", "add"):
            extra["consts"] = consts[node.name]
        if node.op == "add":
            src = node.inputs[1]
            start = 0 if src == "input" else names.index(src) + 1
            skip = shapes[src]
            sfmt = package.format_of(src)
            extra.update(skip_range=(sfmt.lo, sfmt.hi), skip_shape=tuple(skip), skip_from=src,
                         skip_depth=skip_fifo_depth(nodes[start:k], node, shapes, skip[0],
                                                    skip[2]))
        kind = {"conv2d": "conv", "maxpool2d": "maxpool", "linear": "linear",
                "global_avgpool": "gap", "add": "add"}[node.op]
        stages.append(Stage(kind, node, tuple(in_shape), tuple(shapes[node.name]), plan,
                            (fmt.lo, fmt.hi), **extra))
    return _single_buffer_idle_linears(stages)


def _single_buffer_idle_linears(stages):
    """Give a linear stage's activation memory room for one vector, not two, when loading
    and computing in turn still keeps it, with its producer stalled meanwhile, within the
    slowest stage's cycles per image: half the memory (fc1 of LeNet-5: 3 block RAMs)."""
    bottleneck = max(st.cycles_per_image for st in stages)
    out = list(stages)
    for k, st in enumerate(out):
        if st.kind != "linear" or not st.plan.act_memory or k == 0:
            continue
        single = replace(st, plan=replace(st.plan, double_buffer=False))
        if out[k - 1].cycles_per_image + single.cycles_per_image <= bottleneck:
            out[k] = single
    return out
