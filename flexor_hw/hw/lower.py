"""Lowering: every package — chains of linear layers (with their input quantizer) and graphs
of conv, pool, linear and residual nodes — to one list of hardware stages."""

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Shape

from ..errors import BuildError
from ..gateware.top import PORT_OUT_LATENCY
from ..golden import graph_constants
from ..package import INPUT
from . import stages as S
from .int_planes import IntPlanes

__all__ = ["HwGraph", "lower"]


@dataclass(eq=False)
class HwGraph:
    """The hardware of one package: ``stages`` in stream order (a residual block's fork
    before its main path, its add after), what streams in and out."""

    name: str
    stages: list
    input_shape: tuple
    input_range: tuple
    frac_bits: int
    argmax: bool = False
    baseline: bool = False
    #: Folded to a device: what the next faster folding tried ran out of, ``{"cycles",
    #: "resource", "estimate", "available", "usable"}`` (None: as fast as the stages that do
    #: not fold allow, or not folded to a device).
    limit: dict = None

    @property
    def mvaus(self):
        return [st for st in self.stages if st.kind == "mvau"]

    def cycles_per_image(self):
        """The slowest stage's cycles per image: stages overlap on consecutive images."""
        return max(st.cycles_per_image() for st in self.stages)

    def latency(self):
        """A bound on the cycles from an image's last input beat to its last output beat:
        the stages' and the top's output register's."""
        return sum(st.latency() for st in self.stages) + PORT_OUT_LATENCY

    def estimate(self):
        """The stages' estimates summed, and the top's output register slice (a skid
        buffer of the output stream's width)."""
        port = S.skid_buffer_cost(Shape.cast(self.stages[-1].y_shape).width)
        total = {**port, "brams": 0, "dsps": 0}
        for st in self.stages:
            for key, value in st.estimate().items():
                total[key] += value
        return total

    def ideal_cycles(self, macs):
        """Every MAC lane busy every cycle: ``Σ MACs·q / Σ PE·SIMD·q``."""
        units = self.mvaus
        return (sum(macs[st.name] * st.weights.q for st in units)
                / sum(st.pe * st.simd * st.weights.q for st in units))


def _check(package, nodes):
    names = [n.name for n in nodes]
    for k, node in enumerate(nodes):
        expected = INPUT if k == 0 else nodes[k - 1].name
        if node.op not in ("conv2d", "maxpool2d", "linear", "global_avgpool", "add"):
            raise BuildError(f"node {node.name!r} is {node.op}: the hardware does not map it "
                             f"yet")
        if node.inputs[0] != expected:
            raise BuildError(f"node {node.name!r} reads {', '.join(node.inputs)}: the hardware "
                             f"maps chains of nodes with residual adds so far")
        if node.op == "add":
            src = node.inputs[1]
            start = 0 if src == INPUT else names.index(src) + 1
            users = [n.name for n in nodes if src in n.inputs]
            if len(users) != 2 or not 0 <= start < k or nodes[start].inputs[0] != src or \
                    any(n.op == "add" for n in nodes[start:k]):
                raise BuildError(f"node {node.name!r}: its skip input {src!r} must be the "
                                 f"input of the main path that ends in {node.inputs[0]!r}, "
                                 f"read by nothing else")
    if package.thresholds is not None and any(n.op != "linear" for n in nodes):
        raise BuildError("an input quantizer is supported in front of chains of linear layers "
                         "only, so far")


def lower(package, frac_bits, *, argmax=False, baseline=False):
    """The unfolded hardware graph of ``package`` (every matrix-vector unit at PE = SIMD = 1;
    :func:`flexor_hw.hw.fold.fold` folds it). Raises :class:`BuildError` naming the first
    node the hardware cannot map."""
    nodes = package.order()
    _check(package, nodes)
    shapes = package.shapes()
    consts = graph_constants(package, frac_bits)
    forks = {n.inputs[1]: n for n in nodes if n.op == "add"}
    stages = []
    fmt_in = package.input
    if package.thresholds is not None:
        stages.append(S.InputQuantizer(
            "quantizer", (fmt_in.lo, fmt_in.hi), (0, 1),
            thresholds=tuple(tuple(int(t) for t in row) for row in package.thresholds)))

    def fork_after(name):
        if name not in forks:
            return
        add = forks[name]
        c, h, w = shapes[name]
        fmt = package.format_of(name)
        stages.append(S.ResidualFork(f"{add.name}_fork", (fmt.lo, fmt.hi), (fmt.lo, fmt.hi),
                                     channels=c, height=h, width=w, stride=add.stride,
                                     pad_channels=tuple(add.pad_channels), add=add.name))

    fork_after(INPUT)
    for node in nodes:
        src = node.inputs[0]
        fmt = package.format_of(src)
        x = (fmt.lo, fmt.hi)
        in_shape = shapes[src]
        k = consts[node.name]
        if node.op == "conv2d":
            c, h, w = in_shape
            stages.append(S.SlidingWindow(f"{node.name}_window", x, x, channels=c, height=h,
                                          width=w, kernel=tuple(node.kernel),
                                          stride=tuple(node.stride),
                                          padding=tuple(node.padding)))
        if node.weighted:
            out = shapes[node.name]
            vectors = out[1] * out[2] if len(out) == 3 else 1
            if node.is_flexor:
                weights, unipolar = node, False
            else:
                weights, unipolar = IntPlanes(node), True
                k = weights.constants(k)
            # A linear layer after a spatial node flattens its input as it writes it.
            scatter = tuple(in_shape) if node.op == "linear" and len(in_shape) == 3 else None
            stages.append(S.Mvau(node.name, x, (k.y_lo, k.y_hi), op=node.op, weights=weights,
                                 consts=k, vectors=vectors, baseline=baseline and node.is_flexor,
                                 unipolar=unipolar, scatter=scatter))
        elif node.op == "maxpool2d":
            c, h, w = in_shape
            stages.append(S.MaxPool(node.name, x, x, channels=c, height=h, width=w,
                                    kernel=tuple(node.kernel), stride=tuple(node.stride)))
        elif node.op == "global_avgpool":
            c, h, w = in_shape
            stages.append(S.GlobalAvgPool(node.name, x, (k.y_lo, k.y_hi), channels=c,
                                          pixels=h * w, consts=k))
        elif node.op == "add":
            skip = package.format_of(node.inputs[1])
            c, h, w = shapes[node.name]
            stages.append(S.ResidualAdd(node.name, x, (k.y_lo, k.y_hi),
                                        skip_range=(skip.lo, skip.hi), consts=k, channels=c,
                                        height=h,
                                        skip_beats=int(np.prod(shapes[node.inputs[1]])),
                                        fork=f"{node.name}_fork"))
        fork_after(node.name)
    if argmax:
        last = stages[-1]
        n = int(shapes[nodes[-1].name][0])
        stages.append(S.Argmax("argmax", last.y_range, (0, max(1, n - 1)), n=n))
    return HwGraph(package.name, stages, tuple(package.input_shape),
                   stages[0].x_range, frac_bits, argmax=argmax, baseline=baseline)
