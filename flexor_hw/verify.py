"""``flexor-hw verify``: run the emitted Verilog in cocotb and compare with the golden model."""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .build import MANIFEST, build
from .errors import FlexorError, InputError
from .limits import count_limit
from .golden import check_input, run_int
from .package import load, sha256_file
from .toolchain import require_simulator, verilator_env

__all__ = ["verify", "resolve_target", "load_build", "VerifyError"]

TB_MODULE = "flexor_hw.sim.flexor_tb"
AXIS_TB_MODULE = "flexor_hw.sim.axis_tb"      # a top built with --interface axis


class VerifyError(FlexorError):
    """The target cannot be verified (missing manifest, package, files)."""


@contextlib.contextmanager
def _environ(env):
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _progress(message, quiet):
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def _is_int(v, lo=0, hi=1 << 62):
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _plain_name(name):
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and \
        "\\" not in name and "\0" not in name and len(name) <= 255


def _check_manifest(manifest, path, package):
    """The keys and types of a build manifest that verify and synth use."""
    def bad(what):
        raise VerifyError(f"{path!r} is not a flexor-hw build manifest: {what}")

    if not isinstance(manifest, dict):
        bad("not a JSON object")
    for key, kind in (("top", str), ("verilog", str), ("rom_files", list), ("build", dict),
                      ("ports", list), ("layers", list), ("input", dict), ("output", dict)):
        if not isinstance(manifest.get(key), kind):
            bad(f"{key!r} is missing or not a{'n' if kind is dict else ''} "
                f"{ {str: 'string', list: 'list', dict: 'object'}[kind] }")
    if not manifest["top"].isidentifier() or not manifest["top"].isascii():
        bad(f"'top' must be a Verilog identifier, not {manifest['top'][:40]!r}")
    for name in [manifest["verilog"]] + manifest["rom_files"]:
        if not _plain_name(name):
            bad(f"file names must be plain names in the directory, not {str(name)[:80]!r}")
    for key in ("cycles_per_inference", "latency_cycles", "rom_bits", "const_rom_bits"):
        if not _is_int(manifest.get(key)):
            bad(f"{key!r} must be a non-negative integer, not {manifest.get(key)!r}")
    if manifest["cycles_per_inference"] < 1:
        bad("'cycles_per_inference' must be positive")
    if not _is_int(manifest["build"].get("frac_bits"), 0, 32):
        bad("'build.frac_bits' must be an integer from 0 to 32")
    if not isinstance(manifest["build"].get("argmax", False), bool):
        bad("'build.argmax' must be true or false")
    ports = {p.get("name"): p for p in manifest["ports"] if isinstance(p, dict)}
    data = (("s_axis_tdata", "m_axis_tdata") if manifest.get("interface") == "axis"
            else ("i__payload", "o__payload"))
    for name in data:
        port = ports.get(name)
        if port is None or not _is_int(port.get("width"), 1, 256) or \
                not isinstance(port.get("signed", False), bool):
            bad(f"port {name!r} with a width from 1 to 256 and 'signed' is missing")
    if not manifest["layers"]:
        bad("'layers' is empty")
    for k, layer in enumerate(manifest["layers"]):
        if not isinstance(layer, dict):
            bad(f"layers[{k}] is not an object")
        for key in ("rom_words", "rom_width", "out", "const_rom_bits", "lanes", "n_out", "q",
                    "rom_bits"):
            if not _is_int(layer.get(key)) or (key != "const_rom_bits" and layer[key] < 1):
                bad(f"layers[{k}].{key} must be a positive integer, not {layer.get(key)!r}")
        for key in ("weights_file", "consts_file"):
            if layer.get(key) not in manifest["rom_files"]:
                bad(f"layers[{k}].{key} is not one of its rom_files")
    if package:
        pkg = manifest.get("package")
        if not isinstance(pkg, dict) or not isinstance(pkg.get("file"), str) or \
                not isinstance(pkg.get("sha256"), str):
            bad("'package' must be an object with 'file' and 'sha256'")


def _check_hex(path, lines, width):
    """A ``$readmemh`` file of ``lines`` words of ``width`` bits (``lines``/``width`` None:
    any equal-length words): read within a bound derived from what it should hold."""
    from .limits import MAX_FILE_BYTES, read_bounded
    digits = None if width is None else -(-width // 4)
    limit = MAX_FILE_BYTES if lines is None or digits is None else lines * (digits + 1)
    try:
        data = read_bounded(path, "ROM file", limit=limit, error=VerifyError)
    except VerifyError as e:
        raise VerifyError(f"{e} (truncated, garbled or another build's: rebuild the "
                          f"design)") from None
    rows = data.split(b"\n")
    if rows[-1] == b"":
        rows.pop()
    problem = None
    if lines is not None and len(rows) != lines:
        problem = f"{len(rows)} words, expected {lines}"
    else:
        size = digits or (len(rows[0]) if rows else 0)
        for k, row in enumerate(rows):
            if len(row) != size or not row or row.strip(b"0123456789abcdefABCDEF"):
                problem = f"line {k + 1} is not a {size}-digit hexadecimal word"
                break
    if problem:
        raise VerifyError(f"ROM file {path!r}: {problem} (truncated, garbled or another "
                          f"build's: rebuild the design)")


def load_build(target, *, package=True):
    """The manifest of a built directory, checked: a bounded, valid JSON object with the keys
    verify and synth use; every file it lists present, the ROM files well-formed words of the
    manifest's sizes; and (``package``) the package it was built from unchanged. Returns
    ``(manifest, package_path)``."""
    from .limits import read_json
    target = str(target)
    if not os.path.isdir(target):
        raise VerifyError(f"{target!r} is not a built directory (build one with "
                          f"'flexor-hw build PKG -o DIR')")
    path = os.path.join(target, MANIFEST)
    if not os.path.exists(path):
        raise VerifyError(f"{target!r} has no {MANIFEST}: build it with "
                          f"'flexor-hw build PKG -o {target}'")
    manifest = read_json(path, "build manifest", error=VerifyError)
    _check_manifest(manifest, path, package)
    package_path = None
    if package:
        package_path = os.path.normpath(os.path.join(target, manifest["package"]["file"]))
        if not os.path.isfile(package_path):
            raise VerifyError(f"the package named by {path!r} is missing: {package_path!r}")
        actual = sha256_file(package_path)
        if actual != manifest["package"]["sha256"]:
            raise VerifyError(f"the package {package_path!r} has sha256 {actual[:16]}…, but "
                              f"the build was made from "
                              f"{manifest['package']['sha256'][:16]}…: rebuild the design")
    for name in [manifest["verilog"]] + manifest["rom_files"]:
        if not os.path.isfile(os.path.join(target, name)):
            raise VerifyError(f"{target!r} lacks {name!r}, which its manifest lists")
    sizes = {}
    for layer in manifest["layers"]:
        shape = layer.get("rom_file_words"), layer.get("rom_file_width")   # banked: its rows
        ok = all(_is_int(v, 1) for v in shape)
        sizes[layer["weights_file"]] = shape if ok else (layer["rom_words"], layer["rom_width"])
        if _is_int(layer.get("const_rom_words"), 1) and _is_int(layer.get("const_rom_width"), 1):
            sizes[layer["consts_file"]] = (layer["const_rom_words"], layer["const_rom_width"])
        if isinstance(layer.get("heads_file"), str) and _is_int(layer.get("head_rom_words"), 1) \
                and _is_int(layer.get("head_rom_width"), 1):
            sizes[layer["heads_file"]] = (layer["head_rom_words"], layer["head_rom_width"])
    for name in manifest["rom_files"]:
        _check_hex(os.path.join(target, name), *sizes.get(name, (None, None)))
    return manifest, package_path


def resolve_target(target, workdir, *, lanes=None, frac_bits=16, argmax=False, quiet=False):
    """Return ``(rtl_dir, manifest, package_path)`` for a package or a built directory."""
    target = str(target)
    if os.path.isdir(target):
        manifest, package_path = load_build(target)
        return target, manifest, package_path
    if not os.path.isfile(target):
        raise VerifyError(f"{target!r} is neither a package file nor a built directory")
    rtl_dir = os.path.join(workdir, "rtl")
    manifest = build(target, rtl_dir, lanes=lanes, frac_bits=frac_bits, argmax=argmax,
                     quiet=quiet)
    return rtl_dir, manifest, target


def _check_labels(package, labels, n_vectors):
    """Class labels of the inputs: integers from 0 to the number of outputs − 1, one per
    vector."""
    return check_labels(labels, n_vectors,
                        int(np.prod(package.shapes()[package.output_node.name])))


def check_labels(labels, n_vectors, classes, *, each="input vector"):
    """Class labels as int64: integers from 0 to ``classes − 1``, one per ``each``."""
    labels = np.asarray(labels)
    if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels have dtype {labels.dtype}, expected integer class indices "
                         f"from 0 to {classes - 1}")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or labels.shape[0] != n_vectors:
        raise InputError(f"labels have shape {list(labels.shape)}, expected [{n_vectors}]: "
                         f"one per {each}")
    if labels.min() < 0 or labels.max() >= classes:
        raise InputError(f"labels span [{labels.min()}, {labels.max()}], but the network has "
                         f"{classes} outputs: expected class indices from 0 to {classes - 1}")
    return labels.astype(np.int64)


def _random_inputs(package, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(package.input.lo, package.input.hi + 1,
                     size=(n, *package.input_shape), dtype=np.int64)
    if n >= 2:                                # the ends of the range, always
        x[0], x[1] = package.input.lo, package.input.hi
    return x


def _run_cocotb(sim, design, manifest, tb_dir, workdir, env, config, flat_x, expected, *,
                waves, sim_build, quiet, **_):
    """The cocotb testbench (``flexor_hw.sim.flexor_tb``): Python drives the streams."""
    from cocotb_tools.runner import get_results, get_runner

    from .limits import log_tail

    env = dict(env, FLEXOR_TB_CONFIG=os.path.join(tb_dir, "config.json"))
    build_args = ["-Wno-fatal", "-Wno-WIDTH"] if sim == "verilator" else []
    build_dir = sim_build or os.path.join(workdir, f"sim_build_{sim}")
    log_path = os.path.join(tb_dir, "sim.log")
    with _environ(env):
        runner = get_runner(sim)
        t0 = time.perf_counter()
        _progress(f"[verify] building {manifest['top']} for {sim}", quiet)
        build_log = os.path.join(tb_dir, "build.log")
        try:
            runner.build(sources=[design], hdl_toplevel=manifest["top"], build_dir=build_dir,
                         always=False, timescale=("1ns", "1ps"), build_args=build_args,
                         waves=bool(waves), log_file=build_log)
        except (SystemExit, subprocess.CalledProcessError) as e:
            raise VerifyError(f"the {sim} build of {manifest['top']} failed ({e}): "
                              f"{log_tail(build_log)}") from None
        build_s = time.perf_counter() - t0
        _progress(f"[verify] simulating {flat_x.shape[0]} vectors on {sim} with cocotb "
                  f"(stalls: in {config['in_stall']:.0%}, out {config['out_stall']:.0%})",
                  quiet)
        t1 = time.perf_counter()
        results_xml = os.path.join(tb_dir, "results.xml")
        try:
            runner.test(test_module=AXIS_TB_MODULE if config["axis"] else TB_MODULE,
                        testcase="axis_matches_golden_model" if config["axis"] else None,
                        hdl_toplevel=manifest["top"],
                        build_dir=build_dir, test_dir=tb_dir, waves=bool(waves),
                        log_file=log_path, results_xml=results_xml)
        except SystemExit:
            pass    # a failing cocotb test; its result file tells what happened
        test_s = time.perf_counter() - t1
    n_tests, n_failed = (get_results(Path(results_xml)) if os.path.isfile(results_xml)
                         else (0, 1))
    if not os.path.isfile(config["result"]):
        raise VerifyError(f"the simulation ended without a result: {log_tail(log_path)}")
    with open(config["result"]) as f:
        result = json.load(f)
    if waves:
        produced = os.path.join(build_dir, "dump.vcd") if sim == "verilator" else \
            os.path.join(build_dir, f"{manifest['top']}.fst")
        if not os.path.isfile(produced):
            produced = os.path.join(tb_dir, os.path.basename(produced))
        if os.path.isfile(produced):
            shutil.copyfile(produced, waves)
    return result, build_s, test_s, {"tests": n_tests, "failed": n_failed}


def _run_hdl(sim, design, manifest, tb_dir, workdir, env, config, flat_x, expected, *,
             waves, sim_build, quiet, in_stall, out_stall, seed):
    """The HDL harness (``flexor_hw.sim.harness``): the simulator runs on its own."""
    from .sim.harness import (CYCLES_FILE, IN_FILE, MAX_BEATS, MAX_OUTPUTS, OUT_FILE,
                              HarnessError, Scoreboard, build_harness, harness_verilog,
                              read_hex, run_harness)
    if waves:
        raise VerifyError("--waves needs the cocotb driver (--driver cocotb)")
    if flat_x.size > MAX_BEATS or expected.size > MAX_OUTPUTS:
        raise InputError(f"the HDL harness takes up to {MAX_BEATS} input beats and "
                         f"{MAX_OUTPUTS} outputs per run, not {flat_x.size} and "
                         f"{expected.size}: split the inputs")
    in_width, out_width = config["input_width"], config["output_width"]
    harness = os.path.join(tb_dir, "flexor_harness.v")
    with open(harness, "w") as f:
        f.write(harness_verilog(manifest["top"], in_width, out_width, axis=config["axis"]))
    mask, digits = (1 << in_width) - 1, -(-in_width // 4)
    with open(os.path.join(tb_dir, IN_FILE), "w") as f:
        f.write("".join(f"{int(v) & mask:0{digits}x}\n" for v in flat_x.reshape(-1)))
    t0 = time.perf_counter()
    _progress(f"[verify] building {manifest['top']} in the HDL harness for {sim}", quiet)
    try:
        command = build_harness(sim, [design, harness], tb_dir, env)
    except HarnessError as e:
        raise VerifyError(f"the {sim} build of {manifest['top']} failed: {e}") from None
    build_s = time.perf_counter() - t0
    _progress(f"[verify] simulating {flat_x.shape[0]} vectors on {sim} "
              f"(stalls: in {in_stall:.0%}, out {out_stall:.0%})", quiet)
    plusargs = [f"+n_in={flat_x.size}", f"+n_out={expected.size}",
                f"+beats_per_vector={flat_x.shape[1]}", f"+beats_per_result={expected.shape[1]}",
                f"+in_stall={round(in_stall * 65536)}",
                f"+out_stall={round(out_stall * 65536)}", f"+seed={seed}",
                f"+limit={config['timeout_cycles']}"]
    try:
        summary, test_s = run_harness(command, tb_dir, env, plusargs)
    except HarnessError as e:
        raise VerifyError(str(e)) from None
    got = read_hex(os.path.join(tb_dir, OUT_FILE), out_width, config["output_signed"])
    cycles = read_hex(os.path.join(tb_dir, CYCLES_FILE), 32, False)
    scoreboard = Scoreboard(expected, config["layer"])
    scoreboard.check(got, cycles)
    missing = expected.size - len(got)
    n_out = expected.shape[1]
    ends = cycles[n_out - 1::n_out]
    result = {
        "vectors": int(expected.shape[0]),
        "mismatches": scoreboard.mismatches + missing,
        "first_mismatches": scoreboard.first,
        "cycles": summary["cycles"],
        "timed_out": bool(summary["timed_out"]),
        "sim_cycles_per_s": summary["cycles"] / test_s if test_s > 0 else None,
        "measured_cycles_per_inference": (float(np.diff(ends).mean()) if len(ends) > 1
                                          else None),
        # image by image: the pipeline's filling, then its steady rate
        "cycles_between_outputs": [int(g) for g in np.diff(ends)],
        "measured_latency_cycles": int(ends[0]) - summary["last_in_cycle"] if ends else None,
        "outputs": got,
    }
    if config["axis"]:
        result["axis"] = {"tlast_errors": summary["tlast_errors"], "error": summary["error"]}
    return result, build_s, test_s, None


def verify(target, *, sim="icarus", vectors=32, seed=0, inputs=None, labels=None, waves=None,
           report=None, lanes=None, frac_bits=16, argmax=False, in_stall=0.3, out_stall=0.3,
           workdir=None, sim_build=None, quiet=False, driver="hdl"):
    """Simulate ``target`` (a package or a built directory) and compare with the golden model.

    Parameters
    ----------
    inputs : array, optional
        Integer inputs ``[n, *input_shape]``; ``vectors`` random ones when omitted.
    labels : array, optional
        Class labels of ``inputs``: accuracy (argmax of the outputs) is reported for the RTL
        and the golden model.
    sim_build : str, optional
        Simulator build directory to reuse between runs of the same design.
    driver : {"hdl", "cocotb"}
        Who drives the streams: the HDL harness (``flexor_hw.sim.harness``; the simulator
        runs free, 20–100× faster) or cocotb coroutines in Python, cycle by cycle.

    Returns
    -------
    dict
        The report (also written to ``report`` as JSON when given). For a build with
        ``interface="axis"`` the AXI4-Stream top itself is simulated (TLAST on each image's
        last beat); ``axis`` then holds the result beats with a misplaced ``m_axis_tlast``
        and the ``error`` port at the end, and ``protocol_errors`` their sum.
    """
    from .limits import MAX_SEED, MAX_VECTORS, check_output_file
    from .ops.base import check_frac_bits
    if driver not in ("hdl", "cocotb"):
        raise VerifyError(f"driver must be hdl or cocotb, not {driver!r}")
    if waves and driver == "hdl":
        raise VerifyError("--waves needs the cocotb driver (--driver cocotb)")
    for path, what in ((report, "report"), (waves, "waveform file")):
        if path:
            check_output_file(path, what)
    if labels is not None and inputs is None:
        raise InputError("labels need inputs (the vectors they label); random vectors have "
                         "no labels")
    if inputs is None and not (_is_int(vectors) and 1 <= vectors <= MAX_VECTORS):
        raise InputError(f"vectors must be an integer from 1 to {MAX_VECTORS:,}, "
                         f"not {vectors!r}")
    if not _is_int(seed, 0, MAX_SEED):
        raise InputError(f"seed must be an integer from 0 to {MAX_SEED:,}, not {seed!r}")
    for name, p in (("in_stall", in_stall), ("out_stall", out_stall)):
        if not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise InputError(f"{name} must be a probability from 0 to below 1, not {p!r}")
    built = os.path.isdir(str(target))
    if built:                   # cheap: the manifest and its files, checked
        rtl_dir, manifest, package_path = resolve_target(target, None)
        frac = manifest["build"]["frac_bits"]
        argmax = manifest["build"].get("argmax", False)
    elif not os.path.isfile(str(target)):
        raise VerifyError(f"{str(target)!r} is neither a package file nor a built directory")
    else:
        package_path, frac = str(target), check_frac_bits(frac_bits)
    package = load(package_path)
    # Everything about the inputs is checked before the build and the simulation.
    if inputs is None:
        n_vectors = vectors
    else:
        x = np.asarray(inputs)
        check_input(package, x)
        n_vectors = x.shape[0]
        count_limit("the number of input vectors", n_vectors, MAX_VECTORS)
    if labels is not None:
        labels = _check_labels(package, labels, n_vectors)
    features = int(np.prod(package.input_shape))
    outputs = 1 if argmax else int(np.prod(package.shapes()[package.output_node.name]))
    if driver == "hdl":
        from .sim.harness import MAX_BEATS, MAX_OUTPUTS
        if n_vectors * features > MAX_BEATS or n_vectors * outputs > MAX_OUTPUTS:
            raise InputError(f"the HDL harness takes up to {MAX_BEATS:,} input beats and "
                             f"{MAX_OUTPUTS:,} outputs per run, not {n_vectors * features:,} "
                             f"and {n_vectors * outputs:,} ({n_vectors:,} vectors): use fewer "
                             f"vectors, or split the inputs")
    # what was given is checked first, then whether this machine can simulate it
    require_simulator(sim)
    own_tmp = workdir is None
    workdir = (tempfile.mkdtemp(prefix="flexor-verify-") if own_tmp
               else os.path.abspath(str(workdir)))
    try:
        if not built:
            rtl_dir, manifest, package_path = resolve_target(
                target, workdir, lanes=lanes, frac_bits=frac_bits, argmax=argmax, quiet=quiet)
        frac = manifest["build"]["frac_bits"]
        if inputs is None:
            x = _random_inputs(package, vectors, seed)
        else:
            x = x.astype(np.int64)
        logits = run_int(package, x, frac)[-1]
        argmax = manifest["build"].get("argmax", False)
        expected = logits.argmax(axis=1)[:, None] if argmax else logits
        if manifest["input"].get("order") == "y,x,c":      # images stream pixel by pixel
            image = x.reshape(x.shape[0], *package.input_shape)
            flat_x = image.transpose(0, 2, 3, 1).reshape(x.shape[0], -1)
        else:
            flat_x = x.reshape(x.shape[0], -1)
        if manifest["output"].get("order") == "y,x,c":
            expected = expected.transpose(0, 2, 3, 1)
        expected = expected.reshape(expected.shape[0], -1)

        ports = {p["name"]: p for p in manifest["ports"]}
        axis = manifest.get("axis") if manifest.get("interface") == "axis" else None
        if axis is not None:        # values sign- or zero-extended to whole bytes
            in_port, out_port = ports["s_axis_tdata"], ports["m_axis_tdata"]
        else:
            in_port, out_port = ports["i__payload"], ports["o__payload"]
        out_signed = bool(out_port["signed"])
        tb_dir = os.path.join(workdir, f"tb_{sim}")
        os.makedirs(tb_dir, exist_ok=True)
        for name in manifest["rom_files"]:          # $readmemh reads from the sim's cwd
            shutil.copyfile(os.path.join(rtl_dir, name), os.path.join(tb_dir, name))
        np.save(os.path.join(tb_dir, "inputs.npy"), flat_x)
        np.save(os.path.join(tb_dir, "expected.npy"), expected)
        cycles_bound = manifest["cycles_per_inference"] + manifest["latency_cycles"]
        stall_factor = 1.0 / max(0.05, (1 - in_stall) * (1 - out_stall))
        config = {
            "input_width": in_port["width"],
            "output_width": out_port["width"],
            "axis": axis is not None,
            "inputs": os.path.join(tb_dir, "inputs.npy"),
            "expected": os.path.join(tb_dir, "expected.npy"),
            "result": os.path.join(tb_dir, "result.json"),
            "output_signed": out_signed,
            "in_stall": in_stall, "out_stall": out_stall, "seed": seed,
            "layer": package.output_node.name + (" (argmax)" if argmax else ""),
            "timeout_cycles": int(4 * stall_factor * (x.shape[0] + 2) * cycles_bound) + 1000,
        }
        with open(os.path.join(tb_dir, "config.json"), "w") as f:
            json.dump(config, f)
        env = dict(os.environ)
        if sim == "verilator":
            env = verilator_env(env)
        design = os.path.join(os.path.abspath(rtl_dir), manifest["verilog"])
        run = _run_hdl if driver == "hdl" else _run_cocotb
        result, build_s, test_s, tests = run(
            sim, design, manifest, tb_dir, workdir, env, config, flat_x, expected,
            waves=waves, sim_build=sim_build, quiet=quiet, in_stall=in_stall,
            out_stall=out_stall, seed=seed)
        outputs = result.pop("outputs")
        ideal = manifest.get("ideal_cycles_per_inference",
                             max(layer["rom_words"] for layer in manifest["layers"]))
        out = {
            "simulator": sim,
            "top": manifest["top"],
            "package": package_path,
            "vectors": result["vectors"],
            "cycles": result["cycles"],
            "cycles_per_inference": manifest["cycles_per_inference"],
            "ideal_cycles_per_inference": ideal,
            "measured_cycles_per_inference": result["measured_cycles_per_inference"],
            "cycles_between_outputs": result.get("cycles_between_outputs"),
            "latency_cycles": manifest["latency_cycles"],
            "measured_latency_cycles": result.get("measured_latency_cycles"),
            "mismatches": result["mismatches"],
            "first_mismatches": result["first_mismatches"],
            "sim_cycles_per_s": result["sim_cycles_per_s"],
            "build_seconds": build_s,
            "test_seconds": test_s,
            "stalls": {"in": in_stall, "out": out_stall},
            **({"cocotb": tests} if tests else {}),
            **({"axis": result["axis"],
                "protocol_errors": result["axis"]["tlast_errors"] + result["axis"]["error"]}
               if "axis" in result else {}),
            "seed": seed,
            "driver": driver,
        }
        if labels is not None and len(outputs) == expected.size:
            rtl = np.array(outputs).reshape(expected.shape)
            rtl_class = rtl[:, 0] if argmax else rtl.argmax(axis=1)
            out["accuracy_rtl"] = float((rtl_class == labels).mean())
            out["accuracy_golden"] = float((logits.argmax(axis=1) == labels).mean())
        if report:
            with open(report, "w") as f:
                json.dump(out, f, indent=2)
                f.write("\n")
        return out
    finally:
        if own_tmp:
            shutil.rmtree(workdir, ignore_errors=True)
