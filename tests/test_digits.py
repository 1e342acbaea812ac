"""The shipped digits classifier: rtl_out/ is fresh, and its RTL classifies like the model."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from flexor_hw.build import build
from flexor_hw.golden import run_int
from flexor_hw.package import load
from flexor_hw.toolchain import SimulatorMissing, require_simulator
from flexor_hw.verify import verify

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "digits"
RTL = ROOT / "rtl_out" / "digits"


def test_rtl_out_is_what_the_example_builds_to(tmp_path):
    manifest = json.loads((RTL / "manifest.json").read_text())
    b = manifest["build"]
    assert b["fold_auto"] and b["target"] == "ice40-up5k"
    again = build(EXAMPLE / "digits.flexor.npz", tmp_path / "digits", target=b["target"],
                  frac_bits=b["frac_bits"], argmax=b["argmax"], quiet=True)
    assert sorted(os.listdir(RTL)) == sorted(os.listdir(tmp_path / "digits"))
    for name in os.listdir(RTL):
        if name != "manifest.json":
            assert (RTL / name).read_bytes() == (tmp_path / "digits" / name).read_bytes(), name
    manifest["package"].pop("file")
    again["package"].pop("file")
    assert manifest == again


def test_golden_accuracy_matches_the_table():
    pkg = load(EXAMPLE / "digits.flexor.npz")
    x, y = np.load(EXAMPLE / "test_x.npy"), np.load(EXAMPLE / "test_y.npy")
    results = json.loads((EXAMPLE / "results.json").read_text())
    shipped = next(r for r in results["rows"] if r["model"].endswith("6/10"))
    acc = float((run_int(pkg, x, results["frac_bits"])[-1].argmax(1) == y).mean())
    assert acc == shipped["acc_int"]
    fp32 = results["rows"][0]["acc_fp32"]
    assert pkg.layers[0].bits_per_weight <= 0.6 and fp32 - acc <= 0.02


@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_test_set_on_rtl(sim, tmp_path):
    try:
        require_simulator(sim)
    except SimulatorMissing as e:
        pytest.skip(str(e))
    x, y = np.load(EXAMPLE / "test_x.npy"), np.load(EXAMPLE / "test_y.npy")
    n = 450 if sim == "verilator" else 60       # Icarus runs this design at ~300 cycles/s
    report = verify(RTL, sim=sim, inputs=x[:n], labels=y[:n], seed=11, workdir=tmp_path,
                    quiet=True)
    assert report["mismatches"] == 0, report["first_mismatches"]
    assert report["vectors"] == n == len(y[:n])
    assert report["accuracy_rtl"] == report["accuracy_golden"] > 0.9
