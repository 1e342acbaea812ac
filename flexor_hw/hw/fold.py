"""Folding pass (FINN's ``set_folding``): every matrix-vector unit's ``PE × SIMD`` and its
output beat width, to one rate for the whole graph, or to a device.

A rate is cycles per image ``T``. Stages that do not fold (windows, pools, the flatten, the
1-wide input) bound ``T`` from below. For a given ``T`` each unit takes the cheapest folding
that meets it (:func:`fold_unit`); :func:`fold_to_device` takes the fastest ``T`` whose
estimated resources fit the device with a margin, and refuses before synthesis, naming the
resource, when even the narrowest folding does not. :func:`match_widths` then puts a
:class:`~flexor_hw.hw.stages.Repack` wherever two neighbours' beats differ.
"""

import functools
import itertools
import math
import re
import weakref
from dataclasses import replace

from ..errors import BuildError
from ..gateware.mvau import mvau_cycles, stationary_refusal
from . import stages as S
from .fifo import size_fifos

__all__ = ["fold", "fold_unit", "fold_to_device", "parse_fold", "parse_budget",
           "match_widths", "limit_text", "fuse_pools", "MARGIN"]

#: Share of a device's LUTs and flip-flops a folding may fill (routing and packing need the
#: rest). On the ECP5-25k, LeNet-5 estimated at 13,426 LUT4 (55 %) placed and routed in 5
#: minutes (16,842 of 24,288 slice LUTs with carries and LUT RAM, 69 %); one estimated at
#: 15,272 (63 %) placed at 77 % and router2 did not converge in 20 minutes; one at 84 % found
#: no legal placement; with the data path reset-less, one at 17,688 (73 %) found none at four
#: seeds, where 13,423 (55 %) placed at 58 % and 104.9 MHz; with the masks in the adders'
#: carry chains, one at 17,148 (71 %) placed, 19,118 LUT4 and 90 % of the slices' LUT
#: places, but at 79.9 MHz (31,361 cycles: 2,549 images/s, where 43,904 at 65 % place at
#: 105.6-109.5 MHz, 2,494). On the iCE40 the logic cells
#: (LUT4 + flip-flops) within 83 %: the digits MLP estimated at 3,818 (72 %) placed in 3,520
#: at 54.8 MHz, and with the serial link (4,358, 82.5 %) in 3,869; a faster folding
#: estimated at 4,399 (83.3 %) placed at 47.6 MHz.
MARGIN = {"luts": 0.65, "ffs": 0.85, "cells": 0.83}

#: Units are folded to 1/32 faster than the rate, so that a window or pool stays the one
#: bottleneck: two stages at exactly the same rate in a row lose cycles to each other's
#: bursts (a ResNet block of row windows and units all at 12,288 cycles ran at 12,301).
UNIT_SLACK = 32

#: Weights of (LUT4, flip-flops, block RAMs) tried in turn where reweighing finds no folding
#: that fits: each unit takes its cheapest folding by one weighted sum, and reweighing moves
#: all of them between the extremes at once. LeNet-5 under a LUT budget of 55 % of the
#: ECP5-25k (8,683 LUT4 usable): reweighing found only foldings of 5,357 LUT4 and 103 block
#: RAMs or of 40,673 and 39, and the build was refused, where the grid folds it at 156,801
#: cycles per image in 8,179 LUT4 and 56 block RAMs. The weights at their largest are 1 (a
#: grid point scaled down is the same point).
WEIGHT_GRID = tuple(w for w in itertools.product((1.0, 0.3, 0.1), repeat=3) if max(w) == 1.0)


@functools.lru_cache(maxsize=None)
def _divisors(n):
    return tuple(d for d in range(1, n + 1) if n % d == 0)


@functools.lru_cache(maxsize=None)
def _rows_per_beat(pe, out, sf):
    """Output beat width ``R``: the fewest rows per beat (``R | PE``, ``R | O``) that
    serialize a row group within its ``SF`` steps; the most if none does."""
    options = [r for r in _divisors(math.gcd(pe, out))]
    for r in options:
        if pe // r <= sf:
            return r
    return options[-1]


def _simd_candidates(unit, narrow=False):
    """SIMD widths worth trying. A FleXOR unit decodes whole slices of ``n_out`` bits, so a
    SIMD below ``n_out`` would store each slice in several words (the ROM grows towards one
    bit per weight and more), and a row segment that starts inside a slice stores that slice
    again: wider SIMD wastes less. Its candidates are ``n_out`` times 1, 2, 3, 4, 6, 8, 12 …,
    divisors of the fan-in from ``n_out`` up, and the fan-in itself; with ``narrow``, also
    the divisors of ``n_out`` below it, for a unit that has time to spare (LeNet-5's fc2 at
    4 of its 512 inputs a cycle: a 256 × 32-bit vector memory in one block RAM where 20 a
    cycle took 960 LUT4 of LUT RAM or five blocks). Plain units (int8
    planes, the baseline) take any divisor of the fan-in and the widths of 1 to 64 steps."""
    w = unit.weights
    f = w.fan_in
    if unit.params.plain:
        cands = set(_divisors(f)) | {-(-f // sf) for sf in range(1, min(f, 64) + 1)}
    else:
        steps = {1, 2, 3}
        while max(steps) * w.n_out < f:
            steps |= {2 * max(steps), 3 * max(steps) // 2 * 2}
        cands = {d for d in _divisors(f) if d >= w.n_out} | \
            {k * w.n_out for k in steps if k * w.n_out <= f} | {f}
        if narrow:
            cands |= {d for d in _divisors(w.n_out) if d < w.n_out}
    return sorted(c for c in cands if 1 <= c <= f)


def _score(est, budget):
    """One number to compare foldings at a rate: the shares of the device's LUTs,
    flip-flops and block RAMs it takes, each weighted by how tight that resource is for the
    whole design (``budget["weights"]``, default equal): a unit that saves block RAMs with
    thousands of LUTs starves the others as surely as one that wastes block RAMs."""
    w = budget.get("weights", (1.0, 1.0, 1.0))
    return (w[0] * est["luts"] / budget["luts"] + w[1] * est["ffs"] / budget["ffs"]
            + w[2] * est["brams"] / max(1, budget["brams"]))


def _folding(unit, pe, simd):
    """``(cycles per image, R)`` of ``unit`` at ``pe × simd``."""
    w = unit.weights
    r = _rows_per_beat(pe, w.out_features, -(-w.fan_in // simd))
    return unit.vectors * mvau_cycles(w.fan_in, w.out_features, pe, simd, r,
                                      1 if unit.scatter else None), r


def fold_unit(unit, target, budget, quantum=1):
    """The cheapest folding of ``unit`` whose cycles per image are at most ``target``, by
    the share of the tightest resource its estimate takes (a FleXOR ROM's block RAMs fall as
    SIMD grows, its lanes rise); the fastest folding if none meets the target. ``quantum``:
    the producer's beat (a row window's ``kw``), which SIMD is a multiple of where it can
    be."""
    best, ukey = None, _unit_key(unit)
    for pe, simd, r, styles in _unit_options(unit, target, budget, quantum, ukey):
        score = _score(_cached_estimate(unit, pe, simd, r, quantum, styles, ukey), budget)
        if best is None or score < best[0]:
            best = (score, pe, simd, r, styles)
    if best is not None:
        return unit.folded(*best[1:4], **dict(best[4]))
    pe, simd = unit.weights.out_features, max(_unit_simds(unit, budget, quantum))
    return unit.folded(pe, simd, _folding(unit, pe, simd)[1])


def _unit_simds(unit, budget, quantum):
    simds = _simd_candidates(unit, budget.get("narrow_simd", False))
    return [c for c in simds if c % quantum == 0] or simds


def _unit_options(unit, target, budget, quantum=1, ukey=None):
    """Every ``(pe, simd, r, styles)`` of ``unit`` that meets ``target`` cycles per image
    (:func:`fold_unit`'s candidates; ``ukey``: its :func:`_unit_key`)."""
    lut_ram = budget.get("lut_ram", True)
    ukey = ukey or _unit_key(unit)
    for pe in _divisors(unit.weights.out_features):
        for simd in _unit_simds(unit, budget, quantum):
            cycles, r = _folding(unit, pe, simd)
            if cycles <= target:
                for styles in _cached_styles(unit, pe, simd, r, lut_ram, ukey):
                    yield pe, simd, r, styles


# Per unit, by its constants (a node's, made anew by each lowering: they fix the node, its
# weights and its datapath's widths), held weakly so that they go with the graph.
_ESTIMATES = weakref.WeakKeyDictionary()
_STYLES = weakref.WeakKeyDictionary()


def _unit_key(unit):
    """What a unit's parameters at a folding depend on beside its constants (which fix its
    node, so its weights) and the folding: the unit's own options."""
    return (unit.x_range, unit.baseline, unit.unipolar, unit.scatter, unit.bits_register,
            unit.address_register, unit.rom_page_words, unit.family, unit.lut_multipliers)


def _memo(table, unit, key, compute):
    """``compute()``, kept in ``table`` under ``unit``'s constants and ``key``."""
    if unit.consts is None:
        return compute()
    entries = table.get(unit.consts)
    if entries is None:
        entries = table[unit.consts] = {}
    if key not in entries:
        entries[key] = compute()
    return entries[key]


def _cached_styles(unit, pe, simd, r, lut_ram, ukey):
    """:func:`_memory_styles` of ``unit`` at ``pe × simd``, computed once per unit and
    folding (the unit's parameters take a moment to tile)."""
    return _memo(_STYLES, unit, (ukey, pe, simd, r, lut_ram),
                 lambda: _memory_styles(unit.folded(pe, simd, r), lut_ram))


#: Memories a unit may take out of block RAM when block RAMs are what is short: a weight ROM
#: of up to this many bits into logic (about a LUT4 per 16 bits); a vector memory of up to
#: this many goes to LUT RAM or block RAM, whichever the design is shorter of.
MAX_LOGIC_ROM_BITS = 65536
MAX_LUTRAM_BITS = 16384


def _memory_styles(unit, lut_ram=True):
    """Where a folded unit's weight ROM and vector memory may go: ``(("rom_logic", a),
    ("rom_block", b), ("vectors_lutram", c))`` choices, where the tools would put them first
    (a FleXOR ROM small enough to be logic, :data:`~flexor_hw.gateware.rom.LOGIC_ROM_BITS`,
    may still go to block RAM where LUTs are what is short: LeNet-5's fc2 at ``1×4`` on the
    ECP5-45k). A vector memory of more than 16 words
    and at most :data:`MAX_LUTRAM_BITS` goes where the Verilog says (the tools' own choice
    there turns on costs too close to estimate: a 24 × 96-bit memory went to LUT RAM, a
    448 × 8 one to block RAM); others, and all on a device without LUT RAM (``lut_ram``
    false: the iCE40), where the tools put them (None)."""
    from ..gateware.rom import LOGIC_ROM_BITS
    p = unit.params
    roms = [(False, False), (True, False)] if LOGIC_ROM_BITS < p.rom_bits <= MAX_LOGIC_ROM_BITS \
        else [(False, False), (False, True)] if p.rom_bits <= LOGIC_ROM_BITS and not p.plain \
        else [(False, False)]
    vec_bits = p.activation_memory_bits
    vecs = [False, True] if lut_ram and 2 * p.sf > 16 and vec_bits <= MAX_LUTRAM_BITS \
        else [None]
    styles = [(("rom_logic", a), ("rom_block", k), ("vectors_lutram", b))
              for a, k in roms for b in vecs]
    if lut_ram and p.nf > 1 and stationary_refusal(p) is None:
        # input-stationary: no vector memory, the row groups' sums in rings of flip-flops
        # and a few finished groups in LUT RAM
        styles += [(("rom_logic", a), ("rom_block", k), ("vectors_lutram", None),
                    ("stationary", True)) for a, k in roms]
    return styles


def _pool_memory(pool, budget):
    """A tiled max pool's maxima in block RAM or LUT RAM (a memory the tools would put in
    block RAM, of at most :data:`MAX_LUTRAM_BITS`, on a device with LUT RAM), whichever
    scores lower under ``budget``'s weights: LUT RAM where block RAMs are what is short."""
    from .cost import ram_style
    if not pool.tiled or not budget.get("lut_ram", True):
        return pool
    mem = pool.memories()[0]
    if ram_style(mem["depth"], mem["width"]) != "block" or mem["bits"] > MAX_LUTRAM_BITS:
        return pool
    options = [replace(pool, lutram=b) for b in (False, True)]
    return min(options, key=lambda p: _score(p.estimate(), budget))


def _cached_estimate(unit, pe, simd, r, quantum=1, styles=(), ukey=None):
    """Estimates depend on the tiling, which takes a moment on wide layers: computed once
    per unit and folding (the bisection of :func:`fold_to_device` asks again and
    again, under changing weights)."""
    def compute():
        est = dict(unit.folded(pe, simd, r, **dict(styles)).estimate())
        # the width converter its input needs (an input-stationary unit takes whole words)
        if (simd % quantum or (dict(styles).get("stationary") and simd != quantum)) \
                and not unit.scatter:
            conv = S.Repack("", unit.x_range, unit.x_range, length=unit.weights.fan_in,
                            n_in=quantum, n_out=simd).estimate()
            est = {k: est[k] + conv[k] for k in est}
        return est
    return _memo(_ESTIMATES, unit, (ukey or _unit_key(unit), pe, simd, r, quantum, styles),
                 compute)


def _fastest(st, target=1):
    """A stage that does not fold, at its fastest (or the narrowest that meets ``target``
    cycles per image): a window a kernel row per beat, then a channel's kernel (the next
    beat multiplies its line buffer's banks by ``kh``); a tiled max pool a pixel per beat."""
    if st.kind == "window":
        for simd in st.widths:
            widened = st.widened(simd)
            if widened.cycles_per_image() <= target:
                return widened
        return st.widened(st.widths[-1])
    if st.kind == "maxpool":
        return st.at_rate(1)
    return st


def _fixed_cycles(graph, kernels=True):
    """The rate the stages that do not fold allow at their fastest (and the 1-wide network
    input); with ``kernels`` false, the windows at a kernel row per beat (``--fold auto``
    without a device: a kernel a beat would fold units to a rate no device holds)."""
    def fastest(st):
        if st.kind == "window" and not kernels:
            return st.widened(st.kernel[1])
        return _fastest(st)
    cycles = [fastest(st).cycles_per_image() for st in graph.stages if st.kind != "mvau"]
    first = graph.stages[0]
    if first.kind == "mvau":
        cycles.append(first.vectors * first.weights.fan_in)   # one input element per cycle
    return max(cycles, default=1)


def fold(graph, *, target=None, budget=None, explicit=None, widen=True):
    """The graph with every unit folded: explicitly (``{node: (pe, simd)}``), or each to the
    cheapest folding that meets ``target`` cycles per image (default: the rate the stages
    that do not fold allow). A window whose element per cycle is slower than the rate the
    units run at emits a kernel row per beat instead, and the unit it feeds then takes SIMD
    in whole kernel rows (``widen=False``: windows stay one element per beat)."""
    budget = budget or DEFAULT_BUDGET
    if explicit:
        unknown = sorted(set(explicit) - {st.name for st in graph.stages if st.kind == "mvau"})
        if unknown:
            raise BuildError(f"--fold names {unknown[0]!r}, which is not a weighted node "
                             f"(they are {', '.join(st.name for st in graph.mvaus)})")
    if target is None:
        target = _fixed_cycles(graph, kernels=False)
    stages, quantum = [], 1
    for st in unfuse_pools(graph.stages):
        st = replace(st, family=budget.get("family", "ecp5"))
        if st.kind == "mvau":
            st = replace(st, bits_register=budget.get("bits_register", True),
                         address_register=budget.get("address_register", False),
                         rom_page_words=budget.get("rom_page_words"))
            if explicit and st.name in explicit:
                pe, simd = explicit[st.name]
                w = st.weights
                if not (1 <= pe <= w.out_features and w.out_features % pe == 0):
                    raise BuildError(f"--fold: PE of {st.name!r} must divide its "
                                     f"{w.out_features} rows, not {pe}")
                if not 1 <= simd <= w.fan_in:
                    raise BuildError(f"--fold: SIMD of {st.name!r} must be from 1 to its "
                                     f"fan-in {w.fan_in}, not {simd}")
                sf = -(-w.fan_in // simd)
                st = st.folded(pe, simd, _rows_per_beat(pe, w.out_features, sf))
            else:
                st = fold_unit(st, target - target // UNIT_SLACK, budget, quantum)
        quantum = 1
        if st.kind == "maxpool" and widen and not explicit:
            st = st.at_rate(target - target // UNIT_SLACK)
        if st.kind == "maxpool":
            st = _pool_memory(st, budget)
        if st.kind == "window" and widen and not explicit and st.cycles_per_image() > target:
            st = _fastest(st, target)
            quantum = st.simd
        stages.append(st)
    stages = _groups_to_unit_width(stages)
    units = [st.cycles_per_image() for st in stages if st.kind == "mvau"]
    if widen and not explicit and units:
        # A tiled pool as slow as the slowest unit stalls its producer whenever the unit
        # bursts and cannot catch up: it takes a beat wide enough to run faster (LeNet-5 with
        # pool1 and both convs at 12,544 cycles ran at 15,288; pool1 twice as wide, 12,544).
        limit = max(units) - max(units) // UNIT_SLACK
        stages = [_pool_memory(st.at_rate(limit), budget)
                  if st.kind == "maxpool" and st.cycles_per_image() > limit else st
                  for st in stages]
        stages = _buffer_pool_rows(_group_inputs(stages), limit)
    if explicit and widen:
        # Windows and pools keep up with the slowest unit (or stay one element per beat),
        # and a pool whose rows would stall its producer takes a row's FIFO, as above.
        slowest = max(st.cycles_per_image() for st in stages if st.kind == "mvau")
        limit = slowest - slowest // UNIT_SLACK
        stages = [_fastest(st, slowest)
                  if st.kind == "window" and st.cycles_per_image() > slowest
                  else _pool_memory(st.at_rate(limit), budget) if st.kind == "maxpool"
                  else st for st in stages]
        stages = _buffer_pool_rows(_group_inputs(stages), limit)
    # the skip FIFOs sized for the windows chosen, so that their block RAMs are weighed with
    # the rest (sized after folding, ResNet-32 under --budget brams=150 was built at 178)
    stages = fuse_pools(stages)
    return multipliers_to_logic(replace(graph, stages=size_fifos(stages)), budget)


def unfuse_pools(stages):
    """``stages`` with every window in raster order and every pool keeping its row of
    maxima, as lowered (:func:`fuse_pools` undone: a folded graph folds again from there)."""
    return [replace(st, block=(1, 1)) if st.kind == "window" and st.blocked
            else replace(st, blocks=False) if st.kind == "maxpool" and st.blocks else st
            for st in stages]


def _groups_to_unit_width(stages):
    """Each group window whose unit takes a wider beat that is a group's kernels too: the
    window emits that beat, a faster one from the same banks, where that takes fewer LUT4
    and flip-flops together than the width converter that would gather its beats
    (ResNet-20's stage-1 windows in groups of 2 channels of 16 for units 36 wide: a
    converter of 18 to 36 elements, 330 flip-flops, against 288 bits more of rotation)."""
    def cost(*sts):
        return sum(e["luts"] + e["ffs"] for e in (st.estimate() for st in sts))

    out = list(stages)
    for k in range(len(out) - 1):
        win, unit = out[k], out[k + 1]
        if win.kind == "window" and win.style == "group" and unit.kind == "mvau" and \
                unit.simd > win.simd and unit.simd in win.widths:
            wide = replace(win, simd=unit.simd)     # a group window too: wider than kh·kw
            if wide.group % win.in_beat:
                continue
            if unit.simd % win.simd == 0:
                conv = S.Repack("", win.x_range, win.x_range, length=win.window_elements,
                                n_in=win.simd, n_out=unit.simd, family=win.family)
                if cost(wide) >= cost(win, conv):
                    continue
            out[k] = wide
    return out


def _group_inputs(stages):
    """Each group window (:class:`~flexor_hw.gateware.window.GroupWindow`) taking its
    producer's beats where they divide its group: its packer widens them, with no width
    converter between, and a tiled pool before it keeps its beat and can fuse with its own
    producer's window (:func:`fuse_pools`; LeNet-5's pool1 two elements a beat into conv2's
    window, at 25,088 cycles an image)."""
    out = list(stages)
    for k in range(1, len(out)):
        st, b = out[k], out[k - 1].out_simd
        if st.kind == "window" and st.style == "group" and b > 1 and st.group % b == 0:
            out[k] = replace(st, in_beat=b)
    return out


def fuse_pools(stages):
    """Each tiled max pool right after a conv's unit whose window can emit its output
    pixels in blocks of the pool's windows (an element or row window, the blocks tiling
    its output): the window does, and the pool folds each block's pixels into a ring of
    one pixel's maxima (:class:`~flexor_hw.gateware.pool.BlockMaxPool`) instead of
    keeping a row of them in a memory (LeNet-5's pools on the ECP5-25k: 448 words of LUT
    RAM each, some 740 LUT4). Not where the window's line buffer, a row of blocks higher,
    would take block RAMs the pool's maxima do not free, nor inside a residual block's
    main path, nor where the pool's beat is wider than its consumer's: a block's outputs
    leave during its last pixel's beats, and a consumer that splits each beat would hold
    the pool, and its producer, meanwhile (LeNet-5 on the ECP5-85k, pool1 eight channels
    a beat into conv2's window one: 9,604 cycles an image for 6,273)."""
    out = list(stages)
    # blocks whose main path is open (their skip FIFOs are sized for windows in raster
    # order: hw.fifo.rows_needed)
    open_blocks, seen = set(), []      # seen: the stages before, width converters aside
    for k, st in enumerate(out):
        if st.kind == "fork":
            open_blocks.add(st.add)
        elif st.kind == "add":
            open_blocks.discard(st.name)
        if st.kind != "repack":
            seen.append(k)
        if len(seen) < 3 or open_blocks or st.kind != "maxpool":
            continue
        w, u = seen[-3], seen[-2]
        pool, unit, win = st, out[u], out[w]
        after = next((s_ for s_ in out[k + 1:] if s_.kind != "repack"), None)
        if (pool.tiled and unit.kind == "mvau"
                and pool.simd <= (after.in_simd if after is not None else 1)
                and unit.op == "conv2d" and win.kind == "window"
                and pool.output_size[0] * pool.kernel[0] == pool.height
                and pool.output_size[1] * pool.kernel[1] == pool.width
                and win.can_block(tuple(pool.kernel))):
            blocked = replace(win, block=tuple(pool.kernel))
            # (its line buffer holds a row more: not where that takes block RAMs the
            # pool's row of maxima does not free)
            if blocked.estimate()["brams"] <= win.estimate()["brams"] + pool.estimate()["brams"]:
                out[w] = blocked
                out[k] = replace(pool, blocks=True, out_depth=3, lutram=None)
    return out


#: Stages whose multipliers can be built in logic (``lut_multipliers``).
_MULTIPLYING = ("mvau", "add", "gap")


def multipliers_to_logic(graph, budget):
    """``graph`` with stages' multipliers built in logic (``lut_multipliers``: units'
    requantizers, residual adds', global pools') while they outnumber the budget's DSPs:
    first the stages whose products cost the fewest LUT4 for each DSP they free."""
    over = match_widths(graph).estimate()["dsps"] - budget.get("dsps", math.inf)
    if over <= 0:
        return graph
    stages, trades = list(graph.stages), []
    for k, st in enumerate(stages):
        if st.kind in _MULTIPLYING and not st.lut_multipliers:
            new = replace(st, lut_multipliers=True)
            old, est = st.estimate(), new.estimate()
            freed = old["dsps"] - est["dsps"]
            if freed > 0:
                trades.append(((est["luts"] - old["luts"]) / freed, k, freed, new))
    moved = []
    for price, k, freed, new in sorted(trades, key=lambda t: t[:2]):
        if over <= 0:
            break
        moved.append((price * freed, k, freed))
        stages[k], over = new, over - freed
    # then back to DSPs what the last moves made needless, the dearest first
    for _, k, freed in sorted(moved, reverse=True):
        if over + freed <= 0:
            stages[k], over = graph.stages[k], over + freed
    return replace(graph, stages=stages)


def _buffer_pool_rows(stages, limit):
    """Tiled pools whose output rows drain into their consumer (``in_simd`` elements a
    cycle) no faster than their producer's input rows come, at ``limit`` cycles per image:
    each takes an output FIFO of a row (:meth:`~.stages.MaxPool.row_buffered`). A pool
    emits a window row's outputs during its last input row; held to the consumer's pace
    there, it stalls its producer, which has no time to make up (LeNet-5's pool1 into
    conv2's window at one element a cycle, 448 a row, with conv1 at 12,544 cycles an
    image, 448 a row: 14,112 cycles an image; with the row's FIFO, 12,544)."""
    out = list(stages)
    for k, st in enumerate(stages[:-1]):
        if st.kind != "maxpool" or not st.tiled:
            continue
        drain = max(1, getattr(stages[k + 1], "in_simd", 1))
        ow = st.output_size[1]
        if ow * st.channels / drain * st.height >= limit:
            out[k] = st.row_buffered()
    return out


def _lut_margin(budget):
    """The share of the budget's LUTs a folding may take: :data:`MARGIN`'s, or the device's
    own (``lut_margin``: the ECP5-85k's, which buys rate only: :func:`fold_to_device`)."""
    return budget.get("lut_margin", MARGIN["luts"])


#: The budget when no device is given: an ECP5-25k's.
DEFAULT_BUDGET = {"luts": 24288, "ffs": 24288, "brams": 56, "dsps": 28}


def _fits(graph, budget):
    """The first resource the graph (its width converters included) needs beyond the
    budget, as ``(name, estimate, available)``, or None."""
    est = match_widths(graph).estimate()
    for key, share in (("luts", _lut_margin(budget)), ("ffs", MARGIN["ffs"]), ("brams", 1.0),
                       ("dsps", 1.0)):       # (products beyond the DSPs are in logic)
        if est[key] > budget[key] * share:
            return key, est[key], budget[key]
    # iCE40: a logic cell holds one LUT4 and one flip-flop, and a flip-flop packs with a LUT
    # only where that LUT drives it (the digits MLP estimated at 2,809 LUT4 and 4,212
    # flip-flops placed in 6,622 cells of the UP5K's 5,280).
    cells = est["luts"] + est["ffs"]
    if "cells" in budget and cells > budget["cells"] * MARGIN["cells"]:
        return "cells", cells, budget["cells"]
    return None


def focused(graph, budget):
    """The budget weighed only towards the resources ``graph`` needs beyond it (1 each; the
    others 0.01)."""
    est = match_widths(graph).estimate()
    margins = dict(MARGIN, luts=_lut_margin(budget))
    over = [est[k] > budget[k] * margins.get(k, 1.0) for k in ("luts", "ffs", "brams")]
    if "cells" in budget and est["luts"] + est["ffs"] > budget["cells"] * MARGIN["cells"]:
        over[0] = over[1] = True
    return dict(budget, weights=tuple(1.0 if o else 0.01 for o in over))


def fold_to_device(graph, budget, *, what="the device", progress=None):
    """The fastest folding whose estimate fits ``budget`` (LUTs and flip-flops within
    :data:`MARGIN`, block RAMs within the count). Raises :class:`BuildError` naming the
    resource when even the narrowest folding does not fit. ``progress``: called with a line
    for each rate tried."""
    floor = _fixed_cycles(graph)
    say = progress or (lambda line: None)

    def fits(g):
        return _fits(g, budget) is None

    def weighed(g, budget):
        """The budget with each resource weighed by how far ``g`` takes it: units then
        trade what is scarce for what is not."""
        est = match_widths(g).estimate()
        cells = (est["luts"] + est["ffs"]) / budget["cells"] if "cells" in budget else 0
        shares = [max(est["luts"] / budget["luts"], cells), max(est["ffs"] / budget["ffs"], cells),
                  est["brams"] / max(1, budget["brams"])]
        old = budget.get("weights", (1.0, 1.0, 1.0))
        new = [w * (v / max(shares)) ** 2 + 0.05 for w, v in zip(old, shares)]
        return dict(budget, weights=tuple(w / max(new) for w in new))

    narrowest = fold(graph, target=10 ** 15, budget=budget)
    for _ in range(6):                  # reweigh until the narrowest folding fits, if it can
        if fits(narrowest):
            break
        budget = weighed(narrowest, budget)
        narrowest = fold(graph, target=10 ** 15, budget=budget)
    if not fits(narrowest):
        narrowest = fold(graph, target=10 ** 15, budget=focused(narrowest, budget))
    if not fits(narrowest):
        chosen = _knapsack(narrowest, 10 ** 15, budget)
        if chosen is not None and fits(chosen):
            narrowest = chosen
    if not fits(narrowest):
        narrowest = _fold_on_weight_grid(graph, 10 ** 15, budget) or narrowest
    over = _fits(narrowest, budget)
    if over:
        raise BuildError(_refusal(graph, budget, over, what))
    say(f"[fold] {what}: the narrowest folding fits "
        f"({narrowest.cycles_per_image():,} cycles per image); the fastest the stages that "
        f"do not fold allow: {floor:,}")
    tried = {}          # rate → the foldings tried that did not fit

    def at_rate(target):
        g = _at_rate(target)
        say(f"[fold] at most {target:,} cycles per image: " +
            (f"{g.cycles_per_image():,} fits" if g is not None else "nothing fits"))
        return g

    def _at_rate(target):
        """A folding that meets ``target`` and fits, or None: the units reweighed towards
        what the last try ran out of (a unit that saves one block RAM with thousands of
        LUTs is right only when block RAMs are what is short)."""
        b, failed = budget, tried.setdefault(target, [])
        for _ in range(4):
            g = fold(graph, target=target, budget=b)
            if fits(g):
                return g
            failed.append(g)
            b = weighed(g, b)
        # Last, only what runs out counts: reweighing forgets a resource that is not short
        # slowly (ResNet-32 at 196,608 cycles: 54,676 LUT4 with flip-flops still weighed at
        # 0.2, 51,340 with them and block RAMs at 0.01).
        g = fold(graph, target=target, budget=focused(g, budget))
        if fits(g):
            return g
        failed.append(g)
        chosen = _knapsack(g, target, budget)
        if chosen is not None:
            if fits(chosen):
                return chosen
            failed.append(chosen)
        return _fold_on_weight_grid(graph, target, budget, failed)

    best, lo = at_rate(floor), None
    if best is None:
        # The fastest rate that fits, by bisection on cycles per image (a slower rate never
        # needs more than a faster one).
        lo, hi, best = floor, narrowest.cycles_per_image(), narrowest
        while hi > lo * 1.02:
            mid = int(math.sqrt(lo * hi))
            folded = at_rate(mid)
            if folded is not None:
                hi, best = mid, folded
            else:
                lo = mid
    # Units folded to the rate the folding reached, not 1/32 faster, where that takes fewer
    # LUT4 and loses no cycle: the stage that bounds it stays the bottleneck (LeNet-5 on the
    # ECP5-25k: conv2 at 4 × 80, 31,360 cycles, beside its window's 31,361: 12,899 LUT4
    # estimated, where 4 × 100 at 25,088 took 14,979)
    reached = best.cycles_per_image()
    at_reached = reached + -(-reached // (UNIT_SLACK - 1))     # the units' target: reached
    eased = _at_rate(at_reached)
    # and the units chosen together for the fewest LUT4 at that rate (reweighing the units
    # one by one took LeNet-5's conv2 on the ECP5-45k to a weight ROM in 18,470 LUT4 of
    # logic, with 58 of the 108 block RAMs free)
    together = _knapsack(eased or best, at_reached, budget)
    for g in (eased, together):
        if g is not None and fits(g) and g.cycles_per_image() <= reached and \
                match_widths(g).estimate()["luts"] < match_widths(best).estimate()["luts"]:
            say(f"[fold] the units at the rate reached ({reached:,} cycles per image) take "
                f"fewer LUT4")
            best = g
    best = _pools_back_to_block_ram(best, budget)
    faster = [g for g in tried.get(lo, []) if g.cycles_per_image() < best.cycles_per_image()]
    if not faster:      # none at the rate just below (what fits is not monotone in the
        # rate: LeNet-5 on the ECP5-25k fits 31,361 cycles at a target of 32,511, not 31,873)
        faster = [g for gs in tried.values() for g in gs
                  if g.cycles_per_image() < best.cycles_per_image()]
    limit = _limit(faster, budget, what) if faster else None
    # A wider margin buys rate only: at a rate the next narrower one fits too (a lut_fill
    # above the device's own share: the device's; the device's: the common one), its folding
    # (the one fewer LUTs at that margin lead to) is kept. (LeNet-5 on the ECP5-25k at
    # lut_fill=85 took 19,943 LUT4 for the rate 68 % reaches in 16,500.)
    own = budget.get("device_margin", MARGIN["luts"])
    lower = own if _lut_margin(budget) > own else MARGIN["luts"]
    if _lut_margin(budget) > lower:
        try:
            usual = fold_to_device(graph, dict(budget, lut_margin=lower,
                                               device_margin=MARGIN["luts"]), what=what)
        except BuildError:
            usual = None
        if usual is not None and usual.cycles_per_image() <= best.cycles_per_image():
            best = usual
    if limit is not None:
        best.limit = limit
    return best


def _usable(key, budget):
    """The share of ``budget``'s ``key`` a folding may take."""
    return _lut_margin(budget) if key == "luts" else MARGIN.get(key, 1.0)


def _limit(foldings, budget, what):
    """What the closest of ``foldings`` (tried at one rate, none fits ``budget``) runs out
    of: the one whose most overfilled resource is the least so (the fastest among equals);
    its cycles per image, that resource, its estimate, ``what`` the budget is, its count
    and the share of it a folding may take; ``also``, each other resource it overfills,
    most overfilled first (so that a budget raised in the one named is not refused again
    for the next)."""
    def fills(g):
        est = match_widths(g).estimate()
        keys = ["luts", "ffs", "brams"]
        if "cells" in budget:       # the iCE40: a logic cell holds a LUT4 and a flip-flop
            est, keys = dict(est, cells=est["luts"] + est["ffs"]), keys + ["cells"]
        return sorted(((est[k] / (budget[k] * _usable(k, budget)) if budget[k] else
                        math.inf if est[k] else 0.0, k, est[k]) for k in keys), reverse=True)

    over, cycles = min(((fills(g), g.cycles_per_image()) for g in foldings),
                       key=lambda t: (t[0][0][0], t[1]))

    def short(key, est):
        return {"resource": key, "estimate": est, "available": budget[key],
                "usable": _usable(key, budget)}

    (_, key, est), rest = over[0], over[1:]
    return {"cycles": cycles, **short(key, est), "of": what,
            "also": [short(k, e) for fill, k, e in rest if fill > 1]}


def limit_text(limit):
    """One line: what the closest faster folding tried needs (:func:`_limit`)."""
    return (f"faster: the closest folding tried ({limit['cycles']:,} cycles per image) needs "
            + ", and ".join(_resource_text(r["resource"], r["estimate"], limit["of"],
                                           r["available"], r["usable"])
                            for r in [limit] + limit["also"]))


_NAMES = {"luts": "LUT4", "ffs": "flip-flops", "brams": "block RAMs", "dsps": "DSP blocks",
          "cells": "logic cells (LUT4 + flip-flops)"}


def _over(over, what, budget):
    key, est, avail = over
    return _resource_text(key, est, what, avail, _usable(key, budget))


def _resource_text(key, est, what, avail, share):
    return f"{_NAMES[key]} estimated {est:,}, {_has(what, avail, share)}"


def _has(what, avail, share):
    return f"{what} has {avail:,}" + (f" (of which {share:.0%} usable)" if share < 1 else "")


def _refusal(graph, budget, over, what):
    """Why no folding fits: the resource the narrowest folding runs out of, at the folding
    that takes the fewest of it (and what else that one runs out of: by how much each is
    short), or, where the folding with the fewest of it runs out of another resource, both
    ends of the trade."""
    key = over[0]
    if key in _KEYS:
        least = fold(graph, target=10 ** 15,
                     budget=dict(budget, weights=tuple(1.0 if k == key else 0.01
                                                       for k in _KEYS)))
        overs = _all_over(least, budget)
        if overs and overs[0][0] != key:
            fewest = match_widths(least).estimate()[key]
            k, e, a = over
            return (f"{graph.name!r} does not fit {what} at any folding: the narrowest needs "
                    f"{e:,} {_NAMES[k]}, {_has(what, a, _usable(k, budget))}; the one with "
                    f"the fewest {_NAMES[key]} ({fewest:,}) has {_over(overs[0], what, budget)}")
        if overs:
            over = overs[0]
            also = " and ".join(f"{e:,} {_NAMES[k]} ({math.floor(a * _usable(k, budget)):,} "
                                f"usable)" for k, e, a in overs[1:])
            also = f"; that folding also needs {also}" if also else ""
            return (f"{graph.name!r} does not fit {what} even at the narrowest folding: "
                    f"{_over(over, what, budget)}{also}")
    return (f"{graph.name!r} does not fit {what} even at the narrowest folding: "
            f"{_over(over, what, budget)}")


_KEYS = ("luts", "ffs", "brams")


def _all_over(graph, budget):
    """Every resource the graph needs beyond the budget, as :func:`_fits` names the first
    (LUT4, flip-flops, block RAMs, DSPs, logic cells)."""
    overs, rest = [], dict(budget)
    while True:
        o = _fits(graph, rest)
        if o is None:
            return overs
        overs.append(o)
        rest[o[0]] = math.inf
        if o[0] == "cells":
            return overs


def _fold_on_weight_grid(graph, target, budget, failed=None):
    """The first folding meeting ``target`` that fits ``budget`` with the units weighed by
    a point of :data:`WEIGHT_GRID`, or None (the ones that do not fit appended to
    ``failed``)."""
    for weights in WEIGHT_GRID:
        g = fold(graph, target=target, budget=dict(budget, weights=weights))
        if _fits(g, budget) is None:
            return g
        if failed is not None:
            failed.append(g)
    return None


#: A flip-flop's weight against a LUT4 in the knapsack's cost (an ECP5 slice holds two of
#: each; LUT4 are what a full device runs short of first, but at 0 the units that save a
#: few LUT4 with thousands of flip-flops win: ResNet-20 on the ECP5-85k 55,324 LUT4 and
#: 69,943 FF, at 0.1 55,985 and 50,523), and the heavier ones it tries in turn where the
#: cheapest takes more flip-flops than the budget has.
KNAPSACK_FF_WEIGHT = 0.1
KNAPSACK_FF_WEIGHTS = (0.25, 1.0)


def _knapsack(graph, target, budget, *, ff_weight=KNAPSACK_FF_WEIGHT):
    """``graph`` folded at ``target`` (by :func:`fold`) with its units and tiled pools
    chosen together: the fewest LUT4 (logic cells on the iCE40; a flip-flop counted as
    ``ff_weight`` of a LUT4, :data:`KNAPSACK_FF_WEIGHT`) over every unit's foldings
    that meet the rate and every pool's memory, with the block RAMs within ``budget`` (a
    dynamic program over the block RAMs taken). Each unit's cheapest folding by a weighed
    sum misses what a trade across units finds: LeNet-5 on the ECP5-25k at 31,361 cycles
    per image in 17,148 LUT4 and 56 block RAMs, where reweighing found none within 56 below
    43,904. Where the fewest LUT4 take more flip-flops than the budget has, LUT4 and
    flip-flops weighed together (``ff_weight``, :data:`KNAPSACK_FF_WEIGHTS` in turn;
    LeNet-5 on the ECP5-25k at 25,088 cycles: conv2 at 2×200 saved 108 LUT4 over 4×100
    with 2,000 flip-flops more, past the 85 %)."""
    limit = target - target // UNIT_SLACK
    cells = "cells" in budget

    def cost(est):
        return est["luts"] + est["ffs"] if cells else est["luts"] + ff_weight * est["ffs"]

    choices = []        # per stage: [(cost, block RAMs, stage)]
    for k, st in enumerate(graph.stages):
        if st.kind == "mvau":
            prev = graph.stages[k - 1] if k else None
            quantum = prev.simd if prev is not None and prev.kind == "window" else 1
            opts = []
            for pe, simd, r, styles in _unit_options(st, limit, budget, quantum):
                est = _cached_estimate(st, pe, simd, r, quantum, styles)
                opts.append((cost(est), est["brams"],
                             st.folded(pe, simd, r, **dict(styles))))
            if not opts:
                return None
        elif st.kind == "maxpool" and st.tiled and budget.get("lut_ram", True):
            opts = [(cost(e), e["brams"], p) for p in
                    (replace(st, lutram=b) for b in (False, True)) for e in [p.estimate()]]
        else:
            est = st.estimate()
            opts = [(cost(est), est["brams"], st)]
        choices.append(opts)
    best = {0: (0, ())}         # block RAMs → (cost, choice per stage so far)
    for opts in choices:
        step = {}
        for brams, (total, picked) in best.items():
            for c, b, st in opts:
                n = brams + b
                if n <= budget["brams"] and (n not in step or total + c < step[n][0]):
                    step[n] = (total + c, picked + (st,))
        best, least = {}, math.inf
        for n in sorted(step):      # only what more block RAMs make cheaper
            if step[n][0] < least:
                best[n], least = step[n], step[n][0]
        if not best:
            return None
    stages = min(best.values(), key=lambda v: v[0])[1]
    # (group windows widened to the units chosen, the skip FIFOs sized for them)
    stages = size_fifos(_groups_to_unit_width(list(stages)))
    chosen = multipliers_to_logic(replace(graph, stages=stages), budget)
    over = _fits(chosen, budget)
    heavier = [w for w in KNAPSACK_FF_WEIGHTS if w > ff_weight]
    if not cells and heavier and over is not None and over[0] == "ffs":
        return _knapsack(graph, target, budget, ff_weight=heavier[0]) or chosen
    return chosen


def _pools_back_to_block_ram(graph, budget):
    """Pools whose maxima went to LUT RAM, back in block RAM while the block RAMs last: the
    scores price a block RAM at hundreds of LUT4 whether or not block RAMs run out, and
    LUTs are what placing and routing a full device is short of."""
    for k, st in enumerate(graph.stages):
        if st.kind == "maxpool" and st.lutram:
            stages = list(graph.stages)
            stages[k] = replace(st, lutram=False)
            trial = replace(graph, stages=stages)
            if _fits(trial, budget) is None:
                graph = trial
    return graph


def match_widths(graph):
    """A :class:`~flexor_hw.hw.stages.Repack` between neighbours whose beats differ (and
    before a first unit wider than the 1-wide input, after a last one wider than the 1-wide
    output); none before a unit whose SIMD the beats divide where it can write them into
    its lanes at the rate the converter would pass them (:func:`_narrow_input`)."""
    out, prev_simd, prev = [], 1, None
    rate = graph.cycles_per_image()
    for st in graph.stages + [None]:
        st = _narrow_input(graph, rate, prev, prev_simd, st)
        want = 1 if st is None else st.in_simd
        if want != prev_simd:
            wide = st if st is not None and st.in_simd > 1 else prev
            length = wide.in_length if wide is st else wide.out_length
            src_range = prev.y_range if prev is not None else graph.input_range
            total = _elements(graph, prev, st)
            # Through the widths' greatest common divisor where neither divides the other.
            g = math.gcd(prev_simd, want)
            steps = [(prev_simd, want)] if g in (prev_simd, want) else \
                [(prev_simd, g), (g, want)]
            for k, (a, b) in enumerate(steps):
                name = f"{prev.name if prev else 'input'}_to_{st.name if st else 'output'}"
                span = _burst_span(prev) if k == 0 and a > b else None
                out.append(S.Repack(name + ("" if k == 0 else f"_{k}"),
                                    src_range, src_range, length=length, n_in=a, n_out=b,
                                    vectors=max(1, total // length), span=span,
                                    family=wide.family))
        if st is not None:
            out.append(st)
            prev_simd, prev = st.out_simd, st
    return replace(graph, stages=out)


def _narrow_input(graph, rate, prev, prev_simd, st):
    """``st`` taking ``prev``'s beats of ``prev_simd`` elements itself, where it is a
    matrix-vector unit on the ECP5 whose SIMD ``prev_simd`` divides and no slower with the
    narrow input (a cycle a beat and one to hand the vector over) than behind a width
    converter or than the rate the folding pass gives units: a vector memory in LUT RAM is
    written a beat at a time into its lanes (a write enable per lane); one in block RAM a
    word at a time from a register the beats shift into (a DP16KD's byte enables hold four
    8-bit lanes, and an 18-lane memory written by lanes took five blocks where its words
    take four). Saves the converter's word and output register, and into LUT RAM the
    unit's write register but a beat (a window's kernel row into an 18-wide unit: 144 bits
    staged three times, and now 24 into LUT RAM, 144 into block RAM)."""
    if st is None or st.kind != "mvau" or st.scatter or st.family == "ice40" or \
            st.stationary or st.simd <= prev_simd or st.simd % prev_simd:
        return st
    narrow = replace(st, in_beat=prev_simd, vectors_lutram=not st.params.vectors_in_block_ram)
    conv = S.Repack("", st.x_range, st.x_range, length=st.in_length, n_in=prev_simd,
                    n_out=st.simd, vectors=max(1, _elements(graph, prev, st) // st.in_length))
    # no slower than the pair, or than the folding pass's rate (``rate``: the graph's) for
    # units
    if narrow.cycles_per_image() > max(st.cycles_per_image(), conv.cycles_per_image(),
                                       rate - rate // UNIT_SLACK):
        return st
    return narrow


def _burst_span(prev):
    """Cycles from a unit's first output beat of a vector to its last, unstalled: its row
    groups' beats, ``G = PE/R`` in a row, a group every ``max(SF, G)`` cycles."""
    if prev is None or prev.kind != "mvau":
        return None
    p = prev.params
    if p.stationary:        # its last word's groups end a step apart: their beats in a row
        return (p.nf - 1) * p.group_beats + p.last_group_beats - 1
    return (p.nf - 1) * p.group_interval + p.last_group_beats - 1


def _elements(graph, prev, st):
    """Elements per image on the stream from ``prev`` to ``st``."""
    if prev is None:
        return math.prod(graph.input_shape) if st.kind != "mvau" else st.in_length * st.vectors
    if prev.kind == "mvau":
        return prev.out_length * prev.vectors
    if prev.kind == "maxpool":
        return math.prod(prev.output_size) * prev.channels
    if st.kind == "maxpool":
        return st.height * st.width * st.channels
    return st.in_length * st.vectors


_FOLD_ITEM = re.compile(r"^(?P<node>[^=]+)=(?P<pe>\d+)x(?P<simd>\d+)$")


def parse_fold(text):
    """``--fold``: ``auto`` (None), or ``NODE=PExSIMD,...`` (``{node: (pe, simd)}``)."""
    if text == "auto":
        return None
    explicit = {}
    for item in text.split(","):
        m = _FOLD_ITEM.match(item.strip())
        if not m:
            raise BuildError(f"--fold takes 'auto' or NODE=PExSIMD items separated by commas "
                             f"(e.g. conv2=16x25,fc1=8x32), not {item.strip()!r}")
        explicit[m["node"]] = (int(m["pe"]), int(m["simd"]))
    return explicit


def parse_budget(text):
    """``--budget luts=N,ffs=N,brams=N,dsps=N,lut_fill=P`` (any of them) as a dict: counts
    of each resource, and ``lut_fill`` the percentage of the LUTs a folding may take
    (:data:`MARGIN`'s 65 % by default, the ECP5-25k's 68 %, the ECP5-85k's 76.5 %), as
    ``lut_margin``."""
    budget = {}
    for item in text.split(","):
        key, _, value = item.strip().partition("=")
        if key not in ("luts", "ffs", "brams", "dsps", "lut_fill") or not value.isdigit():
            raise BuildError(f"--budget takes luts=N,ffs=N,brams=N,dsps=N,lut_fill=P (any of "
                             f"them), not {item.strip()!r}")
        if key == "lut_fill":
            if not 1 <= int(value) <= 100:
                raise BuildError(f"--budget: lut_fill is the percentage of the LUTs a folding "
                                 f"may take, from 1 to 100, not {value}")
            budget["lut_margin"] = int(value) / 100
            continue
        budget[key] = int(value)
        if key in ("luts", "ffs") and budget[key] < 1:
            raise BuildError(f"--budget: {key} must be at least 1 (no design is built without "
                             f"{_NAMES[key]}), not {value}")
    return budget
