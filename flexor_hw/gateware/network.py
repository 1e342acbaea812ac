"""Network top: layer engines chained by streams."""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .argmax import Argmax
from .engine import LayerEngine
from .quantizer import InputQuantizer
from .mac import _shape, output_shape

__all__ = ["NetworkTop", "GraphTop"]


class NetworkTop(wiring.Component):
    """Layer engines in a chain: each layer's requantized outputs stream into the next.

    Parameters
    ----------
    plans : list of :class:`flexor_hw.plan.LayerPlan`
    init_files : list of (str, str), optional
        Per layer ``(weights, constants)`` ``$readmemh`` file names, for emission.

    Attributes
    ----------
    i : In(stream.Signature(input shape))
        First layer's activations, one per beat.
    o : Out(stream.Signature(output shape))
        Last layer's outputs, one per beat.
    """

    def __init__(self, plans, *, init_files=None, argmax=False, quantizer=None):
        if not plans:
            raise ValueError("A network needs at least one layer")
        self._plans = list(plans)
        self._init_files = init_files
        self._argmax = bool(argmax)
        self._quantizer = quantizer        # (thresholds, raw QuantFormat) or None
        c = plans[0].consts
        out_shape = (range(max(2, plans[-1].out_features)) if argmax
                     else output_shape(plans[-1]))
        in_shape = (_shape(c.x_lo, c.x_hi) if quantizer is None
                    else _shape(quantizer[1].lo, quantizer[1].hi))
        super().__init__({
            "i": In(stream.Signature(in_shape)),
            "o": Out(stream.Signature(out_shape)),
        })

    @property
    def argmax(self):
        return self._argmax

    @property
    def plans(self):
        return self._plans

    @property
    def cycles_per_inference(self):
        """The slowest layer's cycles per vector (engines double-buffer their inputs), or the
        argmax's if that is slower."""
        layers = max(p.cycles_per_inference for p in self._plans)
        if not self._argmax:
            return layers
        return max(layers, Argmax.vector_cycles(self._plans[-1].out_features))

    @property
    def latency(self):
        """Last input transfer to last output transfer of a vector, for an idle network."""
        quantizer = 0 if self._quantizer is None else len(self._quantizer[0][0])
        return (sum(p.latency_cycles for p in self._plans) + quantizer
                + (Argmax.latency if self._argmax else 0))

    def elaborate(self, platform):
        m = Module()
        engines = []
        for k, plan in enumerate(self._plans):
            files = None if self._init_files is None else self._init_files[k]
            engine = LayerEngine(plan.params(contents=files is None), init_files=files)
            m.submodules[f"layer{k}"] = engine
            engines.append(engine)
        first = engines[0].i
        if self._quantizer is not None:
            thresholds, raw = self._quantizer
            m.submodules.quantizer = quant = InputQuantizer(thresholds, _shape(raw.lo, raw.hi))
            m.d.comb += [first.payload.eq(quant.o.payload), first.valid.eq(quant.o.valid),
                         quant.o.ready.eq(first.ready)]
            first = quant.i
        m.d.comb += [first.payload.eq(self.i.payload), first.valid.eq(self.i.valid),
                     self.i.ready.eq(first.ready)]
        for prev, nxt in zip(engines, engines[1:]):
            # Shapes may differ (a ReLU output is unsigned, the next input format signed):
            # values always fit, so a plain assignment converts.
            m.d.comb += [nxt.i.payload.eq(prev.o.payload), nxt.i.valid.eq(prev.o.valid),
                         prev.o.ready.eq(nxt.i.ready)]
        last = engines[-1].o
        if self._argmax:
            m.submodules.argmax = argmax = Argmax(self._plans[-1].out_features,
                                                  output_shape(self._plans[-1]))
            wiring.connect(m, last, argmax.i)
            last = argmax.o
        m.d.comb += [self.o.payload.eq(last.payload), self.o.valid.eq(last.valid),
                     last.ready.eq(self.o.ready)]
        return m


# ROMs of a graph network up to this many bits are logic, not block RAM: a few hundred
# constants (or a first conv's 640 weight bits) would each take a whole 18 Kbit block RAM,
# and block RAM is what a FleXOR network's weights need. (4096 bits: a quarter of one.)
LOGIC_ROM_BITS = 4096


class GraphTop(wiring.Component):
    """A chain of stages of a graph network: conv (window unit + layer engine), max pool,
    linear (after a flatten from a spatial input), in the order given. Spatial activations
    stream in ``(y, x, c)`` order; the network's input is an image in that order. Emitted
    ROMs of at most :data:`LOGIC_ROM_BITS` bits are logic.

    Parameters
    ----------
    stages : list of :class:`flexor_hw.plan.Stage`
    init_files : list of (str, str), optional
        Per weighted stage ``(weights, constants)`` ``$readmemh`` file names, for emission.
    argmax : bool
        End with an :class:`Argmax` over the last stage's outputs.
    """

    def __init__(self, stages, *, init_files=None, argmax=False):
        if not stages:
            raise ValueError("A network needs at least one stage")
        self._stages = list(stages)
        self._init_files = init_files
        self._argmax = bool(argmax)
        last = self._stages[-1]
        if last.plan is not None:
            out_shape = output_shape(last.plan)
        elif last.consts is not None:                   # gap, add
            out_shape = _shape(last.consts.y_lo, last.consts.y_hi)
        else:                                           # max pool
            out_shape = _shape(*last.x_range)
        if argmax:
            out_shape = range(max(2, int(last.out_shape[0])))
        self._out_shape = out_shape
        super().__init__({"i": In(stream.Signature(_shape(*self._stages[0].x_range))),
                          "o": Out(stream.Signature(out_shape))})

    @property
    def argmax(self):
        return self._argmax

    @property
    def stages(self):
        return self._stages

    @property
    def cycles_per_inference(self):
        """The slowest stage's cycles per image (stages overlap on consecutive images)."""
        cycles = max(s.cycles_per_image for s in self._stages)
        if self._argmax:
            cycles = max(cycles, Argmax.vector_cycles(int(self._stages[-1].out_shape[0])))
        return cycles

    def stage_modules(self):
        """Per stage, the names of the submodules that implement it (for per-node resource
        reports): a weighted stage's engine ``layer{n}`` (``n`` counts weighted stages) and
        its window or flatten, ``pool{k}``, ``gap{k}``, ``add{k}`` with the skip path that
        feeds it (``fork``, ``subsample``, ``skip_fifo``, ``shortcut``, suffixed by the index of the stage
        it forks off, or ``_in``)."""
        names, weighted = [], 0
        index = {st.node.name: k for k, st in enumerate(self._stages)}
        for k, st in enumerate(self._stages):
            if st.kind == "maxpool":
                mods = [f"pool{k}"]
            elif st.kind == "gap":
                mods = [f"gap{k}"]
            elif st.kind == "add":
                j = "_in" if st.skip_from == "input" else index[st.skip_from]
                mods = [f"add{k}", f"fork{j}", f"subsample{j}", f"skip_fifo{j}",
                        f"shortcut{j}"]
            else:
                mods = [f"layer{weighted}"] + ([f"window{k}"] if st.kind == "conv" else []) \
                    + ([f"flatten{k}"] if st.flatten else [])
                weighted += 1
            names.append(mods)
        return names

    @property
    def latency(self):
        """A bound on the cycles from an image's last input beat to its last output beat, for
        an idle network: every stage's cycles per image, one after another."""
        return (sum(s.cycles_per_image + (s.plan.latency_cycles if s.plan else 4)
                    for s in self._stages) + (Argmax.latency if self._argmax else 0))

    def elaborate(self, platform):
        from amaranth.lib.fifo import SyncFIFOBuffered

        from .add import ResidualAdd, Shortcut
        from .pool import GlobalAvgPool, MaxPool
        from .reorder import Flatten
        from .stream import Fork
        from .window import SlidingWindow
        m = Module()
        cur = self.i                    # the stream the next stage reads
        skips = {}                      # add node name -> the skip path's output stream
        forks = {st.skip_from: st for st in self._stages if st.kind == "add"}
        weighted = 0

        def fork_here(name, k):
            """The output ``cur`` of ``name`` feeds a residual block: fork it, buffer the
            skip side in a FIFO of the computed depth, and apply the shortcut."""
            nonlocal cur
            st = forks[name]
            shape = _shape(*st.skip_range)
            m.submodules[f"fork{k}"] = fork = Fork(shape)
            _join(m, cur, fork.i)
            cur = fork.a
            # The option-A shortcut in two halves around the FIFO: pixels are dropped as the
            # block input arrives (the FIFO keeps only what the add will take; dropping behind
            # it held the add, and the main path, for a row at every odd input row), and the
            # zero channels are added where the add takes them.
            c, h, w = st.skip_shape
            s = st.node.stride
            before, after = st.node.pad_channels
            m.submodules[f"subsample{k}"] = sub = Shortcut(shape, c, h, w, s)
            wiring.connect(m, fork.b, sub.i)
            m.submodules[f"skip_fifo{k}"] = fifo = SyncFIFOBuffered(width=shape.width,
                                                                     depth=st.skip_depth)
            m.d.comb += [fifo.w_data.eq(sub.o.payload), fifo.w_en.eq(sub.o.valid),
                         sub.o.ready.eq(fifo.w_rdy)]
            m.submodules[f"shortcut{k}"] = sc = Shortcut(shape, c, -(-h // s), -(-w // s), 1,
                                                         before, after)
            m.d.comb += [sc.i.payload.eq(fifo.r_data), sc.i.valid.eq(fifo.r_rdy),
                         fifo.r_en.eq(sc.i.ready)]
            skips[st.node.name] = sc.o

        if "input" in forks:
            fork_here("input", "_in")
        for k, st in enumerate(self._stages):
            shape = _shape(*st.x_range)
            if st.kind == "maxpool":
                c, h, w = st.in_shape
                unit = MaxPool(shape, c, h, w, st.node.kernel, stride=st.node.stride)
                m.submodules[f"pool{k}"] = unit
                first, out = unit.i, unit.o
            elif st.kind == "gap":
                c, h, w = st.in_shape
                k_ = st.consts
                unit = GlobalAvgPool(shape, _shape(k_.y_lo, k_.y_hi), c, h * w, k_.A,
                                     k_.frac_bits, k_.y_lo, k_.y_hi)
                m.submodules[f"gap{k}"] = unit
                first, out = unit.i, unit.o
            elif st.kind == "add":
                k_ = st.consts
                unit = ResidualAdd(shape, _shape(*st.skip_range), _shape(k_.y_lo, k_.y_hi),
                                   k_.A_a, k_.A_b, k_.frac_bits, k_.y_lo, k_.y_hi)
                m.submodules[f"add{k}"] = unit
                _join(m, skips[st.node.name], unit.b)
                first, out = unit.a, unit.o
            else:
                files = None if self._init_files is None else self._init_files[weighted]
                engine = LayerEngine(st.plan.params(contents=files is None), init_files=files,
                                     logic_rom_bits=LOGIC_ROM_BITS)
                m.submodules[f"layer{weighted}"] = engine
                weighted += 1
                first, out = engine.i, engine.o
                if st.kind == "conv":
                    c, h, w = st.in_shape
                    node = st.node
                    window = SlidingWindow(shape, c, h, w, node.kernel, stride=node.stride,
                                           padding=node.padding)
                    m.submodules[f"window{k}"] = window
                    wiring.connect(m, window.o, engine.i)
                    first = window.i
                elif st.flatten:
                    c, h, w = st.in_shape
                    m.submodules[f"flatten{k}"] = flat = Flatten(shape, c, h, w)
                    wiring.connect(m, flat.o, engine.i)
                    first = flat.i
            _join(m, cur, first)
            cur = out
            if st.node.name in forks:
                fork_here(st.node.name, k)
        if self._argmax:
            m.submodules.argmax = argmax = Argmax(int(self._stages[-1].out_shape[0]),
                                                  cur.payload.shape())
            _join(m, cur, argmax.i)
            cur = argmax.o
        _join(m, cur, self.o)
        return m


def _join(m, src, dst):
    """Connect stream ``src`` (an output) to ``dst`` (an input); payload shapes may differ
    (a ReLU output is unsigned, the next input format signed): values always fit."""
    m.d.comb += [dst.payload.eq(src.payload), dst.valid.eq(src.valid), src.ready.eq(dst.ready)]
