import numpy as np
import pytest

torch = pytest.importorskip("torch")

from flexor_hw.cli import main  # noqa: E402
from flexor_hw.errors import FlexorError, PackageError  # noqa: E402
from flexor_hw.golden import run_int  # noqa: E402
from flexor_hw.importer import import_checkpoint, load_checkpoint  # noqa: E402
from flexor_hw.package import QuantFormat, load  # noqa: E402
from flexor_hw.train import (FlexorLinear, FlexorMLP, XorDecrypt, accuracy,  # noqa: E402
                             export_package, s_tanh_schedule, train_model)
from flexor_hw.xor import decrypt, make_xor_matrix  # noqa: E402


def test_forward_is_the_xor_network():
    m = make_xor_matrix(11, 7, None, seed=2)                  # rows with 1..7 taps
    e = torch.randn(40, 7, dtype=torch.float64)
    out = XorDecrypt.apply(e, torch.tensor(m, dtype=torch.float64), 100.0)
    bits = decrypt(m, (e >= 0).numpy().astype(np.uint8))
    assert np.array_equal(out.numpy(), bits * 2.0 - 1)


def test_backward_is_eq5_of_the_appendix():
    m = make_xor_matrix(9, 5, None, seed=4)
    s_tanh = 7.0
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(6, 9, dtype=torch.float64)
    XorDecrypt.apply(x, torch.tensor(m, dtype=torch.float64), s_tanh).backward(g)
    xs = x.detach().numpy()
    sign = np.where(xs >= 0, 1.0, -1.0)
    expected = np.zeros_like(xs)
    for s in range(6):
        for r in range(9):
            taps = np.flatnonzero(m[r])
            for j in taps:
                others = np.prod([sign[s, k] for k in taps if k != j])
                d = (-1.0) ** (len(taps) + 1) * s_tanh * \
                    (1 - np.tanh(xs[s, j] * s_tanh) ** 2) * others
                expected[s, j] += g[s, r].item() * d
    assert np.allclose(x.grad.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_s_tanh_schedule_ramps():
    assert s_tanh_schedule(0, 10, 10, 100) == 10
    assert s_tanh_schedule(9, 10, 10, 100) == pytest.approx(100)
    assert 10 < s_tanh_schedule(5, 10, 10, 100) < 100


def test_distinct_matrix_per_plane():
    layer = FlexorLinear(20, 7, q=3, n_in=5, n_out=9, seed=1)
    assert layer.xor.shape == (3, 9, 5)
    assert not torch.equal(layer.xor[0], layer.xor[1])
    assert (layer.xor.sum(dim=2) == 2).all()


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    return train_test_split(d.data.astype(np.int64), d.target, test_size=0.25, random_state=0,
                            stratify=d.target)


def test_export_reproduces_the_trained_model(digits):
    x_tr, x_te, y_tr, y_te = digits
    fmt = QuantFormat(1 / 16, 5, False)
    torch.manual_seed(0)
    model = FlexorMLP([64, 32, 10], q=2, n_in=6, n_out=10, seed=3)
    train_model(model, x_tr * fmt.scale, y_tr, epochs=15)
    package = export_package(model, "t", fmt, x_tr * fmt.scale)
    for layer, trained in zip(package.layers, model.layers):
        signs = trained.signs().detach().numpy()
        assert np.array_equal(layer.weight_bits * 2.0 - 1, signs)
        assert np.array_equal(layer.alpha, trained.alpha.detach().numpy())
        assert np.array_equal(layer.bias, trained.bias.detach().numpy())
    float_acc = accuracy(model, x_te * fmt.scale, y_te)
    int_acc = float(((run_int(package, x_te, 16)[-1]).argmax(1) == y_te).mean())
    assert float_acc > 0.8
    assert abs(int_acc - float_acc) <= 0.01


def synthetic_checkpoint(rng, shapes, q=2, n_in=5, n_out=9):
    layers, fp_state, expected = {}, {}, {}
    for k, (out, fin) in enumerate(shapes):
        name = f"net.{k}"
        numel = out * fin
        n_slices = -(-numel // n_out)
        mats = np.stack([make_xor_matrix(n_out, n_in, 2, seed=k * 10 + i) for i in range(q)])
        bits = rng.integers(0, 2, (q, n_slices, n_in), dtype=np.uint8)
        alpha = rng.uniform(0.1, 1, (q, out)).astype(np.float32)
        layers[name] = {
            "shape": [out, fin], "spec": {"q": q, "n_in": n_in, "n_out": n_out, "n_tap": 2,
                                          "seed": k},
            "n_slices": n_slices, "matrices": torch.tensor(mats.astype(bool)),
            "packed": [torch.tensor(np.packbits(bits[i].reshape(-1), bitorder="big"))
                       for i in range(q)],
            "alpha": torch.tensor(alpha)}
        fp_state[f"{name}.bias"] = torch.tensor(rng.normal(0, 0.1, out).astype(np.float32))
        w = np.zeros((out, fin))
        for i in range(q):
            d = ((bits[i].astype(int) @ mats[i].T.astype(int)) % 2).reshape(-1)[:numel]
            w += alpha[i].astype(np.float64)[:, None] * (d.reshape(out, fin) * 2.0 - 1)
        expected[name] = w
    return {"layers": layers, "fp_state": fp_state}, expected


def test_import_reproduces_weights_exactly(tmp_path):
    rng = np.random.default_rng(0)
    ckpt, expected = synthetic_checkpoint(rng, [(13, 23), (4, 13)])
    torch.save(ckpt, tmp_path / "ckpt.pt")
    calib = rng.normal(0, 1, (50, 23))
    np.save(tmp_path / "calib.npy", calib)
    assert main(["import", str(tmp_path / "ckpt.pt"), "-o", str(tmp_path / "p.flexor.npz"),
                 "--calibrate", str(tmp_path / "calib.npy")]) == 0
    pkg = load(tmp_path / "p.flexor.npz")
    assert [layer.name for layer in pkg.layers] == ["net.0", "net.1"]
    for layer in pkg.layers:
        assert np.array_equal(layer.weights(), expected[layer.name])
        assert np.array_equal(layer.bias, ckpt["fp_state"][f"{layer.name}.bias"].numpy())
    assert pkg.input.signed and pkg.layers[0].relu and not pkg.layers[1].relu


def test_import_lists_unmappable_layers():
    rng = np.random.default_rng(1)
    ckpt, _ = synthetic_checkpoint(rng, [(5, 7)])
    ckpt["fp_state"]["conv1.weight"] = torch.zeros(3, 1, 3, 3)
    ckpt["fp_state"]["bn1.running_mean"] = torch.zeros(3)
    with pytest.raises(FlexorError, match=r"^checkpoint has entries the mlp architecture does "
                                          r"not use \(the hardware cannot map them\): "
                                          r"bn1\.running_mean, conv1\.weight$"):
        import_checkpoint(ckpt, np.zeros((4, 7)))


def test_import_refuses_code_in_checkpoints(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))
    torch.save({"layers": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(PackageError, match=r"with weights_only=True"):
        load_checkpoint(tmp_path / "evil.pt")


def test_quantizer_export_reproduces_hard_steps_exactly():
    from flexor_hw.golden import quantize_inputs
    from flexor_hw.train import BitwiseSoftQuantizer
    rng = np.random.default_rng(3)
    raw = QuantFormat(1 / 256, 12, True)
    x_int = rng.integers(raw.lo, raw.hi + 1, (200, 5))
    quant = BitwiseSoftQuantizer(5, 3, init_data=x_int * raw.scale)
    with torch.no_grad():                         # put thresholds on and off the integer grid
        quant.thresholds[0, 0] = float(x_int[0, 0]) * raw.scale
        quant.thresholds[1, :] = 100.0             # beyond the range: never set
        quant.thresholds[2, :] = -100.0            # below it: always set
    model = FlexorMLP([5, 4, 2], n_in=2, n_out=5, quantizer=quant)
    package = export_package(model, "q", raw, x_int * raw.scale)
    quant.eval()
    hard = quant(torch.as_tensor(x_int * raw.scale, dtype=torch.float32)).numpy()
    assert np.array_equal(quantize_inputs(package, x_int), hard.astype(np.int64))
    assert package.thresholds[1].tolist() == [raw.hi + 1] * 3
    assert package.thresholds[2].tolist() == [raw.lo] * 3


def test_quantizer_trains_with_sigmoid_and_infers_with_steps():
    from flexor_hw.train import BitwiseSoftQuantizer
    quant = BitwiseSoftQuantizer(2, 2, sharpness=5.0)
    x = torch.tensor([[0.3, -0.5]], requires_grad=True)
    soft = quant(x)
    assert ((soft > 0) & (soft < 1)).all()
    soft.sum().backward()
    assert quant.thresholds.grad is not None and (quant.thresholds.grad != 0).all()
    quant.eval()
    assert set(quant(x).detach().unique().tolist()) <= {0.0, 1.0}
