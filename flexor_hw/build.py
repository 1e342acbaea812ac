"""``flexor-hw build``: emit Verilog, ``$readmemh`` ROM files and a manifest for a package."""

import json
import os
import sys
import time

import numpy as np
from amaranth.hdl import Shape

from . import __version__
from .errors import BuildError
from .package import load, sha256_file
from .plan import hex_lines, plan_graph, plan_network
from .resources import stage_memories
from .xor import xor_gate_count

__all__ = ["build", "MANIFEST", "INTERFACES"]

MANIFEST = "manifest.json"
INTERFACES = ("native", "axis")


def _progress(message, quiet):
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def _const_bytes(plan):
    n_bytes = -(-plan.const_width // 8)
    raw = b"".join(w.to_bytes(n_bytes, "little") for w in plan.const_words())
    return np.frombuffer(raw, np.uint8).reshape(plan.out_features, n_bytes)


def _top_name(name):
    clean = "".join(ch if ch.isalnum() else "_" for ch in name).strip("_") or "net"
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


def build(package_path, outdir, *, lanes=1, frac_bits=16, argmax=False, clock_mhz=100.0,
          baseline=False, interface="native", quiet=False):
    """Build ``package_path`` into ``outdir``; return the manifest (also written as JSON).

    ``interface="axis"`` puts the top behind AXI4-Stream ports (``aclk``, ``aresetn``,
    ``s_axis_*``, ``m_axis_*``, ``error``; docs/axi-stream.md). Same inputs give
    byte-identical files.
    """
    from amaranth.back import verilog

    from .gateware.network import GraphTop, NetworkTop
    from .gateware.rom import rom_modules

    if interface not in INTERFACES:
        raise BuildError(f"interface must be native or axis, not {interface!r}")
    t0 = time.perf_counter()
    package = load(package_path)
    graph = not package.is_chain        # chains of FleXOR linears keep their proven top
    if graph:
        stages = plan_graph(package, lanes, frac_bits, baseline=baseline)  # checked first
        plans = [st.plan for st in stages if st.plan is not None]
    else:
        plans = plan_network(package, lanes, frac_bits, baseline=baseline)
    top_name = _top_name(package.name) + ("_baseline" if baseline else "")
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as e:
        raise BuildError(f"cannot create output directory {str(outdir)!r}: "
                         f"{e.strerror or e}") from None

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
    outputs = int(np.prod(package.shapes()[package.output_node.name]))
    emitted = top
    if interface == "axis":
        from .gateware.axis import AxisTop
        emitted = AxisTop(top, beats_in=int(np.prod(package.input_shape)),
                          beats_out=1 if argmax else outputs)
    text = verilog.convert(emitted, name=top_name, emit_src=False)
    verilog_file = f"{top_name}.v"
    with open(os.path.join(outdir, verilog_file), "w") as f:
        f.write(text.rstrip("\n") + "\n\n" + rom_modules(text))

    numel = sum(p.layer.numel for p in plans)
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
                                            os.path.abspath(outdir)),
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
    if interface == "axis":         # a native build's manifest is as it was: no "interface"
        manifest["interface"] = "axis"
        manifest["ports"], manifest["axis"] = _axis(manifest["ports"], emitted)
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
    _progress(f"[build] wrote {outdir} in {time.perf_counter() - t0:.1f} s", quiet)
    return manifest
