"""Input feature compression: the quantizer in the golden model, the simulator and the format."""

# amaranth: UnusedElaboratable=no

import numpy as np
import pytest

from conftest import random_inputs
from flexor_hw.build import hardware_top, plan_hardware
from flexor_hw.errors import PackageError
from flexor_hw.gateware.quantizer import InputQuantizer
from flexor_hw.golden import quantize_inputs, run_float, run_int
from flexor_hw.package import load, save
from flexor_hw.simulate import rtl_network, run_stream
from flexor_hw.synthetic import random_package


def ref_quantize(thresholds, x):
    return [int(v >= t) for v, row in zip(x, thresholds) for t in row]


@pytest.mark.parametrize("signed", [False, True])
def test_quantizer_edges_in_the_simulator(signed):
    from amaranth.hdl import signed as s_, unsigned as u_
    lo, hi = (-128, 127) if signed else (0, 255)
    thresholds = [
        [lo, lo, hi + 1],            # coinciding thresholds; a bit that is always / never set
        [5, 5, 5],                   # all equal
        [hi, hi + 1, lo],            # unsorted, at the limits
        [0, 1, 2],
    ]
    x = [lo, 5, hi, 1, hi, 4, lo, 0, 3, 6, hi, 2]           # features equal to thresholds
    dut = InputQuantizer(thresholds, s_(8) if signed else u_(8))
    run = run_stream(dut, x, 3 * len(x), in_stall=0.3, out_stall=0.4, seed=2)
    expected = []
    for v in range(0, len(x), 4):
        expected += ref_quantize(thresholds, x[v:v + 4])
    assert run.outputs == expected


def test_golden_quantizer_is_the_comparison():
    pkg = random_package([7, 5, 3], quantizer_bits=3, seed=4, input_signed=True)
    x = random_inputs(pkg, 20, seed=1)
    x[0] = pkg.thresholds[:, 1]                              # exactly on a threshold
    bits = quantize_inputs(pkg, x)
    assert bits.shape == (20, 21)
    for b in range(20):
        assert bits[b].tolist() == ref_quantize(pkg.thresholds.tolist(), x[b].tolist())
    real = run_float(pkg, x * pkg.input.scale)
    assert real.shape == (20, 3)


def test_network_with_quantizer_bit_exact():
    pkg = random_package([6, 9, 4], n_in=4, n_out=8, q=[2, 1], seed=7, quantizer_bits=3,
                         input_signed=True)
    graph = plan_hardware(pkg, lanes=[2, 1], frac_bits=12)
    assert graph.stages[0].kind == "quantizer"
    x = random_inputs(pkg, 5, seed=3)
    x[1] = pkg.thresholds[:, 0]
    got, run = rtl_network(hardware_top(graph), x, 4, in_stall=0.3, out_stall=0.3, seed=1)
    assert np.array_equal(got, run_int(pkg, x, 12)[-1])
    got, run = rtl_network(hardware_top(graph), x, 4)
    assert run.out_cycles[3] - run.in_cycles[5] == graph.latency()


def test_version_2_round_trip_and_version_1_still_loads(tmp_path):
    v2 = random_package([5, 3], quantizer_bits=4, seed=1)
    save(v2, tmp_path / "v2.npz")
    back = load(tmp_path / "v2.npz")
    assert back.manifest()["version"] == 2
    assert np.array_equal(back.thresholds, v2.thresholds)
    v1 = random_package([5, 3], seed=1)
    save(v1, tmp_path / "v1.npz")
    assert load(tmp_path / "v1.npz").manifest()["version"] == 1


def test_bad_thresholds(tmp_path):
    pkg = random_package([5, 3], quantizer_bits=2, seed=1)
    pkg.thresholds = np.full((5, 2), 999)
    with pytest.raises(PackageError, match=r"^member 'input/thresholds' holds values outside "
                                           r"\[0, 256\]"):
        pkg.validate()
    pkg.thresholds = np.zeros((4, 2), np.int64)
    with pytest.raises(PackageError, match=r"^member 'input/thresholds' has shape \[4, 2\], "
                                           r"expected \[5, bits_per_feature\]$"):
        pkg.validate()


def test_shipped_tabular_example_on_rtl(tmp_path):
    import json
    import shutil
    from pathlib import Path

    from flexor_hw.build import build
    from flexor_hw.verify import verify
    if shutil.which("iverilog") is None:
        pytest.skip("Icarus Verilog is not installed")
    example = Path(__file__).resolve().parent.parent / "examples" / "tabular"
    pkg = load(example / "cancer.flexor.npz")
    x, y = np.load(example / "test_x.npy"), np.load(example / "test_y.npy")
    results = json.loads((example / "results.json").read_text())
    shipped = next(r for r in results["rows"] if r["model"] == "quantizer b=4, FleXOR 6/10")
    golden = float((run_int(pkg, x, results["frac_bits"])[-1].argmax(1) == y).mean())
    assert golden == shipped["acc_int"]
    float_inputs = next(r for r in results["rows"] if r["model"] == "FleXOR, float inputs")
    assert pkg.bits_per_feature == 4 and float_inputs["acc_float"] - golden <= 0.01
    build(example / "cancer.flexor.npz", tmp_path / "rtl", lanes="auto", argmax=True,
          quiet=True)
    report = verify(tmp_path / "rtl", inputs=x, labels=y, workdir=tmp_path / "w", quiet=True)
    assert report["mismatches"] == 0
    assert report["accuracy_rtl"] == report["accuracy_golden"] == golden
