"""The first level of a binary-weight adder tree: two activations, each masked by its weight
bit, added — ``s = (wa ? a : 0) + (wb ? b : 0)``.

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
"""

import re

from amaranth.hdl import Const, Instance, Mux, Shape, Signal

from .mul import ECP5_DEFINE

__all__ = ["masked_add", "MADD_VERILOG", "madd_modules", "MADD_INIT"]


def _init():
    """The LUT4's truth table: ``(A & B) ^ (C & D)``, entry ``{D, C, B, A}``."""
    value = 0
    for i in range(16):
        a, b, c, d = i & 1, i >> 1 & 1, i >> 2 & 1, i >> 3 & 1
        value |= ((a & b) ^ (c & d)) << i
    return value


#: INIT of each CCU2C half: ``A = a_i``, ``B = wa``, ``C = b_i``, ``D = wb``.
MADD_INIT = _init()

MADD_VERILOG = f"""\
// flexor_madd: s = (wa ? a : 0) + (wb ? b : 0), WIDTH-bit operands (SIGNED: two's
// complement), WIDTH + 1 bits out. Under `define {ECP5_DEFINE}: a chain of ECP5 CCU2C cells
// whose LUT4s take the masks (propagate (a & wa) ^ (b & wb); generate, from the LUT4's
// first four entries, a & wa); otherwise the same sum in plain Verilog.
module flexor_madd #(
    parameter WIDTH = 8,
    parameter SIGNED = 0
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
    wire [N2/2:0] carry;
    wire [N2-1:0] sum;
    assign carry[0] = 1'b0;
    genvar i;
    generate for (i = 0; i < N2; i = i + 2) begin : chain
        CCU2C #(
            .INIT0(16'h{MADD_INIT:04X}), .INIT1(16'h{MADD_INIT:04X}),
            .INJECT1_0("NO"), .INJECT1_1("NO")
        ) ccu2c (
            .CIN(carry[i/2]),
            .A0(ax[i]), .B0(wa), .C0(bx[i]), .D0(wb),
            .A1(ax[i+1]), .B1(wa), .C1(bx[i+1]), .D1(wb),
            .S0(sum[i]), .S1(sum[i+1]), .COUT(carry[i/2+1])
        );
    end endgenerate
    assign s = sum[WIDTH:0];
`else
    wire [N2-1:0] sum = (wa ? ax : {{N2{{1'b0}}}}) + (wb ? bx : {{N2{{1'b0}}}});
    assign s = sum[WIDTH:0];
`endif
endmodule
"""


def madd_modules(verilog):
    """The masked adder's module, if an emitted design instantiates it."""
    return MADD_VERILOG if re.search(r"^\s*flexor_madd #\(", verilog, re.MULTILINE) else ""


def masked_add(m, a, wa, b, wb, name, *, emit):
    """``(wa ? a : 0) + (wb ? b : 0)`` for ``a``, ``b`` of one shape (``b`` None: 0), one
    bit wider: with ``emit`` an instance of ``flexor_madd`` (:data:`MADD_VERILOG`), else the
    expression, for Amaranth's simulator. Returns the sum's signal."""
    shape = Shape.cast(a.shape())
    if b is None:
        b, wb = Const(0, shape), Const(0, 1)
    total = Signal(Shape(shape.width + 1, shape.signed), name=name)
    if emit:
        m.submodules[f"{name}_add"] = Instance(
            "flexor_madd", p_WIDTH=shape.width, p_SIGNED=int(shape.signed),
            i_a=a.as_unsigned(), i_b=b.as_unsigned(), i_wa=wa, i_wb=wb, o_s=total)
    else:
        m.d.comb += total.eq(Mux(wa, a, 0) + Mux(wb, b, 0))
    return total
