"""Activation-scale calibration: each node's output scale from real-valued sample inputs.

One float-reference pass over the graph (:func:`golden.run_graph_float`); every node with an
output format of its own (weighted nodes, ``global_avgpool``, ``add``) gets a scale that keeps
its bits and signedness. Max pools keep their input's format.

Two rules, recorded in the package's manifest (``calibration``):

- hidden nodes: the given percentile of ``|output|`` (99.9) maps to the top code: the rare
  larger activations are clamped, and the rest get a finer step;
- the output (the node whose format the network's output has): the largest ``|output|`` seen,
  times a headroom (2), maps to the top code, so no logit of the calibration data is clamped
  and the integer model's argmax follows the float model's wherever its top two logits differ
  by more than the quantization error.
"""

import numpy as np

from .errors import InputError
from .ops import QuantFormat

__all__ = ["calibrate_scales", "check_calibration", "output_format_node", "DEFAULT_PERCENTILE",
           "DEFAULT_HEADROOM"]


def check_calibration(package, x):
    """Real-valued calibration inputs ``[n, *input_shape]`` or ``[n, C·H·W]``, finite."""
    x = np.asarray(x)
    shape = list(package.input_shape)
    allowed = [shape] + ([[int(np.prod(shape))]] if len(shape) > 1 else [])
    if x.ndim < 2 or list(x.shape[1:]) not in allowed or len(x) == 0:
        text = " or ".join("[n, " + ", ".join(map(str, s)) + "]" for s in allowed)
        raise InputError(f"calibration data has shape {list(x.shape)}, expected {text}")
    if not np.issubdtype(x.dtype, np.number):
        raise InputError(f"calibration data has dtype {x.dtype}, expected numbers")
    if not np.isfinite(x).all():
        raise InputError("calibration data holds NaN or infinite values")
    return x.astype(np.float64)


DEFAULT_PERCENTILE = 99.9
DEFAULT_HEADROOM = 2.0


def output_format_node(package):
    """The node whose output format the network's output has (max pools keep their input's)."""
    node = package.output_node
    while node.op == "maxpool2d" and node.inputs[0] != "input":
        node = package.node(node.inputs[0])
    return node


def calibrate_scales(package, x_real, *, percentile=DEFAULT_PERCENTILE,
                     headroom=DEFAULT_HEADROOM):
    """Set the output scale of every node that has its own format (module doc); in place.
    Records the rules in ``package.calibration``."""
    from .golden import run_graph_float
    if not 0 < percentile <= 100:
        raise InputError(f"percentile must be above 0 and at most 100, not {percentile!r}")
    if not headroom >= 1:
        raise InputError(f"headroom must be at least 1, not {headroom!r}")
    outputs = run_graph_float(package, check_calibration(package, x_real))
    last = output_format_node(package)
    for node in package.order():
        if node.op == "maxpool2d":
            continue
        y = np.abs(outputs[node.name])
        if not y.size:
            top = 1.0
        elif node is last:
            top = float(y.max()) * headroom
        else:
            top = float(np.percentile(y, percentile))
        fmt = node.output
        node.output = QuantFormat(top / fmt.hi if top > 0 else 1.0 / fmt.hi, fmt.bits,
                                  fmt.signed)
    package.calibration = {"hidden": {"rule": "percentile", "percentile": float(percentile)},
                           "output": {"rule": "max", "headroom": float(headroom)}}
    return package
