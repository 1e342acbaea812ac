import subprocess
import sys

import numpy as np
import pytest

from conftest import random_inputs
from flexor_hw.cli import main
from flexor_hw.golden import run_float, run_int
from flexor_hw.package import load, save


@pytest.fixture
def pkg_path(tmp_path, small_package):
    path = tmp_path / "small.flexor.npz"
    save(small_package, path)
    return path


def test_random_package_then_inspect(tmp_path, capsys):
    out = tmp_path / "r.flexor.npz"
    assert main(["random-package", "-o", str(out), "--layers", "64,37,13", "--n-in", "7",
                 "--n-out", "11", "--q", "2", "--n-tap", "2", "--seed", "4"]) == 0
    pkg = load(out)
    assert [layer.weight_shape for layer in pkg.layers] == [(37, 64), (13, 37)]
    assert all(layer.q == 2 and layer.n_in == 7 and layer.n_out == 11 for layer in pkg.layers)
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in text.splitlines()[3:-1]}
    assert rows["fc1"][:6] == ["fc1", "linear", "input", "37", "q=2,7/11,tap=2", "1.273"]
    assert rows["fc1"][7] == str(2 * 7 * -(-37 * 64 // 11))
    assert rows["fc2"][2] == "fc1" and rows["fc2"][8] == str(13 * 37)
    assert rows["total"][1:] == ["1.278", "2849", "3640", "2849"]
    assert f"{32 * (37 * 64 + 13 * 37) / (3024 + 616):.1f}× smaller than FP32" in text


def test_random_package_is_deterministic(tmp_path):
    args = ["random-package", "--layers", "20,7", "--seed", "9"]
    main(args + ["-o", str(tmp_path / "a.npz")])
    main(args + ["-o", str(tmp_path / "b.npz")])
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_run_integer_and_float(tmp_path, pkg_path, small_package):
    x = random_inputs(small_package, 9)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(pkg_path), str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y.npy"), "--frac-bits", "10"]) == 0
    assert (np.load(tmp_path / "y.npy") == run_int(small_package, x, 10)[-1]).all()
    xr = x * small_package.input.scale
    np.save(tmp_path / "xr.npy", xr)
    assert main(["run", str(pkg_path), str(tmp_path / "xr.npy"), "--float", "-o",
                 str(tmp_path / "yr.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "yr.npy"), run_float(small_package, xr))


def cli(*args):
    return subprocess.run([sys.executable, "-m", "flexor_hw.cli", *map(str, args)],
                          capture_output=True, text=True)


@pytest.mark.parametrize("make_input, msg", [
    (lambda: np.zeros((3, 36), np.int64), "input has shape [3, 36], expected [batch, 37]"),
    (lambda: np.full((3, 37), 300), "input values span [300, 300], outside the declared range"),
    (lambda: np.zeros((3, 37)), "input has dtype float64, expected integers"),
])
def test_cli_bad_input_is_one_line(tmp_path, pkg_path, make_input, msg):
    np.save(tmp_path / "x.npy", make_input())
    r = cli("run", pkg_path, tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert r.returncode == 2
    assert r.stderr.startswith("flexor-hw: error: " + msg)
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_cli_pickled_input_is_refused(tmp_path, pkg_path):
    np.save(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    r = cli("run", pkg_path, tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert r.returncode == 2 and "cannot read input" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("content", [b"", b"garbage", b"PK\x03\x04broken"])
def test_cli_broken_package_is_one_line(tmp_path, content):
    (tmp_path / "p.npz").write_bytes(content)
    r = cli("inspect", tmp_path / "p.npz")
    assert r.returncode == 2
    assert r.stderr.startswith("flexor-hw: error: ") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_missing_package(tmp_path):
    r = cli("inspect", tmp_path / "none.flexor.npz")
    assert r.returncode == 2 and "cannot read package" in r.stderr


def test_cli_bad_frac_bits(tmp_path, pkg_path, small_package):
    np.save(tmp_path / "x.npy", random_inputs(small_package, 2))
    r = cli("run", pkg_path, tmp_path / "x.npy", "-o", tmp_path / "y.npy", "--frac-bits", "99")
    assert r.returncode == 2
    assert r.stderr.strip() == "flexor-hw: error: frac_bits must be an integer from 0 to 32, not 99"


def test_cli_bad_layers_argument():
    r = cli("random-package", "-o", "/tmp/x.npz", "--layers", "64,a")
    assert r.returncode == 2 and "expected comma-separated integers" in r.stderr


def test_graph_package_inspect_and_run(tmp_path, capsys):
    out = tmp_path / "g.flexor.npz"
    assert main(["random-package", "-o", str(out), "--graph", "ic4k3p1,mp2,res8s2,gap,fc5",
                 "--input-shape", "2,9,8", "--q", "2", "--seed", "3"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "format version 3" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines()[3:-2]}
    assert rows["conv1"][1:6] == ["conv2d", "input", "4×9×8", "int8", "8.000"]
    assert rows["conv1"][8] == str(4 * 2 * 9 * 3 * 3 * 8)            # MACs: out·fan-in·OH·OW
    assert rows["add5"][1:4] == ["add", "conv4,pool2", "8×2×2"]
    pkg = load(out)
    x = np.random.default_rng(0).integers(0, 256, (3, 2, 9, 8))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "flat.npy", x.reshape(3, -1))
    for name in ("x", "flat"):
        assert main(["run", str(out), str(tmp_path / f"{name}.npy"), "-o",
                     str(tmp_path / f"y_{name}.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "y_x.npy"), run_int(pkg, x)[-1])
    assert np.array_equal(np.load(tmp_path / "y_flat.npy"), run_int(pkg, x)[-1])
    np.save(tmp_path / "xf.npy", x * pkg.input.scale)
    assert main(["run", str(out), str(tmp_path / "xf.npy"), "-o", str(tmp_path / "yf.npy"),
                 "--float"]) == 0
    assert np.array_equal(np.load(tmp_path / "yf.npy"), run_float(pkg, x * pkg.input.scale))


def test_graph_bad_input_is_one_line(tmp_path):
    out = tmp_path / "g.flexor.npz"
    r = cli("random-package", "-o", out, "--graph", "c3k9", "--input-shape", "1,4,4")
    assert r.returncode == 2 and not out.exists()
    assert r.stderr == ("flexor-hw: error: manifest: node 'conv1': kernel [9, 9] with padding "
                        "[0, 0] does not fit its 4×4 input\n")
    r = cli("random-package", "-o", out, "--graph", "c3q9", "--input-shape", "1,4,4")
    assert r.returncode == 2 and r.stderr.startswith("flexor-hw: error: layer spec 'c3q9' is "
                                                     "not understood; expected")
    assert main(["random-package", "-o", str(out), "--graph", "c3k3,fc2",
                 "--input-shape", "1,5,5"]) == 0
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 4, 5), np.int64))
    r = cli("run", out, tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert r.returncode == 2 and not (tmp_path / "y.npy").exists()
    assert r.stderr == ("flexor-hw: error: input has shape [2, 1, 4, 5], expected [batch, 1, 5, "
                        "5] or [batch, 25]\n")
    r = cli("build", out, "-o", tmp_path / "rtl", "--lanes", "999")
    assert r.returncode == 2 and not (tmp_path / "rtl").exists()
    assert r.stderr == ("flexor-hw: error: lanes must be from 1 to 3 for node 'conv1' (its "
                        "slices per bit-plane), not 999\n")


@pytest.mark.parametrize("vectors", ["0", "-3"])
def test_verify_rejects_a_vector_count_below_one(tmp_path, vectors):
    r = cli("verify", "examples/digits/digits.flexor.npz", "--vectors", vectors)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[-1] == (f"flexor-hw verify: error: argument --vectors: expected "
                                         f"a positive integer, not {vectors}")


def test_build_says_which_stages_take_their_products_into_logic(tmp_path, pkg_path, capsys):
    # --budget dsps=0: every unit's line says its products are in logic, and the total has
    # no DSP; with the device's DSPs, none does.
    assert main(["build", str(pkg_path), "-o", str(tmp_path / "a"), "--target", "ecp5-25k",
                 "--budget", "dsps=0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    units = [line for line in lines if line.strip().startswith("mvau")]
    assert units and all("products in logic" in line for line in units)
    assert [line for line in lines if "estimate:" in line][0].endswith(" 0 DSP")
    assert main(["build", str(pkg_path), "-o", str(tmp_path / "b"), "--target", "ecp5-25k"]) == 0
    assert "products in logic" not in capsys.readouterr().out
