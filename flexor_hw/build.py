"""``flexor-hw build``: emit Verilog, ``$readmemh`` ROM files and a manifest for a package."""

import json
import math
import os
import shutil
import sys
import tempfile
import time

import numpy as np
from amaranth.hdl import Shape

from . import __version__
from .errors import BuildError, InputError
from .package import load, sha256_file
from .rom_image import hex_lines
from .xor import xor_gate_count

__all__ = ["build", "plan_hardware", "hardware_top", "MANIFEST", "INTERFACES"]

MANIFEST = "manifest.json"
INTERFACES = ("native", "axis")


def _progress(message, quiet):
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def _top_name(name):
    clean = "".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in name).strip("_") \
        or "net"
    return f"flexor_{clean}"


def _ports(top, package, in_range, outputs, argmax):
    shape_in = Shape.cast(top.signature.members["i"].signature.members["payload"].shape)
    shape_out = Shape.cast(top.signature.members["o"].signature.members["payload"].shape)
    f0 = int(np.prod(package.input_shape))
    lo, hi = in_range
    spatial = len(package.input_shape) == 3 and not package.is_chain
    order = ("in (y, x, c) order: pixel after pixel, each pixel's channels in order" if spatial
             else "in feature order")

    def kind(shape):
        return "signed" if shape.signed else "unsigned"

    return [
        {"name": "clk", "width": 1, "direction": "input", "meaning": "clock, rising edge"},
        {"name": "rst", "width": 1, "direction": "input",
         "meaning": "synchronous reset, active high; no beat is taken or given while it is "
                    "high and in the cycle after"},
        {"name": "i__payload", "width": shape_in.width, "signed": shape_in.signed,
         "direction": "input",
         "meaning": f"input activation ({kind(shape_in)}, range [{lo}, {hi}]); "
                    f"{f0} beats per vector, {order}"
                    + ("; quantized on chip" if package.thresholds is not None else "")},
        {"name": "i__valid", "width": 1, "direction": "input", "meaning": "i__payload is valid"},
        {"name": "i__ready", "width": 1, "direction": "output",
         "meaning": "the design takes i__payload this cycle when i__valid is high"},
        {"name": "o__payload", "width": shape_out.width, "signed": shape_out.signed,
         "direction": "output",
         "meaning": (f"class index (unsigned): argmax of the {outputs} outputs, one beat per vector"
                     if argmax else
                     f"output ({kind(shape_out)}); {outputs} beats per vector, in output order")},
        {"name": "o__valid", "width": 1, "direction": "output", "meaning": "o__payload is valid"},
        {"name": "o__ready", "width": 1, "direction": "input",
         "meaning": "the consumer takes o__payload this cycle when o__valid is high"},
    ]


def lanes_to_fold(graph, lanes):
    """``--lanes N`` (one value, or one per weighted node) as an explicit folding: ``N``
    slices of weight bits per cycle and row, PE 1 (``SIMD = min(N·n_out, fan-in)``)."""
    units = graph.mvaus
    per = list(lanes) if isinstance(lanes, (list, tuple)) else [lanes] * len(units)
    if len(per) != len(units):
        raise BuildError(f"lanes needs one value or {len(units)} values (one per weighted "
                         f"node), not {len(per)}")
    explicit = {}
    for st, n in zip(units, per):
        w = st.weights
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= w.n_slices:
            raise BuildError(f"lanes must be from 1 to {w.n_slices} for node {st.name!r} "
                             f"(its slices per bit-plane), not {n}")
        explicit[st.name] = (1, min(n * w.n_out, w.fan_in))
    return explicit


def plan_hardware(package, *, fold="auto", target=None, budget=None, lanes=None,
                  frac_bits=16, argmax=False, baseline=False, progress=None):
    """The package's hardware graph, folded and with its FIFOs sized and widths matched:
    lowering, then the folding pass (``fold``: ``"auto"``, ``{node: (pe, simd)}`` or its
    text; to a device with ``target`` and/or ``budget``; it sizes the skip FIFOs as it
    folds), then width matching. ``lanes`` (the older option) is ``"auto"`` or slices per
    cycle. ``progress``: called with a line for each rate the folding to a device tries."""
    from .hw import fold as F
    from .hw.lower import lower
    from .synth import TARGETS
    graph = lower(package, frac_bits, argmax=argmax, baseline=baseline)
    if isinstance(fold, str):
        fold = F.parse_fold(fold)
    if lanes is not None and lanes != "auto":
        fold = lanes_to_fold(graph, lanes)
    device = dict(F.DEFAULT_BUDGET)
    what = "the budget"
    if target is not None:
        if target not in TARGETS:
            raise BuildError(f"unknown target {target!r}; expected one of "
                             f"{', '.join(sorted(TARGETS))}")
        t = TARGETS[target]
        device = {"luts": t["luts"], "ffs": t.get("ffs", t["luts"]), "brams": t["brams"],
                  "dsps": t["dsps"], "family": t["family"]}
        if "lut_margin" in t:
            device["lut_margin"] = device["device_margin"] = t["lut_margin"]
        if t["family"] == "ice40":      # a logic cell holds a LUT4 and a flip-flop
            device["cells"] = t["luts"]
            device["lut_ram"] = False   # and there is no LUT RAM
            # nor a flip-flop without its LUT for free: the weight bits are registered (in
            # their decoders' cells), the vector word is not (its read address is)
            device["address_register"] = True
            device["rom_page_words"] = 16       # a weight ROM in logic: a LUT4 per page bit
        else:       # a weight ROM in logic deeper than 64 words: pages read into registers
            # (LeNet-5's fc2, 260 × 16 bits: its ROM's decode was the longest path placed)
            device["rom_page_words"] = 64
            # SIMD below a slice's n_out bits where a unit has time to spare (on the UP5K the
            # logic cells it freed went to a faster digits MLP that placed below 50 MHz)
            device["narrow_simd"] = True
        what = target
    if budget:
        if target is not None:
            for key, name in (("luts", "LUT4"), ("ffs", "flip-flops"), ("brams", "block RAMs"),
                              ("dsps", "DSP blocks")):
                if budget.get(key, 0) > device[key]:
                    raise BuildError(f"--budget {key}={budget[key]} is more than {target} has "
                                     f"({device[key]:,} {name}); to let a folding fill more "
                                     f"of its LUTs, give lut_fill=P (a percentage)")
        device.update(budget)
        if "luts" in budget:
            # a target's own share is of its LUTs filled by one design; of a count of LUTs
            # given, a folding takes the common share (or lut_fill's)
            device.pop("device_margin", None)
            if "lut_margin" not in budget:
                device.pop("lut_margin", None)
        if target is not None:
            what = f"{target} with the budget"
    if fold is None and (target is not None or budget):
        graph = F.fold_to_device(graph, device, what=what, progress=progress)
    else:       # --lanes keeps the one-element windows it always had
        if target is None and not budget:       # no device: every multiplier a DSP
            device["dsps"] = math.inf
        graph = F.fold(graph, explicit=fold, budget=device,
                       widen=lanes is None or lanes == "auto")
    return F.match_widths(graph)      # (the folding pass sized the skip FIFOs)


def _clean(name):
    return "".join(ch if ch.isalnum() else "_" for ch in name)


def _unit_name(stage):
    return _clean(stage.name)


def hardware_top(graph, files=None, *, reset_tree=False):
    """The one top module of a hardware graph: its stages' units in stream order. With
    ``files`` (``{node: (weights, constants)}``) the ROMs read ``$readmemh`` files (for
    emission); without, they hold their contents (for Amaranth's simulator).
    ``reset_tree``: ports ``clk`` and ``rst`` of its own, each unit's reset a register of
    its own (:class:`~flexor_hw.gateware.top.DataflowTop`)."""
    from .gateware.top import DataflowTop
    # a stage without ROM files still learns that it is emitted ({}): its multipliers are
    # then flexor_mul instances (a MULT18X18D holding the registers on the ECP5)
    units = [(_unit_name(st),
              lambda st=st: st.unit(None if files is None else files.get(st.name, {})))
             for st in graph.stages]
    skips = {_unit_name(st): _clean(st.add) for st in graph.stages if st.kind == "fork"}
    return DataflowTop(units, skips, in_shape=graph.stages[0].x_shape,
                       out_shape=graph.stages[-1].y_shape, reset_tree=reset_tree,
                       emit=files is not None)


def _axis(ports, axis):
    """Ports and the ``axis`` manifest section of an :class:`AxisTop` ``axis`` around the top
    whose native ``ports`` (:func:`_ports`) are given."""
    native = {p["name"]: p for p in ports}
    w_in, w_out = len(axis.s_axis_tdata), len(axis.m_axis_tdata)
    n_in, n_out = axis.beats_in, axis.beats_out

    def extended(shape, width, upper):
        if shape.width == width:
            return ""
        return (f"; in the low {shape.width} bits, " + ("sign" if shape.signed else "zero")
                + f"-extended to {width} bits" + upper)

    error = ("sticky: rises when s_axis_tlast is misplaced (not on beat "
             f"{n_in} of an image, or missing there) and stays high until aresetn")
    misplaced = (f"a packet (beats up to an s_axis_tlast) shorter than {n_in} beats is completed "
                 f"with zero beats; in a longer one the beats after beat {n_in} are dropped up "
                 "to and including its s_axis_tlast; either way error rises, the packet gives "
                 "one result, and the next packet starts a new image")
    tlast_in = (f"high on the last beat ({n_in} of {n_in}) of each image and only there")
    tlast_out = (f"high on the last beat ({n_out} of {n_out}) of each result")
    ports = [
        {"name": "aclk", "width": 1, "direction": "input", "meaning": "clock, rising edge"},
        {"name": "aresetn", "width": 1, "direction": "input",
         "meaning": "synchronous reset, active low; clears error"},
        {"name": "s_axis_tdata", "width": w_in, "signed": axis.in_shape.signed,
         "direction": "input",
         "meaning": native["i__payload"]["meaning"]
                    + extended(axis.in_shape, w_in, " (the upper bits are ignored)")},
        {"name": "s_axis_tvalid", "width": 1, "direction": "input",
         "meaning": "s_axis_tdata is valid"},
        {"name": "s_axis_tready", "width": 1, "direction": "output",
         "meaning": "the design takes s_axis_tdata this cycle when s_axis_tvalid is high"},
        {"name": "s_axis_tlast", "width": 1, "direction": "input", "meaning": tlast_in},
        {"name": "m_axis_tdata", "width": w_out, "signed": axis.out_shape.signed,
         "direction": "output",
         "meaning": native["o__payload"]["meaning"]
                    + extended(axis.out_shape, w_out, "")},
        {"name": "m_axis_tvalid", "width": 1, "direction": "output",
         "meaning": "m_axis_tdata is valid"},
        {"name": "m_axis_tready", "width": 1, "direction": "input",
         "meaning": "the consumer takes m_axis_tdata this cycle when m_axis_tvalid is high"},
        {"name": "m_axis_tlast", "width": 1, "direction": "output", "meaning": tlast_out},
        {"name": "error", "width": 1, "direction": "output", "meaning": error},
    ]
    section = {
        "s_axis": {"tdata_width": w_in, "payload_width": axis.in_shape.width,
                   "signed": axis.in_shape.signed, "beats_per_image": n_in, "tlast": tlast_in},
        "m_axis": {"tdata_width": w_out, "payload_width": axis.out_shape.width,
                   "signed": axis.out_shape.signed, "beats_per_result": n_out,
                   "tlast": tlast_out},
        "error": error,
        "misplaced_tlast": misplaced,
    }
    return ports, section


def build(package_path, outdir, *, fold="auto", target=None, budget=None, lanes=None,
          frac_bits=16, argmax=False, clock_mhz=100.0, baseline=False, interface="native",
          quiet=False):
    """Build ``package_path`` into ``outdir``; return the manifest (also written as JSON).

    ``interface="axis"`` puts the top behind AXI4-Stream ports (``aclk``, ``aresetn``,
    ``s_axis_*``, ``m_axis_*``, ``error``; docs/axi-stream.md).

    Same inputs give byte-identical files. Every argument and the output path are checked
    before the work starts; the files are written into a staging directory beside ``outdir``
    and moved into place at the end, so a failed build writes nothing.
    """
    from .limits import MAX_CLOCK_MHZ, check_output_dir
    from .ops.base import check_frac_bits
    if interface not in INTERFACES:
        raise BuildError(f"interface must be native or axis, not {interface!r}")
    if isinstance(clock_mhz, bool) or not isinstance(clock_mhz, (int, float)) or \
            not 0 < clock_mhz <= MAX_CLOCK_MHZ:         # NaN fails this too
        raise BuildError(f"clock must be a frequency in MHz in (0, {MAX_CLOCK_MHZ:g}], "
                         f"not {clock_mhz!r}")
    check_frac_bits(frac_bits)
    outdir = str(outdir)
    try:
        ancestor = check_output_dir(outdir)
    except InputError as e:
        raise BuildError(str(e)) from None
    t0 = time.perf_counter()
    package = load(package_path)
    _check_destinations(package, outdir, baseline)
    graph = plan_hardware(package, fold=fold, target=target, budget=budget, lanes=lanes,
                          frac_bits=frac_bits, argmax=argmax, baseline=baseline,
                          progress=lambda line: _progress(line, quiet))
    staging = tempfile.mkdtemp(prefix=".flexor-build-", dir=ancestor)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(staging, 0o777 & ~mask)            # what os.makedirs would have given it
    try:
        settings = {"fold": {st.name: [st.pe, st.simd] for st in graph.mvaus},
                    "fold_auto": lanes in (None, "auto") and fold in (None, "auto"),
                    "target": target, "budget": budget or None, "frac_bits": frac_bits,
                    "argmax": bool(argmax), "baseline": bool(baseline)}
        manifest = _build(package_path, package, graph, staging, outdir, settings,
                          clock_mhz=clock_mhz, interface=interface, quiet=quiet)
        _move_into_place(staging, outdir)
    except OSError as e:
        raise BuildError(f"cannot write {outdir!r}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _progress(f"[build] wrote {outdir} in {time.perf_counter() - t0:.1f} s", quiet)
    return manifest


def _write_words(path, words, width):
    """A ``$readmemh`` file of ``width``-bit words given as Python ints."""
    n_bytes = -(-width // 8)
    raw = b"".join(v.to_bytes(n_bytes, "little") for v in words)
    with open(path, "wb") as f:
        f.write(hex_lines(np.frombuffer(raw, np.uint8).reshape(-1, n_bytes), width))


def _check_destinations(package, outdir, baseline):
    """Before the work: no file the build writes is in the way in ``outdir`` (a directory
    where the design's Verilog, ROM files or manifest go)."""
    if not os.path.isdir(outdir):
        return
    top = _top_name(package.name) + ("_baseline" if baseline else "")
    names = [f"{top}.v", MANIFEST]
    for k in range(len(package.weighted_nodes())):
        names += [f"{top}_l{k}_weights.hex", f"{top}_l{k}_consts.hex"]
    for name in names:
        dest = os.path.join(outdir, name)
        if os.path.lexists(dest) and (os.path.isdir(dest) or not os.path.isfile(dest)):
            raise BuildError(f"cannot write {dest!r}: it exists and is not a regular file "
                             f"(nothing was written)")


def _move_into_place(staging, outdir):
    """Move a finished build into ``outdir``: the whole directory when it is new, else file by
    file over the old build's, after checking that none of them is in the way."""
    names = sorted(os.listdir(staging))
    if not os.path.isdir(outdir):
        os.makedirs(os.path.dirname(os.path.abspath(outdir)), exist_ok=True)
        os.rename(staging, outdir)
        return
    for name in names:
        dest = os.path.join(outdir, name)
        if os.path.lexists(dest) and (os.path.isdir(dest) or not os.path.isfile(dest)):
            raise BuildError(f"cannot write {dest!r}: it exists and is not a regular file "
                             f"(nothing was written)")
    for name in names:
        os.replace(os.path.join(staging, name), os.path.join(outdir, name))


def _build(package_path, package, graph, outdir, final_dir, settings, *, clock_mhz,
           interface, quiet):
    """:func:`build` of the folded ``graph`` into the staging directory ``outdir``
    (``final_dir``: where it goes); ``settings``: the manifest's ``build``."""
    from amaranth.back import verilog

    from .gateware.madd import madd_modules
    from .gateware.mul import mul_modules
    from .gateware.pipeline import copy_modules
    from .gateware.rom import bank_rows, rom_modules
    from .rom_image import mvau_const_words, mvau_head_words, mvau_rom_bytes

    argmax, baseline = settings["argmax"], settings["baseline"]
    top_name = _top_name(package.name) + ("_baseline" if baseline else "")

    # ROM images pass: one weight and one constant file per matrix-vector unit.
    files, layer_info = {}, []
    macs = package.macs()
    for k, st in enumerate(graph.mvaus):
        p, w = st.params, st.weights
        weights_file = f"{top_name}_l{k}_weights.hex"
        consts_file = f"{top_name}_l{k}_consts.hex"
        _progress(f"[build] {st.name!r}: PE {p.pe} × SIMD {p.simd}, {p.rom_depth} words × "
                  f"{p.rom_width} bits -> {weights_file}", quiet)
        described = st.describe()
        image = mvau_rom_bytes(w, p.pe, p.simd, plain=p.plain, stationary=p.stationary)
        if described["rom_banks"] > 1:          # the rows of a banked ROM (rom_layout)
            image = bank_rows(image, p.rom_width, described["rom_banks"],
                              described["rom_file_words"])
        with open(os.path.join(outdir, weights_file), "wb") as f:
            f.write(hex_lines(image, described["rom_file_width"]))
        _write_words(os.path.join(outdir, consts_file),
                     mvau_const_words(p.consts, w.out_features, p.pe, p.out_simd),
                     p.const_width)
        files[st.name] = (weights_file, consts_file)
        heads = {}
        if p.carry:
            heads_file = f"{top_name}_l{k}_heads.hex"
            _write_words(os.path.join(outdir, heads_file), mvau_head_words(w, p.pe, p.simd),
                         p.head_width)
            files[st.name] += (heads_file,)
            heads = {"heads_file": heads_file, "head_rom_words": p.nf,
                     "head_rom_width": p.head_width}
        info = {"name": st.name, **described,
                "lanes": p.pe * p.simd, "mac_lanes": p.pe * p.simd,
                "xor_gates": 0 if p.plain else p.pe * p.slots * sum(xor_gate_count(m)
                                                                   for m in w.xor),
                "cycles_per_inference": st.cycles_per_image(),
                "latency_cycles": st.latency(), "macs": macs[st.name],
                "weights_file": weights_file, "consts_file": consts_file, **heads}
        layer_info.append(info)

    _progress(f"[build] elaborating and converting {top_name} to Verilog", quiet)
    top = hardware_top(graph, files, reset_tree=True)
    outputs = int(np.prod(package.shapes()[package.output_node.name]))
    emitted = top
    if interface == "axis":
        from .gateware.axis import AxisTop
        emitted = AxisTop(top, beats_in=int(np.prod(package.input_shape)),
                          beats_out=1 if argmax else outputs)
    text = verilog.convert(emitted, name=top_name, emit_src=False)
    verilog_file = f"{top_name}.v"
    with open(os.path.join(outdir, verilog_file), "w") as f:
        f.write(text.rstrip("\n") + "\n\n" + rom_modules(text) + mul_modules(text)
                + madd_modules(text) + copy_modules(text))

    units_hw = graph.mvaus
    numel = sum(st.weights.numel for st in units_hw)
    stored = sum(st.weights.stored_bits for st in units_hw)
    cycles = graph.cycles_per_image()
    stage_info = []
    for st in graph.stages:
        est = st.estimate()
        stage_info.append({"name": st.name, "kind": st.kind, "modules": [_unit_name(st)],
                           "cycles_per_inference": st.cycles_per_image(),
                           "in_simd": st.in_simd, "out_simd": st.out_simd,
                           **st.describe(), "memories": st.memories(), "estimate": est,
                           "block_ram_estimate": est["brams"]})
    bottleneck = max(graph.stages, key=lambda st: st.cycles_per_image())
    spatial = len(package.input_shape) == 3 and not package.is_chain
    out_shape = package.shapes()[package.output_node.name]
    manifest = {
        "flexor_hw_version": __version__,
        "top": top_name,
        "verilog": verilog_file,
        "rom_files": [name for st in units_hw for name in files[st.name]],
        "package": {"file": os.path.relpath(os.path.abspath(package_path),
                                            os.path.abspath(final_dir)),
                    "sha256": sha256_file(package_path), "name": package.name},
        "build": settings,
        "ports": _ports(top, package, graph.input_range, outputs, argmax),
        "input": {"beats_per_vector": int(np.prod(package.input_shape)),
                  "quantizer_bits_per_feature": package.bits_per_feature,
                  "order": "y,x,c" if spatial else "features"},
        "output": {"beats_per_vector": 1 if argmax else outputs,
                   "argmax": bool(argmax), "baseline": bool(baseline),
                   "order": "y,x,c" if len(out_shape) == 3 and not argmax else "features"},
        "latency_cycles": graph.latency(),
        "cycles_per_inference": cycles,
        "ideal_cycles_per_inference": round(graph.ideal_cycles(macs), 1),
        "bottleneck": bottleneck.name,
        # folded to a device: the next faster folding tried, and what it runs out of
        "faster_folding": graph.limit,
        "clock_mhz": clock_mhz,
        "inferences_per_s": clock_mhz * 1e6 / cycles,
        "rom_bits": sum(st.params.weight_bits for st in units_hw),
        "const_rom_bits": sum(info["const_rom_bits"] for info in layer_info),
        "weights": numel,
        "stored_bits": stored,
        "bits_per_weight": stored / numel,
        "xor_gates": sum(info["xor_gates"] for info in layer_info),
        "estimate": graph.estimate(),
        "block_ram_estimate": graph.estimate()["brams"],
        "layers": layer_info,
        "nodes": stage_info,
    }
    if interface == "axis":         # a native build's manifest has no "interface"
        manifest["interface"] = "axis"
        manifest["ports"], manifest["axis"] = _axis(manifest["ports"], emitted)
    with open(os.path.join(outdir, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return manifest
