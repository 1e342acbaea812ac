"""The plain parameters of a layer engine, and the geometry, cycle counts and latency that
follow from them: the gateware states its own figures; the host plan only fills the numbers
in (:meth:`flexor_hw.plan.LayerPlan.params`)."""

from dataclasses import dataclass

from .vector_buffer import tail_cycles, vector_words

__all__ = ["EngineParams"]


@dataclass(frozen=True, eq=False)
class EngineParams:
    """What a :class:`~flexor_hw.gateware.LayerEngine` and its
    :class:`~flexor_hw.gateware.BinaryCodeMac` are built from.

    Shape: ``fan_in`` and ``out_features`` of the weight matrix, ``numel`` weights per plane in
    ``n_slices`` slices of ``n_out`` bits decrypted from ``n_in`` stored bits, ``q`` planes,
    ``lanes`` slices per ROM word, at most ``mac_lanes`` bits per step (0: the whole window).
    Options: ``baseline`` (the ROM holds decrypted bits), ``unipolar`` (planes of 0/1 bits of
    int weights), ``double_buffer``, ``act_memory`` (a VectorBuffer), ``fifo_extra``.
    Arithmetic: ``consts``, a record of the requantization constants and ranges
    (:class:`flexor_hw.ops.weighted.LayerConstants` fields: ``A``, ``beta``, ``x_lo``,
    ``x_hi``, ``y_lo``, ``y_hi``, widths), and ``x_width`` bits per activation.
    Contents: ``xor`` (``[q, n_out, n_in]`` M⊕), and for simulation ``rom_words`` and
    ``const_words`` (Python ints; emitted designs read ``$readmemh`` files instead).
    """

    fan_in: int
    out_features: int
    numel: int
    n_slices: int
    n_in: int
    n_out: int
    q: int
    lanes: int
    consts: object
    x_width: int
    xor: object
    mac_lanes: int = 0
    baseline: bool = False
    unipolar: bool = False
    double_buffer: bool = True
    act_memory: bool = False
    fifo_extra: int = 0
    rom_words: tuple = None
    const_words: tuple = None

    @property
    def window(self):
        """Weight bits per plane decoded from one ROM word (W)."""
        return self.lanes * self.n_out

    @property
    def step_lanes(self):
        """MAC lanes: bits consumed per step (M = min(W, fan_in, mac_lanes))."""
        return min(self.window, self.fan_in, self.mac_lanes or self.window)

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
        return -(-self.n_slices // self.lanes)

    @property
    def n_steps(self):
        return self.n_words * self.steps_per_word

    @property
    def rom_width(self):
        bits_per_slice = self.n_out if self.baseline else self.n_in
        return self.q * self.lanes * bits_per_slice

    @property
    def rom_bits(self):
        return self.n_words * self.rom_width

    @property
    def last_output_step(self):
        """Index of the step in which the last row of a vector completes."""
        last = self.numel - 1
        word, offset = divmod(last, self.window)
        return word * self.steps_per_word + offset // self.step_lanes

    @property
    def cycles_per_inference(self):
        """Steady-state cycles per vector: compute-bound or input-bound (+1 handoff cycle);
        without a shadow register loading and computing take turns."""
        if not self.double_buffer:
            return self.fan_in + 1 + self.tail_cycles + self.n_steps
        return max(self.n_steps, self.fan_in + 1 + self.tail_cycles)

    @property
    def tail_cycles(self):
        """Load cycles beyond the beats: a VectorBuffer writes a second tail word after the
        last beat when ``f mod M ≥ 2``."""
        return tail_cycles(self.fan_in, self.step_lanes) if self.act_memory else 0

    @property
    def shadow_bits(self):
        return 0 if self.act_memory else self.fan_in * self.x_width

    @property
    def activation_memory_bits(self):
        """Bits of the VectorBuffer: two vectors (one without a double buffer) of
        ``⌊(f−1)/M⌋ + 2`` words of ``M`` activations (0 for a layer that keeps its vector in
        registers)."""
        if not self.act_memory:
            return 0
        words = vector_words(self.fan_in, self.step_lanes)
        return (1 + self.double_buffer) * words * self.step_lanes * self.x_width

    @property
    def activation_register_bits(self):
        """Flip-flops holding input vectors: the vector under work and its shadow, or the
        buffer's word registers (three words and a word being packed)."""
        xw = self.x_width
        if self.act_memory:
            return 4 * self.step_lanes * xw
        return self.fan_in * xw * (2 if self.double_buffer else 1)

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
        three cycles to return it), at most one per ``row_interval`` steps, one more, and any
        extra. The MAC stops taking steps when no place is free, not only the steps that end
        a row; without the spare place a layer of 16-bit steps and 9 steps per row ran at
        169 cycles per vector instead of 145."""
        return -(-(self.mac_latency + 3) // self.row_interval) + 1 + self.fifo_extra

    @property
    def latency_cycles(self):
        """Cycles from the transfer of a vector's last input to that of its last output.

        For an idle engine and a consumer that is always ready: one cycle to hand the vector
        to the compute side (and any tail cycle), one per step up to the last row's end, then
        the MAC's pipeline.
        """
        return 1 + self.tail_cycles + self.last_output_step + self.mac_latency

    @property
    def const_fields(self):
        """Widths of the per-row constant word: ``A_0 … A_{q−1}`` then ``β``, LSB first."""
        return [self.consts.a_width] * self.q + [self.consts.beta_width]

    @property
    def const_width(self):
        return sum(self.const_fields)
