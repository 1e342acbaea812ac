"""Training of conv nets: FlexorConv2d slices the PyTorch-order weight tensor, int layers use
their per-channel integers, export folds BatchNorm and reproduces the model exactly."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from flexor_hw.errors import FlexorError  # noqa: E402
from flexor_hw.golden import run_float, run_int  # noqa: E402
from flexor_hw.package import QuantFormat  # noqa: E402
from flexor_hw.train import (FlexorConv2d, FlexorLinear, FlexorNet, IntConv2d,  # noqa: E402
                             IntLinear, LayerSpec, export_net, int_quantize, lenet5,
                             random_shift)
from flexor_hw.xor import decrypt_plane  # noqa: E402


def test_flexor_conv_uses_global_slices_in_pytorch_order():
    conv = FlexorConv2d(3, 5, 3, stride=2, padding=1, q=2, n_in=4, n_out=7, seed=3)
    bits = conv.flexor.stored_bits()
    numel = 5 * 3 * 3 * 3
    w = np.zeros((5, 3, 3, 3))
    for i in range(2):
        b = decrypt_plane(conv.xor[i].numpy().astype(np.uint8), bits[i], numel) * 2.0 - 1
        w += conv.alpha[i].detach().numpy()[:, None, None, None] * b.reshape(5, 3, 3, 3)
    x = torch.randn(2, 3, 7, 6)
    want = F.conv2d(x.double(), torch.tensor(w), conv.bias.double(), 2, 1)
    assert torch.allclose(conv(x).double(), want, rtol=1e-5, atol=1e-6)
    conv(x).sum().backward()
    assert conv.encrypted.grad.abs().sum() > 0 and conv.alpha.grad.abs().sum() > 0


def test_int_layer_forward_uses_its_integers():
    layer = IntLinear(6, 4, bits=8)
    w_int, scale = (t.detach() for t in int_quantize(layer.weight, 8))
    assert w_int.abs().max() <= 127 and torch.equal(w_int, w_int.round())
    x = torch.randn(3, 6)
    assert torch.allclose(layer(x), x @ (w_int * scale[:, None]).T + layer.bias)


def small_net(seed=0):
    torch.manual_seed(seed)
    net = FlexorNet((2, 9, 8), [
        ("conv1", IntConv2d(2, 6, 3, padding=1)), ("bn1", nn.BatchNorm2d(6)),
        ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", FlexorConv2d(6, 5, 3, stride=2, padding=1, q=2, n_in=4, n_out=7)),
        ("bn2", nn.BatchNorm2d(5)), ("relu2", nn.ReLU()), ("flatten", nn.Flatten()),
        ("fc", FlexorLinear(20, 4, n_in=3, n_out=7))])
    for bn in (net.body.bn1, net.body.bn2):
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(-1, 1)                 # negative γ included
        bn.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


def test_export_folds_batchnorm_and_matches_the_model():
    net = small_net()
    x = torch.rand(32, 2, 9, 8)
    pkg = export_net(net, "small", QuantFormat(1 / 255, 8, False), x.numpy())
    assert [(n.name, n.op) for n in pkg.nodes] == [("conv1", "conv2d"), ("pool1", "maxpool2d"),
                                                   ("conv2", "conv2d"), ("fc", "linear")]
    assert pkg.node("conv1").int_bits == 8 and pkg.node("conv1").relu
    assert pkg.node("conv2").stride == (2, 2) and (pkg.node("conv2").alpha < 0).any()
    with torch.no_grad():
        want = net(x).double().numpy()
    got = run_float(pkg, x.numpy())
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    xi = np.rint(x.numpy() * 255).astype(np.int64)
    y = run_int(pkg, xi, 16)[-1] * pkg.output.scale
    assert np.abs(y - run_float(pkg, xi / 255)).max() < 0.05 * np.abs(want).max()


def test_export_refuses_what_has_no_op():
    net = FlexorNet((4,), [("fc", FlexorLinear(4, 3)), ("tanh", nn.Tanh())])
    with pytest.raises(FlexorError, match=r"^cannot export 'tanh': Tanh has no package op$"):
        export_net(net, "t", QuantFormat(1 / 255, 8, False), np.zeros((2, 4)))
    net = FlexorNet((4,), [("bn", nn.BatchNorm1d(4)), ("fc", FlexorLinear(4, 3))])
    with pytest.raises(FlexorError, match=r"^cannot export 'bn': BatchNorm must follow a conv "
                                          r"or linear layer directly$"):
        export_net(net, "t", QuantFormat(1 / 255, 8, False), np.zeros((2, 4)))


def test_lenet5_is_the_papers_network():
    net = lenet5({"conv1": LayerSpec.flexor(1, 8, 10), "conv2": LayerSpec.flexor(1, 8, 10),
                  "fc1": LayerSpec.flexor(1, 4, 10), "fc2": LayerSpec.int(8)})
    assert net(torch.zeros(2, 784)).shape == (2, 10)
    assert net.weight_count() == 800 + 51200 + 3136 * 512 + 5120
    assert net.stored_weight_bits() == 80 * 8 + 5120 * 8 + 160564 * 4 + 5120 * 8


def test_random_shift_moves_whole_images():
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(64, 1, 8, 8)
    x[:, 0, 3:5, 3:5] = 1
    y = random_shift(2, (1, 8, 8))(x.reshape(64, -1), gen).reshape(64, 1, 8, 8)
    assert (y.sum(dim=(1, 2, 3)) == 4).all()            # the blob never leaves the frame
    assert len({tuple(torch.nonzero(img[0])[0].tolist()) for img in y}) > 10
