"""Amaranth components of flexor-hw (gateware only; host code lives in flexor_hw/)."""

from .mvau import MatrixVectorUnit
from .repack import Repack
from .rom import Rom
from .top import DataflowTop
from .window import SlidingWindow
from .xor_decoder import XorDecoder, XorDecoderArray

__all__ = ["XorDecoder", "XorDecoderArray", "Rom", "MatrixVectorUnit", "Repack",
           "SlidingWindow", "DataflowTop"]
