"""Tops built with ``--interface axis``: the manifest, and the emitted Verilog on Icarus and
Verilator driven by cocotbext-axi (and by the HDL harness), against the golden model exactly;
TLAST in the wrong place on the input is flagged and the stream re-aligned.

Each design is built once; the Verilator build of the shared design serves every Verilator
test.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flexor_hw.build import MANIFEST, build
from flexor_hw.golden import run_int
from flexor_hw.package import load, save
from flexor_hw.synthetic import random_graph, random_package
from flexor_hw.toolchain import SimulatorMissing, require_simulator, verilator_env
from flexor_hw.verify import AXIS_TB_MODULE, verify

needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None,
                                  reason="Icarus Verilog is not installed")
FRAC = 14


def _mlp():
    # 5-bit signed inputs in 8-bit TDATA, 11-bit signed outputs in 16-bit TDATA
    return random_package([23, 17, 5], n_in=[4, 6], n_out=[10, 11], q=[2, 1], n_tap=[2, None],
                          seed=11, name="axis-mlp", input_bits=5, input_signed=True,
                          output_bits=11, negative_alpha=0.3)


def _quantized_argmax():
    return random_package([6, 9, 4], n_in=[4, 5], n_out=[8, 9], q=[1, 2], n_tap=[2, 2],
                          seed=12, name="axis-quant", input_signed=True, quantizer_bits=3)


def _conv():
    return random_graph((2, 5, 5), "c3k3p1,mp2,fc4", n_in=4, n_out=9, seed=13,
                        name="axis-conv", calibration=8)


DESIGNS = {"mlp": (_mlp, dict(lanes=[2, 1])),
           "quant-argmax": (_quantized_argmax, dict(lanes=[2, 1], argmax=True)),
           "conv": (_conv, dict(lanes=1))}


@pytest.fixture(scope="module")
def designs(tmp_path_factory):
    root = tmp_path_factory.mktemp("axis")
    built = {}
    for name, (make, options) in DESIGNS.items():
        path = root / f"{name}.flexor.npz"
        save(make(), path)
        rtl = root / "rtl" / name
        manifest = build(path, rtl, frac_bits=FRAC, interface="axis", quiet=True, **options)
        built[name] = (path, rtl, manifest)
    return root, built


def test_manifest_ports_and_axis_section(designs):
    _, built = designs
    _, rtl, manifest = built["mlp"]
    assert json.loads((rtl / MANIFEST).read_text()) == manifest
    assert manifest["interface"] == "axis"
    ports = {p["name"]: p for p in manifest["ports"]}
    assert list(ports) == ["aclk", "aresetn", "s_axis_tdata", "s_axis_tvalid", "s_axis_tready",
                           "s_axis_tlast", "m_axis_tdata", "m_axis_tvalid", "m_axis_tready",
                           "m_axis_tlast", "error"]
    assert (ports["s_axis_tdata"]["width"], ports["m_axis_tdata"]["width"]) == (8, 16)
    assert ports["s_axis_tdata"]["signed"] and ports["m_axis_tdata"]["signed"]
    assert "sign-extended to 16 bits" in ports["m_axis_tdata"]["meaning"]
    assert "active low" in ports["aresetn"]["meaning"]
    axis = manifest["axis"]
    assert axis["s_axis"] == {"tdata_width": 8, "payload_width": 5, "signed": True,
                              "beats_per_image": 23,
                              "tlast": "high on the last beat (23 of 23) of each image and "
                                       "only there"}
    assert axis["m_axis"]["beats_per_result"] == 5 and axis["m_axis"]["payload_width"] == 11
    assert "until aresetn" in axis["error"] and "zero beats" in axis["misplaced_tlast"]
    # The emitted module has exactly these ports.
    v = (rtl / manifest["verilog"]).read_text()
    header = re.search(rf"module {manifest['top']}\(([^)]*)\);", v).group(1)
    assert sorted(p.strip() for p in header.split(",")) == sorted(ports)
    # A class index is zero-extended.
    q = {p["name"]: p for p in built["quant-argmax"][2]["ports"]}
    assert q["m_axis_tdata"]["width"] == 8 and q["m_axis_tdata"]["signed"] is False
    assert built["quant-argmax"][2]["axis"]["m_axis"]["beats_per_result"] == 1
    assert built["conv"][2]["axis"]["s_axis"]["beats_per_image"] == 50


def test_axis_build_is_byte_identical_and_native_unchanged(designs, tmp_path):
    root, built = designs
    path, rtl, manifest = built["mlp"]
    again = build(path, tmp_path / "again", frac_bits=FRAC, interface="axis", lanes=[2, 1],
                  quiet=True)
    for name in os.listdir(rtl):
        if name != MANIFEST:
            assert (rtl / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    # the manifest names the package relative to its directory
    assert dict(again, package=None) == dict(manifest, package=None)
    native = build(path, tmp_path / "native", frac_bits=FRAC, lanes=[2, 1], quiet=True)
    assert "interface" not in native and "axis" not in native
    assert {p["name"] for p in native["ports"]} >= {"clk", "rst", "i__payload", "o__payload"}
    assert native["cycles_per_inference"] == manifest["cycles_per_inference"]


@needs_icarus
@pytest.mark.parametrize("name, driver", [("mlp", "cocotb"), ("mlp", "hdl"),
                                          ("quant-argmax", "cocotb"), ("conv", "hdl")])
def test_icarus_zero_mismatches(designs, name, driver, tmp_path):
    _, built = designs
    report = verify(built[name][1], sim="icarus", vectors=10, seed=4, in_stall=0.3,
                    out_stall=0.4, workdir=tmp_path, quiet=True, driver=driver)
    assert report["mismatches"] == 0, report["first_mismatches"]
    assert report["axis"] == {"tlast_errors": 0, "error": 0}
    assert report["protocol_errors"] == 0 and report["vectors"] == 10


@needs_icarus
def test_icarus_unstalled_rate_and_latency(designs, tmp_path):
    """With no pauses both drivers measure the manifest's cycles per inference through the
    AXI4-Stream ports, and agree on the latency."""
    _, built = designs
    _, rtl, manifest = built["mlp"]
    reports = [verify(rtl, vectors=5, in_stall=0, out_stall=0, workdir=tmp_path / d,
                      quiet=True, driver=d) for d in ("cocotb", "hdl")]
    for report in reports:
        assert report["mismatches"] == 0 and report["protocol_errors"] == 0
        assert report["measured_cycles_per_inference"] == manifest["cycles_per_inference"]
        assert 0 < report["measured_latency_cycles"] <= manifest["latency_cycles"]
    assert reports[0]["measured_latency_cycles"] == reports[1]["measured_latency_cycles"]


def _misplaced_case(package_path, manifest):
    """Packets with TLAST early and late between well-formed ones, and the result each must
    give: the image zero-padded (early) or cut to its beats (late)."""
    pkg = load(package_path)
    n = manifest["axis"]["s_axis"]["beats_per_image"]
    x = np.random.default_rng(3).integers(pkg.input.lo, pkg.input.hi + 1, (6, n))
    packets = [x[0].tolist(), x[1][:5].tolist(), x[2].tolist(),
               x[3].tolist() + [1, -2, 3], x[4][:1].tolist(), x[5].tolist() + [7]]
    images = x.copy()
    images[1][5:] = 0
    images[4][1:] = 0
    return {"packets": packets, "first_bad": 1,
            "packet_results": run_int(pkg, images, FRAC)[-1].tolist()}


def _run_cocotb_case(sim, rtl, manifest, build_dir, work, case, testcase):
    """One testcase of ``flexor_hw.sim.axis_tb`` on the emitted top (the same simulator build
    as ``verify`` makes, reused)."""
    from cocotb_tools.runner import get_results, get_runner
    work.mkdir(parents=True, exist_ok=True)
    for name in manifest["rom_files"]:
        shutil.copyfile(rtl / name, work / name)
    axis = manifest["axis"]
    cfg = dict(case, input_width=axis["s_axis"]["tdata_width"],
               output_width=axis["m_axis"]["tdata_width"],
               output_signed=axis["m_axis"]["signed"], in_stall=0.3, out_stall=0.3, seed=2,
               timeout_cycles=20000)
    (work / "config.json").write_text(json.dumps(cfg))
    env = dict(os.environ, FLEXOR_TB_CONFIG=str(work / "config.json"))
    if sim == "verilator":
        env = verilator_env(env)
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        runner = get_runner(sim)
        runner.build(sources=[rtl / manifest["verilog"]], hdl_toplevel=manifest["top"],
                     build_dir=build_dir, always=False, timescale=("1ns", "1ps"),
                     build_args=["-Wno-fatal", "-Wno-WIDTH"] if sim == "verilator" else [],
                     log_file=work / "build.log")
        try:
            runner.test(test_module=AXIS_TB_MODULE, testcase=testcase,
                        hdl_toplevel=manifest["top"], build_dir=build_dir, test_dir=work,
                        results_xml=str(work / "results.xml"), log_file=work / "sim.log")
        except SystemExit:
            pass
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return get_results(Path(work / "results.xml"))


@needs_icarus
def test_icarus_misplaced_tlast(designs, tmp_path):
    _, built = designs
    path, rtl, manifest = built["mlp"]
    results = _run_cocotb_case("icarus", rtl, manifest, tmp_path / "build", tmp_path / "tb",
                               _misplaced_case(path, manifest), "axis_misplaced_tlast")
    assert results == (1, 0), (tmp_path / "tb" / "sim.log").read_text()[-3000:]


@pytest.fixture(scope="module")
def verilator_build(tmp_path_factory):
    try:
        require_simulator("verilator")
    except SimulatorMissing as e:
        pytest.skip(str(e))
    return tmp_path_factory.mktemp("axis-verilator-build")


@pytest.mark.parametrize("seed, stalls", [(1, (0.3, 0.5)), (2, (0.0, 0.0))])
def test_verilator_zero_mismatches(designs, verilator_build, tmp_path, seed, stalls):
    _, built = designs
    _, rtl, manifest = built["mlp"]
    report = verify(rtl, sim="verilator", vectors=30, seed=seed, in_stall=stalls[0],
                    out_stall=stalls[1], workdir=tmp_path, sim_build=str(verilator_build),
                    quiet=True, driver="cocotb")
    assert report["mismatches"] == 0, report["first_mismatches"]
    assert report["protocol_errors"] == 0 and report["simulator"] == "verilator"
    if stalls == (0.0, 0.0):
        assert report["measured_cycles_per_inference"] == manifest["cycles_per_inference"]


def test_verilator_misplaced_tlast(designs, verilator_build, tmp_path):
    _, built = designs
    path, rtl, manifest = built["mlp"]
    results = _run_cocotb_case("verilator", rtl, manifest, verilator_build, tmp_path / "tb",
                               _misplaced_case(path, manifest), "axis_misplaced_tlast")
    assert results == (1, 0), (tmp_path / "tb" / "sim.log").read_text()[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DESIGNS))
def test_verilator_hdl_harness(designs, tmp_path, name):
    _, built = designs
    try:
        require_simulator("verilator")
    except SimulatorMissing as e:
        pytest.skip(str(e))
    report = verify(built[name][1], sim="verilator", vectors=40, seed=6, workdir=tmp_path,
                    quiet=True, driver="hdl")
    assert report["mismatches"] == 0 and report["protocol_errors"] == 0


def cli(*args):
    return subprocess.run([sys.executable, "-m", "flexor_hw.cli", *map(str, args)],
                          capture_output=True, text=True)


def test_cli_bad_interface(designs, tmp_path):
    root, built = designs
    r = cli("build", built["mlp"][0], "-o", tmp_path / "rtl", "--interface", "foo")
    assert r.returncode == 2 and not (tmp_path / "rtl").exists()
    assert r.stderr == "flexor-hw: error: interface must be native or axis, not 'foo'\n"


@needs_icarus
def test_cli_build_and_verify(designs, tmp_path):
    root, built = designs
    r = cli("build", built["quant-argmax"][0], "-o", tmp_path / "rtl", "--interface", "axis",
            "--lanes", "2,1", "--argmax")
    assert r.returncode == 0, r.stderr
    assert ("AXI4-Stream: s_axis 8 bits × 6 beats per image, m_axis 8 bits × 1 beats per "
            "result") in r.stdout
    r = cli("verify", tmp_path / "rtl", "--vectors", "6")
    assert r.returncode == 0, r.stderr
    assert "AXI4-Stream: 0 misplaced m_axis_tlast, error flag 0" in r.stdout
    assert "PASS: 0 mismatches" in r.stdout


@needs_icarus
def test_verify_catches_a_misplaced_output_tlast(designs, tmp_path):
    """The framing is checked, not only the values: a top whose m_axis_tlast is stuck high
    fails verify (exit 1) though every value matches."""
    root, built = designs
    path, rtl, manifest = built["mlp"]
    bad = tmp_path / "bad"
    shutil.copytree(rtl, bad)
    m = json.loads((bad / MANIFEST).read_text())
    m["package"]["file"] = os.path.relpath(path, bad)
    (bad / MANIFEST).write_text(json.dumps(m))
    v = (bad / manifest["verilog"]).read_text()
    v, n = re.subn(r"assign m_axis_tlast = pos_out == [^;]+;", "assign m_axis_tlast = 1'b1;", v)
    assert n == 1
    (bad / manifest["verilog"]).write_text(v)
    r = cli("verify", bad, "--vectors", "4")
    assert r.returncode == 1
    assert "AXI4-Stream: 16 misplaced m_axis_tlast" in r.stdout and "FAIL" in r.stdout
    report = verify(bad, vectors=4, workdir=tmp_path / "w", quiet=True, driver="cocotb")
    assert report["mismatches"] == 0 and report["axis"]["tlast_errors"] == 16
