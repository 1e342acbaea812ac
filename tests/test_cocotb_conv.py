"""Conv networks (v3 graphs) as emitted Verilog in cocotb on Icarus: zero mismatches against the
golden model with random backpressure, images streamed in (y, x, c) order; a flipped ROM bit
is caught."""

import json
import shutil

import numpy as np
import pytest

from flexor_hw.build import build
from flexor_hw.package import save
from flexor_hw.synthetic import random_graph
from flexor_hw.verify import verify

needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None,
                                  reason="Icarus Verilog is not installed")


@pytest.fixture(scope="module")
def lenet_mini(tmp_path_factory):
    root = tmp_path_factory.mktemp("conv")
    pkg = random_graph((1, 10, 9), "c4k3p1,mp2,c6k3s2p1,fc10", q=2, n_in=4, n_out=7, seed=3,
                       calibration=16)
    save(pkg, root / "mini.flexor.npz")
    manifest = build(root / "mini.flexor.npz", root / "rtl", lanes=2, frac_bits=14,
                     argmax=False, quiet=True)
    return root, pkg, manifest


def test_manifest_of_a_conv_build(lenet_mini):
    _, pkg, manifest = lenet_mini
    assert manifest["input"] == {"beats_per_vector": 90, "quantizer_bits_per_feature": None,
                                 "order": "y,x,c"}
    # conv3 takes the window's single elements into its 14 lanes itself (its vector in LUT
    # RAM, a write enable a lane); conv1 would load a pixel's nine elements in ten cycles,
    # slower than its rate, so a converter stays in front of it
    assert [n["kind"] for n in manifest["nodes"]] == [
        "window", "repack", "mvau", "maxpool", "window", "mvau", "mvau"]
    assert [n["in_simd"] for n in manifest["nodes"] if n["kind"] == "mvau"] == [9, 1, 1]
    assert [n["name"] for n in manifest["layers"]] == ["conv1", "conv3", "fc4"]
    window, conv1 = manifest["nodes"][0], manifest["layers"][0]
    # --lanes 2: SIMD min(2·7, 9) = 9, so a pixel's window is one beat; the window unit
    # emits one element per cycle (and a cycle between images): it bounds the network
    assert window["cycles_per_inference"] == 10 * 9 * 9 + 1
    assert conv1["simd"] == 9 and conv1["cycles_per_inference"] == 90 * 4
    assert manifest["cycles_per_inference"] == max(n["cycles_per_inference"]
                                                   for n in manifest["nodes"])
    macs = pkg.macs()
    lanes = sum(min(2 * 7, layer["fan_in"]) * 2 for layer in manifest["layers"])
    assert manifest["ideal_cycles_per_inference"] == round(
        sum(macs[n] * 2 for n in ("conv1", "conv3", "fc4")) / lanes, 1)


@needs_icarus
def test_conv_network_on_icarus(lenet_mini, tmp_path):
    root, _, _ = lenet_mini
    report = verify(root / "rtl", vectors=4, seed=2, workdir=tmp_path, quiet=True)
    assert report["mismatches"] == 0, report["first_mismatches"]
    assert report["vectors"] == 4


@needs_icarus
def test_conv_network_with_labels_and_argmax(tmp_path):
    pkg = random_graph((2, 6, 6), "c3k3s2p1,mp2s1,fc4", seed=5, calibration=16)
    save(pkg, tmp_path / "p.flexor.npz")
    x = np.random.default_rng(0).integers(0, 256, (5, 2, 6, 6))
    labels = np.arange(5) % 4
    report = verify(tmp_path / "p.flexor.npz", inputs=x, labels=labels, argmax=True,
                    workdir=tmp_path / "w", quiet=True)
    assert report["mismatches"] == 0 and report["accuracy_rtl"] == report["accuracy_golden"]


@needs_icarus
def test_flipped_rom_bit_in_a_conv_layer_is_caught(lenet_mini, tmp_path):
    root, _, manifest = lenet_mini
    bad = tmp_path / "bad"
    shutil.copytree(root / "rtl", bad)
    m = json.loads((bad / "manifest.json").read_text())
    m["package"]["file"] = str(root / "mini.flexor.npz")
    (bad / "manifest.json").write_text(json.dumps(m))
    hex_path = bad / manifest["layers"][1]["weights_file"]
    lines = hex_path.read_text().split("\n")
    lines[2] = format(int(lines[2], 16) ^ 1, f"0{len(lines[2])}x")
    hex_path.write_text("\n".join(lines))
    report = verify(bad, vectors=3, seed=1, workdir=tmp_path / "w", quiet=True)
    assert report["mismatches"] > 0


@needs_icarus
def test_residual_network_with_int8_layers_on_icarus(tmp_path):
    """A ResNet in miniature as an import makes it: int8 stem and fc, residual blocks with
    option-A shortcuts, global average pool; signed inputs, random backpressure."""
    pkg = random_graph((3, 6, 6), "ic4k3p1,res4,res8s2,gap,ifc5", q=1, n_in=4, n_out=7,
                       seed=11, input_signed=True, negative_alpha=0.3, calibration=16)
    save(pkg, tmp_path / "r.flexor.npz")
    report = verify(tmp_path / "r.flexor.npz", vectors=3, seed=4, lanes=2, frac_bits=14,
                    workdir=tmp_path / "w", quiet=True)
    assert report["mismatches"] == 0, report["first_mismatches"]


@pytest.mark.slow
def test_shipped_lenet5_on_verilator(tmp_path):
    """The paper's LeNet-5 as shipped (rtl_out/lenet5, built from examples/mnist and kept up to
    date by CI): 20 test images on Verilator against the golden model, with stalls, and
    unstalled at the manifest's cycles per image. (The whole split: benchmarks/.)"""
    from pathlib import Path

    from flexor_hw.toolchain import SimulatorMissing, require_simulator
    try:
        require_simulator("verilator")
    except SimulatorMissing as e:
        pytest.skip(str(e))
    root = Path(__file__).resolve().parent.parent
    example, rtl = root / "examples" / "mnist", root / "rtl_out" / "lenet5"
    x, y = np.load(example / "test_x.npy")[:20], np.load(example / "test_y.npy")[:20]
    report = verify(rtl, sim="verilator", inputs=x, labels=y, in_stall=0.2, out_stall=0.2,
                    workdir=tmp_path / "w", quiet=True)
    assert report["mismatches"] == 0, report["first_mismatches"]
    assert report["accuracy_rtl"] == report["accuracy_golden"]
    report = verify(rtl, sim="verilator", inputs=x[:3], in_stall=0, out_stall=0,
                    workdir=tmp_path / "u", quiet=True)
    assert report["mismatches"] == 0
    assert report["measured_cycles_per_inference"] == report["cycles_per_inference"]


@pytest.mark.slow
@pytest.mark.parametrize("target, brams, window", [("ecp5-45k", 108, 100),
                                                   ("ecp5-85k", 208, 25)])
def test_shipped_lenet5_folded_for_larger_ecp5s_on_verilator(tmp_path, target, brams, window):
    """The shipped LeNet-5 built with --target ecp5-45k and ecp5-85k (the README's faster
    LeNet-5 rows): a faster folding than the 25k's, conv2's window the kernels of 4
    channels a beat on the 45k (five banks) and a channel's kernel on the 85k (25), within
    the device's block RAMs, and 10 test images on Verilator bit-exact with stalls; unstalled, images leave
    exactly the manifest's cycles apart once the pipeline is full (the first, as it fills,
    may take a cycle more)."""
    from pathlib import Path

    from flexor_hw.toolchain import SimulatorMissing, require_simulator
    try:
        require_simulator("verilator")
    except SimulatorMissing as e:
        pytest.skip(str(e))
    root = Path(__file__).resolve().parent.parent
    example = root / "examples" / "mnist"
    manifest = build(example / "lenet5.flexor.npz", tmp_path / "rtl", target=target,
                     argmax=True, quiet=True)
    shipped = json.loads((root / "rtl_out" / "lenet5" / "manifest.json").read_text())
    assert manifest["cycles_per_inference"] < shipped["cycles_per_inference"]
    assert manifest["estimate"]["brams"] <= brams
    x, y = np.load(example / "test_x.npy")[:10], np.load(example / "test_y.npy")[:10]
    report = verify(tmp_path / "rtl", sim="verilator", inputs=x, labels=y, in_stall=0.2,
                    out_stall=0.2, workdir=tmp_path / "w", quiet=True)
    assert report["mismatches"] == 0, report["first_mismatches"]
    assert any(n["name"] == "conv2_window" and n["simd"] == window
               for n in manifest["nodes"])
    report = verify(tmp_path / "rtl", sim="verilator", inputs=x[:4], in_stall=0, out_stall=0,
                    workdir=tmp_path / "u", quiet=True)
    assert report["mismatches"] == 0
    gaps = report["cycles_between_outputs"]
    assert gaps[1:] == [manifest["cycles_per_inference"]] * (len(gaps) - 1)
    assert gaps[0] - manifest["cycles_per_inference"] in (0, 1)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["lenet5", "resnet20"])
def test_imported_checkpoints_on_verilator(arch, tmp_path):
    """The paper's LeNet-5 and ResNet-20 as imported from flexor-unofficial checkpoints (random
    weights and BatchNorm statistics, negative γ included): emitted with auto lanes, verified
    on Verilator with zero mismatches under stalls, and unstalled at exactly the manifest's
    cycles per image."""
    pytest.importorskip("torch")                # the checkpoints are torch tensors
    from flexor_hw.importer import import_checkpoint
    from flexor_hw.toolchain import SimulatorMissing, require_simulator

    from importer.unofficial_models import lenet5_checkpoint, resnet_checkpoint
    try:
        require_simulator("verilator")
    except SimulatorMissing as e:
        pytest.skip(str(e))
    rng = np.random.default_rng(7)
    if arch == "lenet5":
        ckpt, shape = lenet5_checkpoint(rng), (1, 28, 28)
    else:
        ckpt, shape = resnet_checkpoint(rng, depth=20), (3, 32, 32)
    calib = (rng.normal(0, 1, (8, *shape)) if arch == "resnet20"
             else rng.uniform(0, 1, (8, *shape)))
    pkg = import_checkpoint(ckpt, calib, name=arch)
    save(pkg, tmp_path / f"{arch}.flexor.npz")
    manifest = build(tmp_path / f"{arch}.flexor.npz", tmp_path / "rtl", lanes="auto",
                     argmax=True, quiet=True)
    # The windows bound these networks; the units are folded a little faster than them
    # (fold.UNIT_SLACK), and wider where a SIMD that divides the fan-in (complemented lanes,
    # no Σx tree) costs less (ResNet-20's stage-1 units at 4×18, 32,768 cycles, behind
    # windows of 49,153), so some of their lanes idle: within 1.6× of every lane busy.
    assert manifest["cycles_per_inference"] <= 1.6 * manifest["ideal_cycles_per_inference"]
    x = np.random.default_rng(1).integers(pkg.input.lo, pkg.input.hi + 1, (3, *shape))
    report = verify(tmp_path / "rtl", sim="verilator", inputs=x, in_stall=0.3, out_stall=0.3,
                    workdir=tmp_path / "s", quiet=True)
    assert report["mismatches"] == 0, report["first_mismatches"]
    report = verify(tmp_path / "rtl", sim="verilator", inputs=x, in_stall=0, out_stall=0,
                    workdir=tmp_path / "u", quiet=True)
    assert report["mismatches"] == 0
    assert report["measured_cycles_per_inference"] == manifest["cycles_per_inference"]


@pytest.mark.slow
def test_resnet32_folded_for_the_85k_on_verilator(tmp_path):
    """The paper's ResNet-32 (FleXOR 3×3 convs at n_in 6 / n_out 10, int8 first conv and fc,
    option-A shortcuts; random calibrated weights) as folded for the ECP5-85k: 2 images on
    Verilator, bit-exact, unstalled at exactly the manifest's cycles per image, at 81,920
    cycles or faster (its first stage's skip FIFOs in banks of a block RAM each; 73,729,
    1.09× the ideal, where units that fold wider than the rate needs take fewer LUT4, their
    ROMs in block RAM). (ResNet-20 and ResNet-32 with more images:
    benchmarks/bench_resnet_fold.py --verilator N.)"""
    from flexor_hw.toolchain import SimulatorMissing, require_simulator
    try:
        require_simulator("verilator")
    except SimulatorMissing as e:
        pytest.skip(str(e))
    blocks = ["res16"] * 5 + ["res32s2"] + ["res32"] * 4 + ["res64s2"] + ["res64"] * 4
    pkg = random_graph((3, 32, 32), "ic16k3p1," + ",".join(blocks) + ",gap,ifc10", q=1,
                       n_in=6, n_out=10, seed=1, calibration=16, name="resnet32")
    save(pkg, tmp_path / "r32.flexor.npz")
    manifest = build(tmp_path / "r32.flexor.npz", tmp_path / "rtl", target="ecp5-85k",
                     argmax=True, quiet=True)
    assert manifest["cycles_per_inference"] <= 81_920
    assert any(n.get("skip_fifo_bank_words") for n in manifest["nodes"])
    x = np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32))
    report = verify(tmp_path / "rtl", sim="verilator", inputs=x, in_stall=0, out_stall=0,
                    workdir=tmp_path / "v", quiet=True)
    assert report["mismatches"] == 0, report["first_mismatches"]
    assert report["measured_cycles_per_inference"] == manifest["cycles_per_inference"]
