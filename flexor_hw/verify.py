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


def verify(target, *, sim="icarus", vectors=32, seed=0, inputs=None, labels=None, waves=None,
           report=None, lanes=1, frac_bits=16, argmax=False, in_stall=0.3, out_stall=0.3,
           workdir=None, sim_build=None, quiet=False):
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

    Returns
    -------
    dict
        The report (also written to ``report`` as JSON when given).
    """
    from cocotb_tools.runner import get_results, get_runner

    require_simulator(sim)
    own_tmp = workdir is None
    workdir = tempfile.mkdtemp(prefix="flexor-verify-") if own_tmp else str(workdir)
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
        out_signed = bool(ports["o__payload"]["signed"])
        tb_dir = os.path.join(workdir, f"tb_{sim}")
        os.makedirs(tb_dir, exist_ok=True)
        for name in manifest["rom_files"]:          # $readmemh reads from the sim's cwd
            shutil.copyfile(os.path.join(rtl_dir, name), os.path.join(tb_dir, name))
        np.save(os.path.join(tb_dir, "inputs.npy"), flat_x)
        np.save(os.path.join(tb_dir, "expected.npy"), expected)
        cycles_bound = manifest["cycles_per_inference"] + manifest["latency_cycles"]
        stall_factor = 1.0 / max(0.05, (1 - in_stall) * (1 - out_stall))
        config = {
            "inputs": os.path.join(tb_dir, "inputs.npy"),
            "expected": os.path.join(tb_dir, "expected.npy"),
            "result": os.path.join(tb_dir, "result.json"),
            "input_width": ports["i__payload"]["width"],
            "output_signed": out_signed,
            "in_stall": in_stall, "out_stall": out_stall, "seed": seed,
            "layer": package.output_node.name + (" (argmax)" if argmax else ""),
            "timeout_cycles": int(4 * stall_factor * (x.shape[0] + 2) * cycles_bound) + 1000,
        }
        with open(os.path.join(tb_dir, "config.json"), "w") as f:
            json.dump(config, f)

        env = dict(os.environ)
        build_args = []
        if sim == "verilator":
            env = verilator_env(env)
            build_args = ["-Wno-fatal", "-Wno-WIDTH"]
        env["FLEXOR_TB_CONFIG"] = os.path.join(tb_dir, "config.json")
        build_dir = sim_build or os.path.join(workdir, f"sim_build_{sim}")
        log_path = os.path.join(tb_dir, "sim.log")
        with _environ(env):
            runner = get_runner(sim)
            t0 = time.perf_counter()
            _progress(f"[verify] building {manifest['top']} for {sim}", quiet)
            build_log = os.path.join(tb_dir, "build.log")
            try:
                runner.build(sources=[os.path.join(os.path.abspath(rtl_dir),
                                                   manifest["verilog"])],
                             hdl_toplevel=manifest["top"], build_dir=build_dir, always=False,
                             timescale=("1ns", "1ps"), build_args=build_args,
                             waves=bool(waves), log_file=build_log)
            except (SystemExit, subprocess.CalledProcessError) as e:
                raise VerifyError(f"the {sim} build of {manifest['top']} failed ({e}); "
                                  f"see {build_log}") from None
            build_s = time.perf_counter() - t0
            _progress(f"[verify] simulating {x.shape[0]} vectors on {sim} "
                      f"(stalls: in {in_stall:.0%}, out {out_stall:.0%})", quiet)
            t1 = time.perf_counter()
            results_xml = os.path.join(tb_dir, "results.xml")
            try:
                runner.test(test_module=TB_MODULE, hdl_toplevel=manifest["top"],
                            build_dir=build_dir, test_dir=tb_dir, waves=bool(waves),
                            log_file=log_path, results_xml=results_xml)
            except SystemExit:
                pass    # a failing cocotb test; its result file tells what happened
            test_s = time.perf_counter() - t1
        n_tests, n_failed = (get_results(Path(results_xml)) if os.path.isfile(results_xml)
                             else (0, 1))
        result_path = config["result"]
        if not os.path.isfile(result_path):
            raise VerifyError(f"the simulation ended without a result (see {log_path})")
        with open(result_path) as f:
            result = json.load(f)
        outputs = result.pop("outputs")
        if waves:
            produced = os.path.join(build_dir, "dump.vcd") if sim == "verilator" else \
                os.path.join(build_dir, f"{manifest['top']}.fst")
            if not os.path.isfile(produced):
                produced = os.path.join(tb_dir, os.path.basename(produced))
            if os.path.isfile(produced):
                shutil.copyfile(produced, waves)
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
            "mismatches": result["mismatches"],
            "first_mismatches": result["first_mismatches"],
            "sim_cycles_per_s": result["sim_cycles_per_s"],
            "build_seconds": build_s,
            "test_seconds": test_s,
            "stalls": {"in": in_stall, "out": out_stall},
            "seed": seed,
            "cocotb": {"tests": n_tests, "failed": n_failed},
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
