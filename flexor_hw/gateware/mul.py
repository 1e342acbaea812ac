"""A registered multiplier: operands into registers, their product into a register, as the
ECP5's MULT18X18D holds them inside the block when asked (input and output registers)."""

import re

from amaranth.hdl import ClockSignal, Const, Instance, Module, Mux, Shape, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Multiplier", "const_product", "lut_product", "lut_product_terms", "csd_digits",
           "MUL_VERILOG", "mul_modules", "MUL_WIDTH", "ECP5_DEFINE"]

#: Widest operand (signed; an unsigned one up to a bit fewer) one MULT18X18D takes.
MUL_WIDTH = 18

#: The Verilog define under which the emitted multiplier is a MULT18X18D with its input and
#: output registers (``flexor-hw synth`` and ``board`` give it to Yosys for ECP5 targets).
ECP5_DEFINE = "FLEXOR_ECP5"

_A = ", ".join(f".A{k}(ax[{k}])" for k in range(18))
_B = ", ".join(f".B{k}(bx[{k}])" for k in range(18))
_P = ", ".join(f".P{k}(prod[{k}])" for k in range(36))

MUL_VERILOG = f"""\
// flexor_mul: P = A * B, two clocks after A and B (registered operands, registered product).
// Under `define {ECP5_DEFINE}: an ECP5 MULT18X18D whose input and output registers hold them
// (Yosys does not pack fabric registers into the block, and a block RAM or carry chain far
// from it made the multiply the longest path); otherwise the same in plain Verilog.
module flexor_mul #(
    parameter A_WIDTH = 18,
    parameter B_WIDTH = 18,
    parameter A_SIGNED = 1,
    parameter B_SIGNED = 1,
    parameter P_WIDTH = 36
) (
    input wire clk,
    input wire [A_WIDTH-1:0] a,
    input wire [B_WIDTH-1:0] b,
    output wire [P_WIDTH-1:0] p
);
    wire [17:0] ax = {{{{(18-A_WIDTH){{A_SIGNED ? a[A_WIDTH-1] : 1'b0}}}}, a}};
    wire [17:0] bx = {{{{(18-B_WIDTH){{B_SIGNED ? b[B_WIDTH-1] : 1'b0}}}}, b}};
    wire [35:0] prod;
`ifdef {ECP5_DEFINE}
    MULT18X18D #(
        .REG_INPUTA_CLK("CLK0"), .REG_INPUTB_CLK("CLK0"), .REG_OUTPUT_CLK("CLK0"),
        .GSR("DISABLED"), .RESETMODE("SYNC")
    ) dsp (
        {_A},
        {_B},
        .C0(1'b0), .C1(1'b0), .C2(1'b0), .C3(1'b0), .C4(1'b0), .C5(1'b0), .C6(1'b0),
        .C7(1'b0), .C8(1'b0), .C9(1'b0), .C10(1'b0), .C11(1'b0), .C12(1'b0), .C13(1'b0),
        .C14(1'b0), .C15(1'b0), .C16(1'b0), .C17(1'b0),
        .SIGNEDA(1'b1), .SIGNEDB(1'b1), .SOURCEA(1'b0), .SOURCEB(1'b0),
        .CLK0(clk), .CLK1(1'b0), .CLK2(1'b0), .CLK3(1'b0),
        .CE0(1'b1), .CE1(1'b0), .CE2(1'b0), .CE3(1'b0),
        .RST0(1'b0), .RST1(1'b0), .RST2(1'b0), .RST3(1'b0),
        {_P}
    );
`else
    reg [17:0] a_r = 0, b_r = 0;
    reg [35:0] p_r = 0;
    always @(posedge clk) begin
        a_r <= ax;
        b_r <= bx;
        p_r <= $signed(a_r) * $signed(b_r);
    end
    assign prod = p_r;
`endif
    assign p = prod[P_WIDTH-1:0];
endmodule
"""


def mul_modules(verilog):
    """The multiplier module, if an emitted design instantiates it."""
    return MUL_VERILOG if re.search(r"^\s*flexor_mul #\(", verilog, re.MULTILINE) else ""


class Multiplier(wiring.Component):
    """``p = a · b`` two clocks after ``a`` and ``b``: both registered, then their product.
    Each operand at most :data:`MUL_WIDTH` bits (signed), or one fewer unsigned.

    With ``emit``, an instance of ``flexor_mul`` (:data:`MUL_VERILOG`: a MULT18X18D with its
    registers on the ECP5) for emitted Verilog; else Amaranth registers, for its simulator.
    """

    def __init__(self, a_shape, b_shape, *, emit=False):
        self._a, self._b = Shape.cast(a_shape), Shape.cast(b_shape)
        for name, s in (("A", self._a), ("B", self._b)):
            if s.width + (not s.signed) > MUL_WIDTH:
                raise ValueError(f"Operand {name} of {s} does not fit one {MUL_WIDTH}-bit "
                                 f"multiplier")
        self._emit = emit
        p_shape = (Signal(self._a) * Signal(self._b)).shape()
        super().__init__({"a": In(self._a), "b": In(self._b), "p": Out(p_shape)})

    def elaborate(self, platform):
        m = Module()
        if self._emit:
            m.submodules.mul = Instance(
                "flexor_mul", p_A_WIDTH=self._a.width, p_B_WIDTH=self._b.width,
                p_A_SIGNED=int(self._a.signed), p_B_SIGNED=int(self._b.signed),
                p_P_WIDTH=len(self.p), i_clk=ClockSignal("sync"), i_a=self.a, i_b=self.b,
                o_p=self.p)
        else:
            a_r, b_r = Signal(self._a), Signal(self._b)
            m.d.sync += [a_r.eq(self.a), b_r.eq(self.b), self.p.eq(a_r * b_r)]
        return m


def _fits(shape):
    return shape.width + (not shape.signed) <= MUL_WIDTH


def csd_digits(k):
    """The nonzero digits of ``k`` in canonical signed-digit form, as ``(shift, ±1)``: no
    two adjacent, so at most half of ``k``'s bits (``k = Σ sign·2^shift``)."""
    digits, shift = [], 0
    k = int(k)
    while k:
        if k & 1:
            d = 2 - (k & 3)         # 1 where k ≡ 1 (mod 4), −1 where k ≡ 3
            digits.append((shift, d))
            k -= d
        k >>= 1
        shift += 1
    return digits


def const_product(m, x, k, name, emit, *, lut=False):
    """``x·k`` (``k`` a constant) two clocks after ``x``, from registers: a
    :class:`Multiplier`. A constant too wide for one is cut as ``k = kh·2^s + kl``: ``x·kh``
    on the multiplier, ``x·kl`` (``s`` bits of ``k``) a small product between registers, and
    the result their sum (for the consumer's adder to take in). An operand ``x`` too wide:
    two registers around ``*``. ``lut`` (where the DSPs run out): ``x`` registered, then a
    registered carry chain per pair of ``k``'s signed digits (:func:`csd_digits`), the
    result their sum."""
    k = int(k)
    if lut:
        x_r = Signal(signed(len(x) + (not x.shape().signed)), name=f"{name}_x",
                     reset_less=True)
        m.d.sync += x_r.eq(x)
        terms = []
        digits = csd_digits(k)
        for i in range(0, len(digits), 2):
            value = 0
            for shift, sign in digits[i:i + 2]:
                value = value + (x_r << shift) if sign > 0 else value - (x_r << shift)
            term = Signal(value.shape(), name=f"{name}_t{i // 2}", reset_less=True)
            m.d.sync += term.eq(value)
            terms.append(term)
        return sum(terms[1:], terms[0]) if terms else Const(0, 1)
    if not _fits(Shape.cast(x.shape())):
        x1 = Signal.like(x, name=f"{name}_x")
        p = Signal((x1 * k).shape(), name=f"{name}_p")
        m.d.sync += [x1.eq(x), p.eq(x1 * k)]
        return p
    s = 0
    while not _fits(Const(k >> s).shape()):
        s += 1
    kh = k >> s
    m.submodules[name] = mul = Multiplier(x.shape(), Const(kh).shape(), emit=emit)
    m.d.comb += [mul.a.eq(x), mul.b.eq(Const(kh))]
    if s == 0:
        return mul.p
    kl = k - (kh << s)
    x1 = Signal.like(x, name=f"{name}_x")
    lo = Signal((x1 * kl).shape(), name=f"{name}_lo")
    m.d.sync += [x1.eq(x), lo.eq(x1 * kl)]
    return (mul.p << s) + lo


def lut_product_terms(x_width, y_width):
    """Registered terms of :func:`lut_product` for operands of these widths: a pair of the
    narrower one's bits each."""
    return -(-min(x_width, y_width) // 2)


def lut_product(m, x, y, name):
    """``x·y`` in logic, for where the DSPs run out: registered terms whose sum is the
    product, two clocks after ``x`` and ``y`` (as :class:`Multiplier`'s ``p``). Both operands
    are registered, then each pair of the narrower one's bits gives a term, the sum (or, for
    a signed operand's top bit, the difference) of its two partial products (``x·2^j`` where
    the bit is set): one carry chain a term, the masks in its LUTs. The consumer's adder
    tree takes the terms (:func:`~flexor_hw.gateware.pipeline.pipelined_sum`). No multiplier
    cell for Yosys to map to a DSP."""
    if len(y) > len(x):
        x, y = y, x
    xs, ys = Shape.cast(x.shape()), Shape.cast(y.shape())
    # the wide operand signed, so that every partial product and difference is
    x_r = Signal(signed(xs.width + (not xs.signed)), name=f"{name}_x", reset_less=True)
    y_r = Signal(ys, name=f"{name}_y", reset_less=True)
    m.d.sync += [x_r.eq(x), y_r.eq(y)]
    w = ys.width

    def partial(j):
        return Mux(y_r[j], x_r, 0) << j

    terms = []
    for j in range(0, w, 2):
        top = ys.signed and j + 1 == w - 1      # the bit weighing −2^(w−1) is j + 1 (or j)
        if j + 1 < w:
            value = partial(j) - partial(j + 1) if top else partial(j) + partial(j + 1)
        else:
            value = -partial(j) if ys.signed else partial(j)
        term = Signal(value.shape(), name=f"{name}_t{j // 2}", reset_less=True)
        m.d.sync += term.eq(value)
        terms.append(term)
    assert len(terms) == lut_product_terms(xs.width, ys.width)
    return terms
