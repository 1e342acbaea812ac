"""Amaranth components of flexor-hw (gateware only; host code lives in flexor_hw/)."""

from .engine import LayerEngine
from .mac import BinaryCodeMac
from .rom import Rom
from .window import SlidingWindow
from .xor_decoder import XorDecoder, XorDecoderArray

__all__ = ["XorDecoder", "XorDecoderArray", "Rom", "BinaryCodeMac", "LayerEngine", "SlidingWindow"]
