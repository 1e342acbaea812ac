"""Hardware subcommands of ``flexor-hw``: build, verify."""

import argparse


def _lanes(text):
    from .limits import MAX_NODES
    if text == "auto":
        return "auto"
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer or one integer per layer (e.g. 4 or 8,2), not {text!r}") from None
    if min(values) < 1 or len(values) > MAX_NODES:
        raise argparse.ArgumentTypeError(
            f"expected positive integers, one or one per layer (e.g. 4 or 8,2), not {text!r}")
    return values[0] if len(values) == 1 else values


def _vectors(text):
    from .cli_common import _positive_int
    from .limits import MAX_VECTORS
    value = _positive_int(text)
    if value > MAX_VECTORS:
        raise argparse.ArgumentTypeError(f"expected a positive integer up to {MAX_VECTORS:,}, "
                                         f"not {value:,}")
    return value


def cmd_build(args):
    from .build import build
    from .hw.fold import limit_text, parse_budget
    manifest = build(args.package, args.output, fold=args.fold, target=args.target,
                     budget=parse_budget(args.budget) if args.budget else None,
                     lanes=args.lanes, frac_bits=args.frac_bits, argmax=args.argmax,
                     clock_mhz=args.clock_mhz, baseline=args.baseline,
                     interface=args.interface)
    for node in manifest["nodes"]:
        mark = "  <- bottleneck" if node["name"] == manifest["bottleneck"] else ""
        fold = (f"PE {node['pe']} × SIMD {node['simd']}, {node['rom_words']} ROM words, "
                if node["kind"] == "mvau" else "")
        est = node["estimate"]
        products = ", products in logic" if node.get("multipliers_in_logic") else ""
        print(f"  {node['kind']:<9} {node['name']!r}: {fold}{node['cycles_per_inference']:,} "
              f"cycles per image; est. {est['luts']:,} LUT4, {est['brams']} block RAM"
              f"{products}{mark}")
    est = manifest["estimate"]
    print(f"  estimate: {est['luts']:,} LUT4, {est['ffs']:,} FF, {est['brams']} block RAM, "
          f"{est['dsps']} DSP")
    if manifest.get("faster_folding"):
        print(f"  {limit_text(manifest['faster_folding'])}")
    print(f"{args.output}: top {manifest['top']}, {manifest['cycles_per_inference']} cycles per "
          f"inference, latency {manifest['latency_cycles']} cycles, ROM {manifest['rom_bits']} "
          f"bits ({manifest['bits_per_weight']:.3f} bits/weight), "
          f"{manifest['xor_gates']} XOR gates; "
          f"{manifest['inferences_per_s']:,.0f} inferences/s at "
          f"{args.clock_mhz:g} MHz")
    if "axis" in manifest:
        s_axis, m_axis = manifest["axis"]["s_axis"], manifest["axis"]["m_axis"]
        print(f"  AXI4-Stream: s_axis {s_axis['tdata_width']} bits × {s_axis['beats_per_image']} "
              f"beats per image, m_axis {m_axis['tdata_width']} bits × "
              f"{m_axis['beats_per_result']} beats per result, TLAST on each last beat")


def _probability(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a probability from 0 to below 1, not {text!r}")
    return value


def cmd_verify(args):
    import os

    from .cli_common import DEFAULT_FRAC_BITS, _load_npy, check_outputs
    from .errors import InputError
    from .verify import verify
    check_outputs((args.report, "report"), (args.waves, "waveform file"))
    if os.path.isdir(args.target):
        given = [opt for opt, value in (("--lanes", args.lanes), ("--argmax", args.argmax or None),
                                        ("--frac-bits", args.frac_bits)) if value is not None]
        if given:
            raise InputError(f"{' and '.join(given)} appl{'ies' if len(given) == 1 else 'y'} "
                             f"only when TARGET is a package; "
                             f"{args.target!r} is a built directory, which has its own (rebuild "
                             f"it with 'flexor-hw build' to change them)")
    if args.labels and not args.inputs:
        raise InputError("--labels needs --inputs (the vectors they label); random vectors "
                         "have no labels")
    if args.vectors is not None and args.inputs:
        raise InputError("--vectors counts random vectors; with --inputs the vectors are "
                         "those of the file")
    inputs = _load_npy(args.inputs, "inputs") if args.inputs else None
    labels = _load_npy(args.labels, "labels") if args.labels else None
    report = verify(args.target, sim=args.sim, vectors=args.vectors or 32, seed=args.seed,
                    inputs=inputs, labels=labels, waves=args.waves, report=args.report,
                    lanes=args.lanes or 1,
                    frac_bits=DEFAULT_FRAC_BITS if args.frac_bits is None else args.frac_bits,
                    argmax=args.argmax,
                    in_stall=args.in_stall, out_stall=args.out_stall,
                    driver=args.driver or ("cocotb" if args.waves else "hdl"))
    protocol = report.get("protocol_errors", 0)
    ok = report["mismatches"] == 0 and protocol == 0
    speed = report["sim_cycles_per_s"]
    print(f"{report['simulator']}: {report['vectors']} vectors, {report['cycles']} cycles "
          f"({speed:,.0f} cycles/s), {report['measured_cycles_per_inference'] or 0:.1f} cycles "
          f"per inference measured with stalls ({report['cycles_per_inference']} unstalled, "
          f"ideal {report['ideal_cycles_per_inference']})")
    if "accuracy_rtl" in report:
        print(f"accuracy: RTL {report['accuracy_rtl']:.2%}, golden model "
              f"{report['accuracy_golden']:.2%}")
    if "axis" in report:
        print(f"AXI4-Stream: {report['axis']['tlast_errors']} misplaced m_axis_tlast, error "
              f"flag {report['axis']['error']}")
    if ok:
        print("PASS: 0 mismatches against the golden model")
        return 0
    if report["mismatches"] == 0:
        print("FAIL: the results match the golden model, but the AXI4-Stream framing does not")
        return 1
    print(f"FAIL: {report['mismatches']} mismatches against the golden model; first:")
    for mm in report["first_mismatches"]:
        print(f"  vector {mm['vector']}, layer {mm['layer']!r}, output {mm['output']}: "
              f"expected {mm['expected']}, got {mm['got']} (cycle {mm['cycle']})")
    return 1


def build_baseline(target, outdir):
    """Build the plain-ROM baseline of the design built in ``target``: the same package,
    folding (PE × SIMD per node), width and argmax."""
    import tempfile

    from .build import build
    from .verify import resolve_target
    with tempfile.TemporaryDirectory(prefix="flexor-baseline-") as tmp:
        _, manifest, package = resolve_target(target, tmp)
        b = manifest["build"]
        fold = {name: tuple(v) for name, v in b["fold"].items()}
        return build(package, outdir, fold=fold,
                     frac_bits=b["frac_bits"], argmax=b.get("argmax", False), baseline=True,
                     interface=manifest.get("interface", "native"))


def cmd_synth(args):
    import json
    import os
    import tempfile

    from .cli_common import check_outputs
    from .synth import compare, compare_modules, markdown, synth
    from .verify import load_build
    if args.report:
        root, _ = os.path.splitext(args.report)
        check_outputs((args.report, "report"), (root + ".md", "Markdown report"))
    load_build(args.target, package=args.compare)      # a built directory, checked first
    passes = {"detach_carry_outs": args.detach_carry_outs,         # the netlist passes
              "absorb_carry_feed_ins": args.absorb_carry_feed_ins,
              "merge_lone_flip_flops": args.merge_lone_flip_flops,
              "global_reset": args.global_reset}
    result = synth(args.target, args.device, clock_mhz=args.clock_mhz, seed=args.seed,
                   seeds=args.seeds, report=None if args.compare else args.report, **passes)
    print(markdown(result), end="")
    if not args.compare:
        return 0
    with tempfile.TemporaryDirectory(prefix="flexor-baseline-") as tmp:
        build_baseline(args.target, os.path.join(tmp, "baseline"))
        base = synth(os.path.join(tmp, "baseline"), args.device, clock_mhz=args.clock_mhz,
                     seed=args.seed, **passes)
    print()
    print(markdown(base), end="")
    print()
    print(compare(result, base))
    if result.get("modules") and base.get("modules"):
        print()
        print(compare_modules(result, base))
    if args.report:
        both = {"flexor": result, "baseline": base}
        with open(args.report, "w") as f:
            json.dump(both, f, indent=2)
            f.write("\n")
        root, _ = os.path.splitext(args.report)
        with open(root + ".md", "w") as f:
            f.write(markdown(result) + "\n" + markdown(base) + "\n```\n" +
                    compare(result, base) + "\n\n" + compare_modules(result, base) + "\n```\n")
    return 0


def add_hw_commands(sub):
    from .cli_common import _seed, add_frac_bits, int_range
    from .synth import TARGETS
    p = sub.add_parser("build", help="emit Verilog, ROM files and a manifest")
    p.add_argument("package")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="output directory, e.g. rtl_out/NAME")
    p.add_argument("--fold", default="auto", metavar="auto|NODE=PExSIMD,...",
                   help="how each weighted node folds: 'auto' (default: the cheapest folding "
                        "per node at one rate for the network, or the fastest that fits "
                        "--target/--budget), or PE×SIMD per node, e.g. conv2=16x25,fc1=8x32")
    p.add_argument("--target", choices=sorted(TARGETS), metavar="DEVICE",
                   help="fold to this device: the fastest folding whose estimate fits it ("
                        + ", ".join(sorted(TARGETS)) + ")")
    p.add_argument("--budget", metavar="luts=N,ffs=N,brams=N,dsps=N,lut_fill=P",
                   help="fold to these resources (any of them; with --target, at most its "
                        "own, in their place); lut_fill: the percentage of the LUTs a "
                        "folding may take (default 65, 68 on the ecp5-25k, 76.5 on the "
                        "ecp5-85k)")
    p.add_argument("--lanes", type=_lanes, default=None, metavar="N[,N...]|auto",
                   help="the older option: N slices of weight bits per cycle and row (PE 1, "
                        "SIMD N·n_out), one value or one per weighted node; 'auto' is --fold "
                        "auto")
    p.add_argument("--argmax", action="store_true",
                   help="end the network with an argmax unit: one class index per vector")
    p.add_argument("--baseline", action="store_true",
                   help="store the decrypted 1-bit weights in the ROM (no XOR network), "
                        "otherwise the same engine: the reference for cost comparisons")
    p.add_argument("--clock-mhz", type=float, default=100.0,
                   help="clock for the inferences/s figure (default 100)")
    p.add_argument("--interface", default="native", metavar="native|axis",
                   help="ports of the top: native streams (clk, rst, i__*, o__*; default) or "
                        "AXI4-Stream (aclk, aresetn, s_axis_*, m_axis_* with TLAST, error; "
                        "docs/axi-stream.md)")
    add_frac_bits(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("verify", help="simulate the Verilog (Icarus or Verilator) against the "
                                      "golden model")
    p.add_argument("target", help="a package (built into a temporary directory) or a built "
                                  "directory such as rtl_out/NAME")
    p.add_argument("--sim", choices=["icarus", "verilator"], default="icarus")
    p.add_argument("--vectors", type=_vectors,
                   help="random input vectors (default 32)")
    p.add_argument("--inputs", metavar="X.npy", help="integer input vectors instead of random")
    p.add_argument("--labels", metavar="Y.npy", help="labels of --inputs: report accuracy")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--in-stall", type=_probability, default=0.3, metavar="P",
                   help="probability the driver withholds valid in a cycle (default 0.3)")
    p.add_argument("--out-stall", type=_probability, default=0.3, metavar="P",
                   help="probability the monitor withholds ready in a cycle (default 0.3)")
    p.add_argument("--waves", metavar="FILE", help="write waveforms (FST on icarus, VCD on "
                                                   "verilator; with the cocotb driver)")
    p.add_argument("--driver", choices=["hdl", "cocotb"],
                   help="who drives the streams: an HDL harness, the simulator running on its "
                        "own (default; 400k cycles/s on Verilator for LeNet-5), or cocotb "
                        "coroutines cycle by cycle (default with --waves)")
    p.add_argument("--report", metavar="FILE", help="write the JSON report here")
    p.add_argument("--lanes", type=_lanes, help="when TARGET is a package (default: "
                                                 "--fold auto)")
    p.add_argument("--argmax", action="store_true", help="when TARGET is a package")
    add_frac_bits(p, "; when TARGET is a package", default=None)
    p.set_defaults(func=cmd_verify)

    from .synth import TARGETS
    p = sub.add_parser("synth", help="Yosys + nextpnr resource and timing report of a build")
    p.add_argument("target", metavar="DIR", help="a built directory such as rtl_out/NAME")
    p.add_argument("--target", dest="device", choices=sorted(TARGETS), default="ice40-up5k",
                   help="device (default ice40-up5k)")
    p.add_argument("--clock-mhz", type=float, metavar="MHZ",
                   help="clock the placer aims at; the report says whether it is met (default "
                        + ", ".join(f"{k} {v['clock_mhz']}" for k, v in sorted(TARGETS.items()))
                        + ")")
    p.add_argument("--seed", type=_seed, metavar="N",
                   help="nextpnr placement seed (default: nextpnr's own)")
    p.add_argument("--seeds", type=int_range(1, 64, "a count of seeds from 1 to 64"), default=1,
                   metavar="N",
                   help="place with N seeds (--seed and the ones after it, from one synthesis) "
                        "and report the fastest, listing every seed's Fmax (default 1)")
    p.add_argument("--report", metavar="FILE", help="write JSON here (and Markdown beside it)")
    p.add_argument("--compare", action="store_true",
                   help="also build and synthesize the plain-ROM baseline, side by side")
    p.add_argument("--detach-carry-outs", action="store_true",
                   help="ECP5: disconnect the carry-outs nothing reads before nextpnr, which "
                        "then packs the design in fewer LUT places (docs/performance.md)")
    p.add_argument("--absorb-carry-feed-ins", action="store_true",
                   help="ECP5: start each carry chain with a constant carry-in in its own first "
                        "cell, without the extra cell nextpnr puts before it, which packs the "
                        "design in fewer LUT places (docs/performance.md)")
    p.add_argument("--merge-lone-flip-flops", action="store_true",
                   help="ECP5: give each flip-flop whose enable and reset no other shares "
                        "them from a LUT4 instead, so that it fits any slice (for designs "
                        "the placer finds no place for; docs/performance.md)")
    p.add_argument("--global-reset", action="store_true",
                   help="ECP5: the units' flip-flops take their reset from one global buffer, "
                        "not each unit's own copy (for designs the placer finds no place "
                        "for; docs/performance.md)")
    p.set_defaults(func=cmd_synth)
