"""Convolution engine: a :class:`SlidingWindow` feeding a :class:`LayerEngine`."""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .engine import LayerEngine
from .mac import _shape
from .window import SlidingWindow

__all__ = ["ConvEngine"]


class ConvEngine(wiring.Component):
    """A conv layer in hardware: each output pixel's window, in the weights' fan-in order
    ``(c, ky, kx)``, is one input vector of a :class:`LayerEngine` whose fan-in is
    ``C·kh·kw``; the engine re-reads its weight ROM for every pixel (XOR decoding is stateless,
    so a re-read costs only ROM bandwidth, which FleXOR shrinks).

    Streams: ``i`` takes an image in ``(y, x, c)`` order; ``o`` gives the output map in
    ``(oy, ox, o)`` order — the order the next conv or pool takes.

    Parameters
    ----------
    params : :class:`flexor_hw.gateware.params.EngineParams`
        Of the engine: fan-in ``channels·kh·kw``.
    channels, height, width : int
        Of the input map.
    kernel, stride, padding : int or (int, int)
        As for :class:`SlidingWindow`.
    init_files : tuple of str, optional
        As for :class:`LayerEngine`.
    """

    def __init__(self, params, channels, height, width, kernel, *, stride=1, padding=0,
                 init_files=None):
        c = params.consts
        self._window = SlidingWindow(_shape(c.x_lo, c.x_hi), channels, height, width, kernel,
                                     stride=stride, padding=padding)
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        if channels * kh * kw != params.fan_in:
            raise ValueError(f"A {channels}-channel {kh}×{kw} window has {channels * kh * kw} "
                             f"elements, but the engine's fan-in is {params.fan_in}")
        self._engine = LayerEngine(params, init_files=init_files)
        super().__init__({"i": In(stream.Signature(_shape(c.x_lo, c.x_hi))),
                          "o": Out(stream.Signature(self._engine.o.payload.shape()))})

    @property
    def output_size(self):
        return self._window.output_size

    @property
    def cycles_per_image(self):
        """Unstalled cycles per image: every output pixel costs the engine's cycles per
        vector (the window unit supplies one beat per cycle, as the engine takes them)."""
        oh, ow = self.output_size
        return oh * ow * self._engine.cycles_per_inference

    def elaborate(self, platform):
        m = Module()
        m.submodules.window = self._window
        m.submodules.engine = self._engine
        wiring.connect(m, wiring.flipped(self.i), self._window.i)
        wiring.connect(m, self._window.o, self._engine.i)
        wiring.connect(m, self._engine.o, wiring.flipped(self.o))
        return m
