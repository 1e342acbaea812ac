"""One module per op of the package graph (format v3). Each op class holds its manifest
validation, its integer and float golden model, its constants and its MAC count; the graph
walker is :mod:`flexor_hw.golden`."""

from .add import Add, AddConstants
from .base import QUANTIZED_BIT, Node, QuantFormat
from .conv2d import Conv2d
from .linear import Linear
from .pool import GlobalAvgPool, MaxPool2d, PoolConstants
from .weighted import LayerConstants, WeightedNode

__all__ = ["OPS", "Node", "QuantFormat", "QUANTIZED_BIT", "Linear", "Conv2d", "MaxPool2d",
           "GlobalAvgPool", "Add", "WeightedNode", "LayerConstants", "PoolConstants",
           "AddConstants"]

OPS = {cls.op: cls for cls in (Linear, Conv2d, MaxPool2d, GlobalAvgPool, Add)}
