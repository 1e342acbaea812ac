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
from .golden import check_input, run_int
from .package import load, sha256_file
from .toolchain import require_simulator, verilator_env

__all__ = ["verify", "resolve_target", "VerifyError"]

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


def resolve_target(target, workdir, *, lanes=1, frac_bits=16, argmax=False, quiet=False):
    """Return ``(rtl_dir, manifest, package_path)`` for a package or a built directory."""
    target = str(target)
    if os.path.isdir(target):
        path = os.path.join(target, MANIFEST)
        if not os.path.isfile(path):
            raise VerifyError(f"{target!r} has no {MANIFEST}: build it with "
                              f"'flexor-hw build PKG -o {target}'")
        try:
            with open(path) as f:
                manifest = json.load(f)
            pkg_rel, pkg_sha = manifest["package"]["file"], manifest["package"]["sha256"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise VerifyError(f"{path!r} is not a flexor-hw build manifest: {e}") from None
        package_path = os.path.normpath(os.path.join(target, pkg_rel))
        if not os.path.isfile(package_path):
            raise VerifyError(f"the package named by {path!r} is missing: {package_path!r}")
        actual = sha256_file(package_path)
        if actual != pkg_sha:
            raise VerifyError(f"the package {package_path!r} has sha256 {actual[:16]}…, but the "
                              f"build was made from {pkg_sha[:16]}…: rebuild the design")
        for name in [manifest["verilog"]] + manifest["rom_files"]:
            if not os.path.isfile(os.path.join(target, name)):
                raise VerifyError(f"{target!r} lacks {name!r}, which its manifest lists")
        return target, manifest, package_path
    if not os.path.isfile(target):
        raise VerifyError(f"{target!r} is neither a package file nor a built directory")
    rtl_dir = os.path.join(workdir, "rtl")
    manifest = build(target, rtl_dir, lanes=lanes, frac_bits=frac_bits, argmax=argmax,
                     quiet=quiet)
    return rtl_dir, manifest, target


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
            raise VerifyError(f"the {sim} build of {manifest['top']} failed ({e}); "
                              f"see {build_log}") from None
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
        raise VerifyError(f"the simulation ended without a result (see {log_path})")
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
        "measured_latency_cycles": int(ends[0]) - summary["last_in_cycle"] if ends else None,
        "outputs": got,
    }
    if config["axis"]:
        result["axis"] = {"tlast_errors": summary["tlast_errors"], "error": summary["error"]}
    return result, build_s, test_s, None


def verify(target, *, sim="icarus", vectors=32, seed=0, inputs=None, labels=None, waves=None,
           report=None, lanes=1, frac_bits=16, argmax=False, in_stall=0.3, out_stall=0.3,
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
    if driver not in ("hdl", "cocotb"):
        raise VerifyError(f"driver must be hdl or cocotb, not {driver!r}")
    require_simulator(sim)
    own_tmp = workdir is None
    workdir = (tempfile.mkdtemp(prefix="flexor-verify-") if own_tmp
               else os.path.abspath(str(workdir)))
    try:
        rtl_dir, manifest, package_path = resolve_target(
            target, workdir, lanes=lanes, frac_bits=frac_bits, argmax=argmax, quiet=quiet)
        package = load(package_path)
        frac = manifest["build"]["frac_bits"]
        if inputs is None:
            x = _random_inputs(package, vectors, seed)
        else:
            x = np.asarray(inputs)
            check_input(package, x)
            x = x.astype(np.int64)
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
            if labels.shape[0] != x.shape[0]:
                raise InputError(f"labels has {labels.shape[0]} entries, but there are "
                                 f"{x.shape[0]} input vectors")
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
