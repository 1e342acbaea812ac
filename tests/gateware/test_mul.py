# amaranth: UnusedElaboratable=no
"""The registered multiplier: its Verilog (plain, in Icarus) against Python's products two
clocks later; on the ECP5, one MULT18X18D holding both registers (Yosys)."""

import random
import shutil
import subprocess

import pytest
from amaranth.hdl import signed, unsigned

from conftest import ecp5_cells
from flexor_hw.gateware.mul import ECP5_DEFINE, MUL_VERILOG, Multiplier

CASES = [(13, True, 17, False), (18, True, 18, True), (17, False, 17, False), (4, True, 9, True)]


def _top(aw, asg, bw, bsg):
    shape = Multiplier(signed(aw) if asg else unsigned(aw),
                       signed(bw) if bsg else unsigned(bw)).p.shape()
    return shape, MUL_VERILOG + f"""
module top(input clk, input [{aw - 1}:0] a, input [{bw - 1}:0] b, output [{shape.width - 1}:0] p);
  flexor_mul #(.A_WIDTH({aw}), .B_WIDTH({bw}), .A_SIGNED({int(asg)}), .B_SIGNED({int(bsg)}),
               .P_WIDTH({shape.width})) m (.clk(clk), .a(a), .b(b), .p(p));
endmodule
"""


def _value(bits, width, is_signed):
    return bits - (1 << width) if is_signed and bits >> (width - 1) else bits


@pytest.mark.parametrize("aw,asg,bw,bsg", CASES)
def test_plain_verilog_multiplies_two_clocks_later(tmp_path, aw, asg, bw, bsg):
    iverilog = shutil.which("iverilog")
    if iverilog is None:
        pytest.skip("iverilog is not installed")
    shape, top = _top(aw, asg, bw, bsg)
    pw = shape.width
    rng = random.Random(aw * bw)
    pairs = [(rng.getrandbits(aw), rng.getrandbits(bw)) for _ in range(50)]
    steps = "\n".join(f"    a = {aw}'d{x}; b = {bw}'d{y}; #1 clk = 1; #1 clk = 0; "
                      f"$display(\"%0d\", p);" for x, y in pairs + [(0, 0)])
    (tmp_path / "tb.v").write_text(top + f"""
module tb;
  reg clk = 0;
  reg [{aw - 1}:0] a;
  reg [{bw - 1}:0] b;
  wire [{pw - 1}:0] p;
  top dut (.clk(clk), .a(a), .b(b), .p(p));
  initial begin
{steps}
    $finish;
  end
endmodule
""")
    subprocess.run([iverilog, "-o", "tb.vvp", "tb.v"], cwd=tmp_path, check=True, timeout=120)
    out = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=tmp_path, check=True, timeout=120,
                         capture_output=True, text=True).stdout.split()
    # the product of the operands set before edge k shows after edge k + 1
    got = [_value(int(v), pw, shape.signed) for v in out[1:1 + len(pairs)]]
    assert got == [_value(x, aw, asg) * _value(y, bw, bsg) for x, y in pairs]


def test_operands_wider_than_a_multiplier_are_refused():
    with pytest.raises(ValueError, match=r"^Operand A of unsigned\(18\) does not fit one "
                                         r"18-bit multiplier$"):
        Multiplier(unsigned(18), signed(4))


@pytest.mark.synth
def test_ecp5_multiplier_keeps_its_registers_inside(tmp_path):
    _, top = _top(13, True, 17, False)
    cells = ecp5_cells(tmp_path, top, defines=[ECP5_DEFINE])
    assert cells.get("MULT18X18D") == 1
    assert "TRELLIS_FF" not in cells            # both registers are the block's own


CONST_CASES = [(signed(8), 3), (signed(8), -5), (unsigned(8), 131071),
               (signed(8), (1 << 17) + 12345), (signed(9), -(1 << 19) - 3),
               (unsigned(15), (1 << 20) + 1), (signed(20), 77), (unsigned(15), 98765),
               (signed(20), 0), (signed(12), 1)]


@pytest.mark.parametrize("lut", [False, True], ids=["multiplier", "in_logic"])
@pytest.mark.parametrize("x_shape,k", CONST_CASES)
def test_const_product_is_exact_two_clocks_later(x_shape, k, lut):
    # A constant one multiplier takes, one cut in two (the rest a small product beside it),
    # and an operand too wide for any: x·k, two clocks after x, whatever the path; in logic
    # (where the DSPs run out) the same product and timing from carry chains, no Multiplier.
    from amaranth.hdl import ClockDomain, Module, Signal
    from amaranth.sim import Simulator
    from flexor_hw.gateware.mul import const_product
    m = Module()
    m.domains.sync = ClockDomain("sync")
    x = Signal(x_shape)
    p = const_product(m, x, k, "mul", False, lut=lut)
    lo, hi = (-(1 << (x_shape.width - 1)), (1 << (x_shape.width - 1)) - 1) if x_shape.signed \
        else (0, (1 << x_shape.width) - 1)
    xs = [lo, hi, 0, 1] + [random.Random(k).randint(lo, hi) for _ in range(30)]
    got = []
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def tb(ctx):
        for i in range(len(xs) + 2):
            ctx.set(x, xs[i] if i < len(xs) else 0)
            await ctx.tick()
            got.append(ctx.get(p))

    sim.add_testbench(tb)
    sim.run()
    assert got[1:len(xs) + 1] == [v * k for v in xs]
    multipliers = [sub for sub, _ in m._named_submodules.values() if isinstance(sub, Multiplier)]
    fits = x_shape.width + (not x_shape.signed) <= 18
    assert len(multipliers) == (0 if lut or not fits else 1)


LUT_SHAPES = [(signed(8), signed(1)), (unsigned(1), signed(8)), (signed(20), signed(13)),
              (unsigned(13), unsigned(6)), (signed(5), unsigned(7)), (signed(33), signed(15)),
              (unsigned(9), signed(2))]


@pytest.mark.parametrize("x_shape,y_shape", LUT_SHAPES)
def test_lut_product_terms_sum_to_the_product_two_clocks_later(x_shape, y_shape):
    # Where the DSPs run out: registered terms (a pair of the narrower operand's bits each;
    # a signed operand's top bit subtracts) whose sum is x·y, for a new pair every cycle.
    from amaranth.hdl import ClockDomain, Module, Signal
    from amaranth.sim import Simulator
    from flexor_hw.gateware.mul import lut_product, lut_product_terms
    m = Module()
    m.domains.sync = ClockDomain("sync")
    x, y = Signal(x_shape), Signal(y_shape)
    terms = lut_product(m, x, y, "mul")
    assert len(terms) == lut_product_terms(x_shape.width, y_shape.width) == \
        -(-min(x_shape.width, y_shape.width) // 2)

    def values(shape, rng):
        lo, hi = (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed \
            else (0, (1 << shape.width) - 1)
        return [lo, hi, 0, hi, lo] + [rng.randint(lo, hi) for _ in range(40)]

    rng = random.Random(x_shape.width * 100 + y_shape.width)
    pairs = list(zip(values(x_shape, rng), values(y_shape, rng)))
    got = []
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def tb(ctx):
        for i in range(len(pairs) + 2):
            a, b = pairs[i] if i < len(pairs) else (0, 0)
            ctx.set(x, a)
            ctx.set(y, b)
            await ctx.tick()
            got.append(sum(ctx.get(t) for t in terms))

    sim.add_testbench(tb)
    sim.run()
    assert got[1:len(pairs) + 1] == [a * b for a, b in pairs]


@pytest.mark.synth
def test_lut_product_takes_no_dsp_on_the_ecp5(tmp_path):
    # Yosys maps every `*` it sees on the ECP5 to a MULT18X18D: the product in logic has none.
    from amaranth.back import verilog
    from amaranth.hdl import Module, Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from flexor_hw.gateware.mul import lut_product

    class Top(wiring.Component):
        x: In(signed(20))
        y: In(signed(14))
        p: Out(signed(40))

        def elaborate(self, platform):
            m = Module()
            terms = lut_product(m, self.x, self.y, "mul")
            m.d.sync += self.p.eq(sum(terms))
            return m

    cells = ecp5_cells(tmp_path, verilog.convert(Top(), name="top"))
    assert "MULT18X18D" not in cells
    assert cells.get("CCU2C", 0) > 0            # the terms' carry chains


@pytest.mark.parametrize("k", [0, 1, -1, 3, 7, -7, 0b1011101, 131071, -(1 << 19) - 3, 98765])
def test_csd_digits_sum_to_the_constant_none_adjacent(k):
    from flexor_hw.gateware.mul import csd_digits
    digits = csd_digits(k)
    assert sum(sign << shift for shift, sign in digits) == k
    shifts = [shift for shift, _ in digits]
    assert all(b - a >= 2 for a, b in zip(shifts, shifts[1:]))
    assert len(digits) <= (abs(k).bit_length() + 2) // 2
