"""Activation-scale calibration: each node's output scale from real-valued sample inputs.

One float-reference pass over the graph (:func:`golden.run_graph_float`); every node with an
output format of its own (weighted nodes, ``global_avgpool``, ``add``) gets the scale that maps
the given percentile of ``|output|`` to its top code, keeping its bits and signedness. Max pools
keep their input's format.
"""

import numpy as np

from .errors import InputError
from .ops import QuantFormat

__all__ = ["calibrate_scales", "check_calibration"]


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


def calibrate_scales(package, x_real, *, percentile=99.9):
    """Set the output scale of every node that has its own format (module doc); in place."""
    from .golden import run_graph_float
    outputs = run_graph_float(package, check_calibration(package, x_real))
    for node in package.order():
        if node.op == "maxpool2d":
            continue
        y = outputs[node.name]
        top = float(np.percentile(np.abs(y), percentile)) if y.size else 1.0
        fmt = node.output
        node.output = QuantFormat(top / fmt.hi if top > 0 else 1.0 / fmt.hi, fmt.bits,
                                  fmt.signed)
    return package
