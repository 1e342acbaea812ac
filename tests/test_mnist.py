"""The shipped MNIST LeNet-5 (examples/mnist): the package is the paper's network at under
0.5 bits/weight, and its integer golden model reaches the accuracy of the results table."""

import json
from pathlib import Path

import numpy as np

from flexor_hw.golden import run_float, run_int
from flexor_hw.package import load

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "mnist"


def test_shipped_lenet5_is_the_papers_network():
    pkg = load(EXAMPLE / "lenet5.flexor.npz")
    assert pkg.version == 3 and pkg.input_shape == (1, 28, 28)
    assert [(n.name, n.op) for n in pkg.order()] == [
        ("conv1", "conv2d"), ("pool1", "maxpool2d"), ("conv2", "conv2d"),
        ("pool2", "maxpool2d"), ("fc1", "linear"), ("fc2", "linear")]
    shapes = pkg.shapes()
    assert shapes["conv1"] == (32, 28, 28) and shapes["conv2"] == (64, 14, 14)
    assert shapes["pool2"] == (64, 7, 7) and shapes["fc1"] == (512,)
    weighted = pkg.weighted_nodes()
    assert all(n.is_flexor and n.n_tap == 2 for n in weighted)       # every layer FleXOR
    bits = sum(n.stored_bits for n in weighted) / sum(n.numel for n in weighted)
    assert bits <= 0.5


def test_golden_accuracy_matches_the_table():
    pkg = load(EXAMPLE / "lenet5.flexor.npz")
    x, y = np.load(EXAMPLE / "test_x.npy"), np.load(EXAMPLE / "test_y.npy")
    assert x.shape == (1000, 1, 28, 28) and x.dtype == np.uint8
    results = json.loads((EXAMPLE / "results.json").read_text())
    shipped = next(r for r in results["rows"] if r["model"] == results["shipped"])
    # the most accurate integer golden model at no more than 0.45 bits per weight
    assert shipped["acc_int"] == max(r["acc_int"] for r in results["rows"]
                                     if r["acc_int"] is not None and r["bits_per_weight"] <= 0.45)
    fp32 = next(r for r in results["rows"] if r["model"] == "FP32")
    logits = run_int(pkg, x, results["frac_bits"])[-1]
    acc = float((logits.argmax(1) == y).mean())
    assert acc == shipped["acc_int"]
    assert acc >= 0.97 and fp32["acc_float"] - acc <= 0.015
    # the float reference of the package agrees with the trained model's accuracy
    real = float((run_float(pkg, x * pkg.input.scale).argmax(1) == y).mean())
    assert abs(real - shipped["acc_float"]) <= 0.002
