"""Import of sgsuh/flexor-unofficial checkpoints: architecture recognized from the keys, the
float model of the imported package equal to the PyTorch model (relative error ≤ 1e-5),
integer model close to it, and bad checkpoints as one clear error."""

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from flexor_hw.errors import FlexorError, PackageError  # noqa: E402
from flexor_hw.golden import run_float, run_int  # noqa: E402
from flexor_hw.importer import detect_arch, import_checkpoint  # noqa: E402
from flexor_hw.package import load  # noqa: E402

from .unofficial_models import (flexor_entry, lenet5_checkpoint, lenet5_forward,  # noqa: E402
                               resnet_checkpoint, resnet_forward)


def rel_err(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.fixture(scope="module")
def lenet():
    return lenet5_checkpoint(np.random.default_rng(0), q=2, n_in=4, n_out=10)


@pytest.fixture(scope="module")
def resnet20():
    return resnet_checkpoint(np.random.default_rng(1), depth=20)


def test_lenet5_float_model_equals_pytorch(lenet):
    x = np.random.default_rng(2).uniform(0, 1, (16, 1, 28, 28))
    assert detect_arch(lenet) == "lenet5"
    pkg = import_checkpoint(lenet, x, name="lenet5")
    assert [(n.name, n.op) for n in pkg.order()] == [
        ("conv1", "conv2d"), ("pool1", "maxpool2d"), ("conv2", "conv2d"),
        ("pool2", "maxpool2d"), ("fc1", "linear"), ("fc2", "linear")]
    assert pkg.input_shape == (1, 28, 28) and pkg.nodes[0].padding == (2, 2)
    want = lenet5_forward(lenet, torch.tensor(x)).numpy()
    assert rel_err(run_float(pkg, x), want) <= 1e-5
    # flattened inputs are accepted too, with the same result
    assert np.array_equal(run_float(pkg, x.reshape(16, -1)), run_float(pkg, x))
    # the integer model on the quantized input tracks the float model
    xi = np.clip(np.rint(x / pkg.input.scale), 0, 255).astype(np.int64)
    y = run_int(pkg, xi, 16)[-1] * pkg.output.scale
    assert rel_err(y, want) < 0.1


def test_resnet20_float_model_equals_pytorch(resnet20):
    x = np.random.default_rng(3).normal(0, 1, (4, 3, 32, 32))
    assert detect_arch(resnet20) == "resnet"
    pkg = import_checkpoint(resnet20, x, name="resnet20")
    ops = [n.op for n in pkg.order()]
    assert ops.count("add") == 9 and ops.count("conv2d") == 19
    assert ops[-2:] == ["global_avgpool", "linear"]
    stem, fc = pkg.node("conv1"), pkg.node("fc")
    assert stem.int_bits == 8 and fc.int_bits == 8         # the full-precision layers
    assert pkg.node("layer2.0.add").stride == 2
    assert pkg.node("layer2.0.add").pad_channels == (8, 8)
    assert (pkg.node("layer1.0.conv1").alpha < 0).any()     # negative γ folded into α
    want = resnet_forward(resnet20, torch.tensor(x)).numpy()
    assert rel_err(run_float(pkg, x), want) <= 1e-5
    xi = np.clip(np.rint(x / pkg.input.scale), -128, 127).astype(np.int64)
    assert pkg.input.signed
    assert run_int(pkg, xi, 16)[-1].shape == (4, 10)


def test_resnet32_depth_from_the_blocks():
    ckpt = resnet_checkpoint(np.random.default_rng(4), depth=32)
    x = np.random.default_rng(5).normal(0, 1, (2, 3, 32, 32))
    pkg = import_checkpoint(ckpt, x)
    assert [n.op for n in pkg.nodes].count("add") == 15
    assert rel_err(run_float(pkg, x), resnet_forward(ckpt, torch.tensor(x), 32).numpy()) <= 1e-5


def test_mlp_with_real_key_names():
    rng = np.random.default_rng(6)
    ckpt = {"layers": {"fc1.flexor": flexor_entry(rng, (12, 20)),
                       "fc2.flexor": flexor_entry(rng, (3, 12))},
            "fp_state": {"fc1.bias": torch.zeros(12), "fc2.bias": torch.ones(3)}}
    assert detect_arch(ckpt) == "mlp"
    pkg = import_checkpoint(ckpt, rng.normal(size=(8, 20)))
    assert [layer.name for layer in pkg.layers] == ["fc1", "fc2"]
    assert pkg.version == 1 and np.array_equal(pkg.layers[1].bias, np.ones(3, np.float32))


def test_arch_override_and_unknown_arch():
    rng = np.random.default_rng(7)
    ckpt = {"layers": {"a.flexor": flexor_entry(rng, (4, 3, 3, 3))}, "fp_state": {}}
    with pytest.raises(FlexorError, match=r"^checkpoint: cannot tell the architecture from its "
                                          r"keys \(layers a\); pass --arch mlp\|lenet5\|resnet$"):
        import_checkpoint(ckpt, np.zeros((2, 3, 8, 8)))
    with pytest.raises(PackageError, match=r"^checkpoint: layer 'conv1' is missing \(neither "
                                           r"'conv1\.flexor' in layers nor 'conv1\.weight' in "
                                           r"fp_state\)$"):
        import_checkpoint(ckpt, np.zeros((2, 3, 8, 8)), arch="lenet5")
    with pytest.raises(PackageError, match=r"^checkpoint: layer 'a' has weight shape "
                                           r"\[4, 3, 3, 3\], expected 2 dimensions for a "
                                           r"linear layer$"):
        import_checkpoint(ckpt, np.zeros((2, 27)), arch="mlp")


def test_missing_batchnorm_statistics(resnet20):
    ckpt = {"layers": resnet20["layers"], "fp_state": dict(resnet20["fp_state"])}
    del ckpt["fp_state"]["layer2.1.bn2.running_var"]
    with pytest.raises(PackageError, match=r"^checkpoint: 'layer2\.1\.bn2\.running_var' is "
                                           r"missing from fp_state$"):
        import_checkpoint(ckpt, np.zeros((2, 3, 32, 32)))


def test_calibration_of_the_wrong_shape(lenet):
    with pytest.raises(FlexorError, match=r"^calibration data has shape \[4, 1, 27, 28\], "
                                          r"expected \[n, 1, 28, 28\] or \[n, 784\]$"):
        import_checkpoint(lenet, np.zeros((4, 1, 27, 28)), input_shape=(1, 28, 28))


def test_cli_import_and_bad_input(tmp_path, lenet):
    torch.save(lenet, tmp_path / "lenet.pt")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).uniform(0, 1, (8, 1, 28, 28)))
    np.save(tmp_path / "bad.npy", np.zeros((8, 3, 28, 28)))
    out = tmp_path / "lenet.flexor.npz"

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "flexor_hw.cli", *map(str, args)],
                              capture_output=True, text=True)
    r = cli("import", tmp_path / "lenet.pt", "-o", out, "--calibrate", tmp_path / "bad.npy")
    assert r.returncode == 2 and not out.exists()
    assert r.stderr.count("\n") == 1 and "calibration data has shape [8, 3, 28, 28]" in r.stderr
    r = cli("import", tmp_path / "lenet.pt", "-o", out, "--calibrate", tmp_path / "calib.npy",
            "--arch", "resnet")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and not out.exists()
    r = cli("import", tmp_path / "lenet.pt", "-o", out, "--calibrate", tmp_path / "calib.npy")
    assert r.returncode == 0, r.stderr
    assert load(out).version == 3 and "6 nodes imported (4 weighted)" in r.stdout


def test_cli_bad_checkpoints_are_one_line(tmp_path, resnet20):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "flexor_hw.cli", *map(str, args)],
                              capture_output=True, text=True)
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).normal(size=(4, 3, 32, 32)))
    out = tmp_path / "out.flexor.npz"
    broken = {"layers": resnet20["layers"], "fp_state": dict(resnet20["fp_state"])}
    del broken["fp_state"]["bn1.running_mean"]
    weird = {"layers": {"x.flexor": resnet20["layers"]["layer1.0.conv1.flexor"]},
             "fp_state": {}}
    for ckpt, message in ((broken, "checkpoint: 'bn1.running_mean' is missing from fp_state"),
                          (weird, "checkpoint: cannot tell the architecture from its keys")):
        torch.save(ckpt, tmp_path / "c.pt")
        r = cli("import", tmp_path / "c.pt", "-o", out, "--calibrate", tmp_path / "calib.npy")
        assert r.returncode == 2 and not out.exists()
        assert r.stderr.count("\n") == 1 and message in r.stderr
