"""The first level of a binary-weight adder tree: two activations, each masked by its weight
bit, added — ``s = (wa ? a : 0) + (wb ? b : 0)``; or, with ``XOR``, each complemented where
its bit is set — ``s = (wa ? ~a : a) + (wb ? ~b : b)`` (``~a`` within ``a``'s width:
``2^w − 1 − a`` unsigned, ``−1 − a`` signed).

On the ECP5 the masks cost nothing: a carry-chain cell (CCU2C) computes each sum bit from a
LUT4 of ``(a_i, wa, b_i, wb)`` — the propagate ``(a_i·wa) ⊕ (b_i·wb)`` — and its carry from a
LUT2 of ``(a_i, wa)`` (the LUT4's first four entries), which is the generate whenever the
propagate is 0, both masked bits being equal then. Yosys builds no such cell from the
expression (it puts the masks in LUTs of their own before its adder), so the emitted Verilog
instantiates the chain under ``FLEXOR_ECP5`` (:data:`~flexor_hw.gateware.mul.ECP5_DEFINE`),
and the same sum in plain Verilog otherwise. Masking in a register's synchronous reset
instead gives every lane's activation register an LSR net of its own, and an ECP5 logic
tile's flip-flops share one: every lane then takes a tile of its own, and nextpnr's placer
found no legal place for them in designs past about half the device.

The complemented form gives a row ``Σ_k (w_k ? x_k : ~x_k) = S + K·N₀`` directly, with
``S = 2·Σ_{w=1} x − Σx`` the binary-weight sum, ``N₀`` the row's −1 weights and ``K`` the
complement's offset (``2^w − 1`` or ``−1``): a constant per row the requantizer's bias takes,
so no tree of ``Σx`` is needed. Its LUT4 is ``A ⊕ B ⊕ C ⊕ D`` (the generate ``A ⊕ B``, the
first operand's bit itself), its bits above the operands' width unmasked when unsigned.
"""

import re

from amaranth.hdl import Const, Instance, Mux, Shape, Signal

from .mul import ECP5_DEFINE

__all__ = ["masked_add", "MADD_VERILOG", "madd_modules", "MADD_INIT", "MADD_XOR_INIT"]


def _init(xor=False):
    """The LUT4's truth table: ``(A & B) ^ (C & D)`` (``xor``: ``A ^ B ^ C ^ D``), entry
    ``{D, C, B, A}``."""
    value = 0
    for i in range(16):
        a, b, c, d = i & 1, i >> 1 & 1, i >> 2 & 1, i >> 3 & 1
        value |= ((a ^ b ^ c ^ d) if xor else ((a & b) ^ (c & d))) << i
    return value


#: INIT of each CCU2C half: ``A = a_i``, ``B = wa``, ``C = b_i``, ``D = wb``.
MADD_INIT = _init()
#: The same with ``XOR``: each operand bit complemented by its weight bit.
MADD_XOR_INIT = _init(xor=True)

MADD_VERILOG = f"""\
// flexor_madd: s = (wa ? a : 0) + (wb ? b : 0), WIDTH-bit operands (SIGNED: two's
// complement), WIDTH + 1 bits out; with XOR, s = (wa ? ~a : a) + (wb ? ~b : b). Under
// `define {ECP5_DEFINE}: a chain of ECP5 CCU2C cells whose LUT4s take the masks (propagate
// (a & wa) ^ (b & wb), or a ^ wa ^ b ^ wb; generate, from the LUT4's first four entries,
// a & wa, or a ^ wa); otherwise the same sum in plain Verilog.
module flexor_madd #(
    parameter WIDTH = 8,
    parameter SIGNED = 0,
    parameter XOR = 0
) (
    input wire [WIDTH-1:0] a,
    input wire [WIDTH-1:0] b,
    input wire wa,
    input wire wb,
    output wire [WIDTH:0] s
);
    localparam N = WIDTH + 1;
    localparam N2 = (N + 1) / 2 * 2;
    wire [N2-1:0] ax = {{{{(N2-WIDTH){{SIGNED ? a[WIDTH-1] : 1'b0}}}}, a}};
    wire [N2-1:0] bx = {{{{(N2-WIDTH){{SIGNED ? b[WIDTH-1] : 1'b0}}}}, b}};
`ifdef {ECP5_DEFINE}
    localparam [15:0] INIT = XOR ? 16'h{MADD_XOR_INIT:04X} : 16'h{MADD_INIT:04X};
    wire [N2/2:0] carry;
    wire [N2-1:0] sum;
    // the masks of each bit: an unsigned operand's bits above WIDTH stay 0 when complemented
    wire [N2-1:0] ma, mb;
    assign carry[0] = 1'b0;
    genvar i;
    generate for (i = 0; i < N2; i = i + 1) begin : mask
        assign ma[i] = (XOR && !SIGNED && i >= WIDTH) ? 1'b0 : wa;
        assign mb[i] = (XOR && !SIGNED && i >= WIDTH) ? 1'b0 : wb;
    end endgenerate
    generate for (i = 0; i < N2; i = i + 2) begin : chain
        CCU2C #(
            .INIT0(INIT), .INIT1(INIT),
            .INJECT1_0("NO"), .INJECT1_1("NO")
        ) ccu2c (
            .CIN(carry[i/2]),
            .A0(ax[i]), .B0(ma[i]), .C0(bx[i]), .D0(mb[i]),
            .A1(ax[i+1]), .B1(ma[i+1]), .C1(bx[i+1]), .D1(mb[i+1]),
            .S0(sum[i]), .S1(sum[i+1]), .COUT(carry[i/2+1])
        );
    end endgenerate
    assign s = sum[WIDTH:0];
`else
    wire [WIDTH-1:0] ta = a ^ {{WIDTH{{wa}}}};
    wire [WIDTH-1:0] tb = b ^ {{WIDTH{{wb}}}};
    wire [N2-1:0] tax = {{{{(N2-WIDTH){{SIGNED ? ta[WIDTH-1] : 1'b0}}}}, ta}};
    wire [N2-1:0] tbx = {{{{(N2-WIDTH){{SIGNED ? tb[WIDTH-1] : 1'b0}}}}, tb}};
    wire [N2-1:0] sum = XOR ? tax + tbx
                            : (wa ? ax : {{N2{{1'b0}}}}) + (wb ? bx : {{N2{{1'b0}}}});
    assign s = sum[WIDTH:0];
`endif
endmodule
"""


def madd_modules(verilog):
    """The masked adder's module, if an emitted design instantiates it."""
    return MADD_VERILOG if re.search(r"^\s*flexor_madd #\(", verilog, re.MULTILINE) else ""


def masked_add(m, a, wa, b, wb, name, *, emit, xor=False):
    """``(wa ? a : 0) + (wb ? b : 0)`` for ``a``, ``b`` of one shape (``b`` None: 0), one
    bit wider (``xor``: ``(wa ? ~a : a) + (wb ? ~b : b)``): with ``emit`` an instance of
    ``flexor_madd`` (:data:`MADD_VERILOG`), else the expression, for Amaranth's simulator.
    Returns the sum's signal."""
    shape = Shape.cast(a.shape())
    if b is None:
        b, wb = Const(0, shape), Const(0, 1)
    total = Signal(Shape(shape.width + 1, shape.signed), name=name)
    if emit:
        m.submodules[f"{name}_add"] = Instance(
            "flexor_madd", p_WIDTH=shape.width, p_SIGNED=int(shape.signed), p_XOR=int(xor),
            i_a=a.as_unsigned(), i_b=b.as_unsigned(), i_wa=wa, i_wb=wb, o_s=total)
    elif xor:
        m.d.comb += total.eq(Mux(wa, ~a, a) + Mux(wb, ~b, b))
    else:
        m.d.comb += total.eq(Mux(wa, a, 0) + Mux(wb, b, 0))
    return total
