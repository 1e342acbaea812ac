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
    rows = {line.split()[0]: line.split() for line in text.splitlines()[3:]}
    assert rows["fc1"][1] == "37×64" and rows["fc1"][6] == "1.273"
    assert rows["fc1"][8] == str(2 * 7 * -(-37 * 64 // 11))
    assert rows["total"][-2] == f"{32 * (37 * 64 + 13 * 37) / (3024 + 616):.1f}×"


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
