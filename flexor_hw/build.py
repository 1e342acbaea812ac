"""``flexor-hw build``: emit Verilog, ``$readmemh`` ROM files and a manifest for a package."""

import json
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
from .plan import hex_lines, plan_graph, plan_network
from .resources import stage_memories
from .xor import xor_gate_count

__all__ = ["build", "MANIFEST"]

MANIFEST = "manifest.json"


def _progress(message, quiet):
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def _const_bytes(plan):
    n_bytes = -(-plan.const_width // 8)
    raw = b"".join(w.to_bytes(n_bytes, "little") for w in plan.const_words())
    return np.frombuffer(raw, np.uint8).reshape(plan.out_features, n_bytes)


def _top_name(name):
    clean = "".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in name).strip("_") \
        or "net"
    return f"flexor_{clean}"


def _ports(top, package, in_range, outputs):
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
         "meaning": "synchronous reset, active high"},
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
                     if top.argmax else
                     f"output ({kind(shape_out)}); {outputs} beats per vector, in output order")},
        {"name": "o__valid", "width": 1, "direction": "output", "meaning": "o__payload is valid"},
        {"name": "o__ready", "width": 1, "direction": "input",
         "meaning": "the consumer takes o__payload this cycle when o__valid is high"},
    ]


def build(package_path, outdir, *, lanes=1, frac_bits=16, argmax=False, clock_mhz=100.0,
          baseline=False, quiet=False):
    """Build ``package_path`` into ``outdir``; return the manifest (also written as JSON).

    Same inputs give byte-identical files. Every argument and the output path are checked
    before the work starts; the files are written into a staging directory beside ``outdir``
    and moved into place at the end, so a failed build writes nothing.
    """
    from .limits import MAX_CLOCK_MHZ, check_output_dir
    from .ops.base import check_frac_bits
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
    _check_destinations(load(package_path), outdir, baseline)
    t0 = time.perf_counter()
    staging = tempfile.mkdtemp(prefix=".flexor-build-", dir=ancestor)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(staging, 0o777 & ~mask)            # what os.makedirs would have given it
    try:
        manifest = _build(package_path, staging, outdir, lanes=lanes, frac_bits=frac_bits,
                          argmax=argmax, clock_mhz=clock_mhz, baseline=baseline, quiet=quiet)
        _move_into_place(staging, outdir)
    except OSError as e:
        raise BuildError(f"cannot write {outdir!r}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _progress(f"[build] wrote {outdir} in {time.perf_counter() - t0:.1f} s", quiet)
    return manifest


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


def _build(package_path, outdir, final_dir, *, lanes, frac_bits, argmax, clock_mhz, baseline,
           quiet):
    """:func:`build` into the staging directory ``outdir`` (``final_dir``: where it goes)."""
    from amaranth.back import verilog

    from .gateware.network import GraphTop, NetworkTop
    from .gateware.rom import rom_modules

    package = load(package_path)
    graph = not package.is_chain        # chains of FleXOR linears keep their proven top
    if graph:
        stages = plan_graph(package, lanes, frac_bits, baseline=baseline)  # checked first
        plans = [st.plan for st in stages if st.plan is not None]
    else:
        plans = plan_network(package, lanes, frac_bits, baseline=baseline)
    top_name = _top_name(package.name) + ("_baseline" if baseline else "")

    # Cycles per inference of each weighted layer (for a conv: all its output pixels).
    layer_cycles = ([st.cycles_per_image for st in stages if st.plan is not None] if graph
                    else [p.cycles_per_inference for p in plans])
    files, layer_info = [], []
    for k, plan in enumerate(plans):
        weights_file = f"{top_name}_l{k}_weights.hex"
        consts_file = f"{top_name}_l{k}_consts.hex"
        _progress(f"[build] layer {k} {plan.layer.name!r}: {plan.n_words} words × "
                  f"{plan.rom_width} bits -> {weights_file}", quiet)
        with open(os.path.join(outdir, weights_file), "wb") as f:
            f.write(hex_lines(plan.rom_bytes(), plan.rom_width))
        with open(os.path.join(outdir, consts_file), "wb") as f:
            f.write(hex_lines(_const_bytes(plan), plan.const_width))
        files.append((weights_file, consts_file))
        layer_info.append({
            "name": plan.layer.name, "op": plan.layer.op, "fan_in": plan.fan_in,
            "out": plan.out_features,
            "q": plan.q, "n_in": plan.layer.n_in, "n_out": plan.layer.n_out,
            "lanes": plan.lanes, "window_bits": plan.window, "mac_lanes": plan.step_lanes,
            "steps_per_word": plan.steps_per_word, "rom_words": plan.n_words,
            "rom_width": plan.rom_width, "rom_bits": plan.rom_bits,
            "const_rom_bits": plan.const_width * plan.out_features,
            "bits_per_weight": plan.layer.bits_per_weight,
            "xor_gates": (0 if baseline else
                          plan.lanes * sum(xor_gate_count(m) for m in plan.layer.xor)),
            "cycles_per_inference": layer_cycles[k],
            "latency_cycles": plan.latency_cycles,
            "double_buffered": plan.double_buffer,
            "activation_memory": plan.act_memory,
            "activation_memory_bits": plan.activation_memory_bits,
            "activation_register_bits": plan.activation_register_bits,
            "output_fifo_depth": plan.fifo_depth,
            "widths": plan.consts.widths(),
            "weights_file": weights_file, "consts_file": consts_file,
        })

    _progress(f"[build] elaborating and converting {top_name} to Verilog", quiet)
    if graph:
        top = GraphTop(stages, init_files=files, argmax=argmax)
        in_range = stages[0].x_range
    else:
        quantizer = (None if package.thresholds is None
                     else (package.thresholds.tolist(), package.input))
        top = NetworkTop(plans, init_files=files, argmax=argmax, quantizer=quantizer)
        fin = plans[0].consts
        in_range = (fin.x_lo, fin.x_hi) if package.thresholds is None else \
            (package.input.lo, package.input.hi)
    text = verilog.convert(top, name=top_name, emit_src=False)
    verilog_file = f"{top_name}.v"
    with open(os.path.join(outdir, verilog_file), "w") as f:
        f.write(text.rstrip("\n") + "\n\n" + rom_modules(text))

    numel = sum(p.layer.numel for p in plans)
    outputs = int(np.prod(package.shapes()[package.output_node.name]))
    macs = package.macs()
    # The ideal: every MAC lane busy every cycle, Σ MACs·q over all MAC lanes of all planes.
    ideal = sum(macs[p.layer.name] * p.q for p in plans) / sum(p.step_lanes * p.q for p in plans)
    stored = sum(p.layer.stored_bits for p in plans)
    manifest = {
        "flexor_hw_version": __version__,
        "top": top_name,
        "verilog": verilog_file,
        "rom_files": [name for pair in files for name in pair],
        "package": {"file": os.path.relpath(os.path.abspath(package_path),
                                            os.path.abspath(final_dir)),
                    "sha256": sha256_file(package_path), "name": package.name},
        "build": {"lanes": [p.lanes for p in plans], "auto_lanes": lanes == "auto",
                  "frac_bits": plans[0].consts.frac_bits,
                  "argmax": bool(argmax), "baseline": bool(baseline)},
        "ports": _ports(top, package, in_range, outputs),
        "input": {"beats_per_vector": int(np.prod(package.input_shape)),
                  "quantizer_bits_per_feature": package.bits_per_feature},
        "output": {"beats_per_vector": 1 if argmax else outputs,
                   "argmax": bool(argmax), "baseline": bool(baseline)},
        "latency_cycles": top.latency,
        "cycles_per_inference": top.cycles_per_inference,
        "ideal_cycles_per_inference": round(ideal, 1),
        "bottleneck_layer": max(range(len(plans)), key=lambda k: layer_cycles[k]),
        "clock_mhz": clock_mhz,
        "inferences_per_s": clock_mhz * 1e6 / top.cycles_per_inference,
        "rom_bits": sum(p.rom_bits for p in plans),
        "const_rom_bits": sum(info["const_rom_bits"] for info in layer_info),
        "weights": numel,
        "stored_bits": stored,
        "bits_per_weight": stored / numel,
        "xor_gates": sum(info["xor_gates"] for info in layer_info),
        "layers": layer_info,
    }
    if graph:
        spatial = len(package.input_shape) == 3
        manifest["input"]["order"] = "y,x,c" if spatial else "features"
        out_shape = package.shapes()[package.output_node.name]
        manifest["output"]["order"] = "y,x,c" if len(out_shape) == 3 and not argmax else \
            "features"
        nodes = []
        for st, mods in zip(stages, top.stage_modules()):
            mems = stage_memories(st)
            nodes.append({"name": st.node.name, "op": st.node.op,
                          "cycles_per_inference": st.cycles_per_image, "modules": mods,
                          "block_ram_estimate": sum(x["block_rams"] for x in mems),
                          "memories": mems})
        manifest["nodes"] = nodes
        manifest["block_ram_estimate"] = sum(n["block_ram_estimate"] for n in nodes)
    with open(os.path.join(outdir, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return manifest
