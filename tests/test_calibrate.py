"""Calibration: hidden nodes at a percentile of |output|, the output at its largest |output|
with headroom, so the integer model never clamps a logit of the data it was calibrated on;
the rules are recorded in the package."""

import numpy as np
import pytest

from flexor_hw.calibrate import DEFAULT_HEADROOM, calibrate_scales, output_format_node
from flexor_hw.errors import PackageError
from flexor_hw.golden import run_float, run_graph_float, run_int
from flexor_hw.package import load, save
from flexor_hw.synthetic import random_graph, random_package


def calibration_data(package, n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(package.input.lo, package.input.hi + 1,
                     size=(n, *package.input_shape)) * package.input.scale
    x[:3] = package.input.hi * package.input.scale          # a few large outliers
    return x


@pytest.mark.parametrize("make", [
    lambda: random_package([16, 12, 10], seed=4, output_bits=8),
    lambda: random_graph((2, 6, 6), "c4k3,mp2,fc10", seed=5, calibration=8),
])
def test_output_never_clamped_on_its_calibration_data(make):
    package = make()
    x = calibration_data(package)
    calibrate_scales(package, x)
    out = output_format_node(package)
    y_float = run_graph_float(package, x)[out.name]
    assert out.output.scale * out.output.hi == pytest.approx(
        np.abs(y_float).max() * DEFAULT_HEADROOM)
    y_int = run_int(package, np.rint(x / package.input.scale).astype(np.int64))[-1]
    assert y_int.min() > out.output.lo and y_int.max() < out.output.hi
    for node in package.order():       # hidden nodes: the percentile rule, as before
        if node is not out and node.op != "maxpool2d":
            top = np.percentile(np.abs(run_graph_float(package, x)[node.name]), 99.9)
            assert node.output.scale * node.output.hi == pytest.approx(top)
    assert package.calibration == {"hidden": {"rule": "percentile", "percentile": 99.9},
                                   "output": {"rule": "max", "headroom": 2.0}}


def test_argmax_follows_the_float_model_beyond_one_step():
    # One layer: the integer model's only error is the output rounding (within one step, the
    # float bound of the README), so wherever float's top two logits differ by more than two
    # steps the classes agree; before, the largest logits were clamped and could tie.
    package = random_package([32, 10], seed=7, output_bits=8)
    x = calibration_data(package, n=2000, seed=1)
    calibrate_scales(package, x)
    step = package.output.scale
    f = run_float(package, x)
    g = run_int(package, np.rint(x / package.input.scale).astype(np.int64))[-1]
    top2 = np.sort(f, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * step
    assert clear.sum() > 1000
    assert (g.argmax(axis=1)[clear] == f.argmax(axis=1)[clear]).all()


def test_calibration_is_recorded_and_checked(tmp_path):
    package = random_package([8, 5, 3], seed=1)
    save(package, tmp_path / "p.npz")
    assert load(tmp_path / "p.npz").calibration == package.calibration
    assert package.manifest()["calibration"]["output"] == {"rule": "max", "headroom": 2.0}
    package.calibration = {"hidden": {"rule": "percentile", "percentile": 120},
                           "output": {"rule": "max", "headroom": 2.0}}
    with pytest.raises(PackageError, match=r"^manifest: calibration\.hidden must be "):
        package.validate()
    package.calibration = None                      # packages from before: no record
    assert "calibration" not in package.manifest()
    save(package, tmp_path / "q.npz")
    assert load(tmp_path / "q.npz").calibration is None
