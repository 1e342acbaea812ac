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

import numpy as np

from .errors import BuildError
from .golden import layer_constants
from .xor import decrypt

__all__ = ["LayerPlan", "plan_layer", "plan_network", "auto_lanes", "drop_idle_shadows",
           "hex_lines"]


@dataclass(frozen=True, eq=False)
class LayerPlan:
    layer: object
    consts: object
    lanes: int
    baseline: bool = False      # ROM holds the decrypted bits: no XOR network (for comparison)
    double_buffer: bool = True  # a shadow register loads the next vector during compute
    fifo_extra: int = 0         # output FIFO places beyond the pipeline's own

    @property
    def q(self):
        return self.layer.q

    @property
    def fan_in(self):
        return self.layer.fan_in

    @property
    def out_features(self):
        return self.layer.out_features

    @property
    def window(self):
        """Weight bits per plane decoded from one ROM word (W)."""
        return self.lanes * self.layer.n_out

    @property
    def step_lanes(self):
        """MAC lanes: bits consumed per step (M = min(W, fan_in))."""
        return min(self.window, self.fan_in)

    @property
    def steps_per_word(self):
        return -(-self.window // self.step_lanes)

    @property
    def step_sizes(self):
        """Bits consumed by each sub-step of a word."""
        t, m = self.steps_per_word, self.step_lanes
        return [m] * (t - 1) + [self.window - (t - 1) * m]

    @property
    def n_words(self):
        return -(-self.layer.n_slices // self.lanes)

    @property
    def n_steps(self):
        return self.n_words * self.steps_per_word

    @property
    def rom_width(self):
        bits_per_slice = self.layer.n_out if self.baseline else self.layer.n_in
        return self.q * self.lanes * bits_per_slice

    @property
    def rom_bits(self):
        return self.n_words * self.rom_width

    @property
    def last_output_step(self):
        """Index of the step in which the last row of a vector completes."""
        last = self.layer.numel - 1
        word, offset = divmod(last, self.window)
        return word * self.steps_per_word + offset // self.step_lanes

    @property
    def cycles_per_inference(self):
        """Steady-state cycles per vector: compute-bound or input-bound (+1 handoff cycle);
        without a shadow register loading and computing take turns."""
        if not self.double_buffer:
            return self.fan_in + 1 + self.n_steps
        return max(self.n_steps, self.fan_in + 1)

    @property
    def shadow_bits(self):
        return self.fan_in * self.consts.x_shape[0]

    @property
    def tree_stages(self):
        """Pipeline registers of the MAC's adder trees: one per level of the tree."""
        return max(1, (self.step_lanes - 1).bit_length())

    @property
    def sum_stages(self):
        """Pipeline registers of ``Σ A_i·S_i + β``: one per level of its adder tree."""
        return max(1, self.q.bit_length())

    @property
    def mac_latency(self):
        """MAC cycles from a row-ending step's acceptance to its output's transfer."""
        return self.tree_stages + self.sum_stages + 7

    @property
    def row_interval(self):
        """Fewest steps between two row-ending steps: a step holds at most ``M - 1`` columns of
        the row after the one it ends, and the rest of that row needs whole steps."""
        m = self.step_lanes
        return max(1, -(-(self.fan_in - m + 1) // m))

    @property
    def fifo_depth(self):
        """Output FIFO places: the results in flight while a credit goes round (MAC latency and
        three cycles to return it), at most one per ``row_interval`` steps, plus any extra."""
        return -(-(self.mac_latency + 3) // self.row_interval) + self.fifo_extra

    @property
    def latency_cycles(self):
        """Cycles from the transfer of a vector's last input to that of its last output.

        For an idle engine and a consumer that is always ready: one cycle to hand the vector
        to the compute side, one per step up to the last row's end, then the MAC's pipeline.
        """
        return 1 + self.last_output_step + self.mac_latency

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

    @property
    def const_fields(self):
        """Widths of the per-row constant word: ``A_0 … A_{q−1}`` then ``β``, LSB first."""
        return [self.consts.a_width] * self.q + [self.consts.beta_width]

    @property
    def const_width(self):
        return sum(self.const_fields)

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


def plan_layer(package, k, lanes, frac_bits, *, baseline=False):
    """Validate ``lanes`` and ``frac_bits`` for layer ``k`` and return its :class:`LayerPlan`."""
    layer = package.layers[k]
    try:
        lanes = operator.index(lanes)
    except TypeError:
        raise BuildError(f"lanes must be a positive integer, not {lanes!r}") from None
    if not 1 <= lanes <= layer.n_slices:
        raise BuildError(f"lanes must be from 1 to {layer.n_slices} for layer {layer.name!r} "
                         f"(its slices per bit-plane), not {lanes}")
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
