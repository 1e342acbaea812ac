"""Sequential FleXOR networks with convolutions (LeNet-5 and its kind), exportable as a
format-v3 graph: conv/linear (FleXOR or int8 weights), BatchNorm (folded on export), ReLU,
max pooling, flatten."""

import torch
from torch import nn

from .layers import FlexorConv2d, FlexorLinear, IntConv2d, IntLinear

__all__ = ["FlexorNet", "lenet5", "LayerSpec"]


class LayerSpec(tuple):
    """How one weighted layer stores its weights: ``LayerSpec.flexor(q, n_in, n_out, n_tap)``
    or ``LayerSpec.int(bits)`` (or ``None`` for a float layer, the FP32 baseline)."""

    @classmethod
    def flexor(cls, q=1, n_in=4, n_out=10, n_tap=2):
        return cls(("flexor", q, n_in, n_out, n_tap))

    @classmethod
    def int(cls, bits=8):
        return cls(("int", bits))

    @property
    def bits_per_weight(self):
        return self[1] * self[2] / self[3] if self[0] == "flexor" else float(self[1])


def _linear(fan_in, out, spec, seed, s_tanh):
    if spec is None:
        return nn.Linear(fan_in, out)
    if spec[0] == "int":
        return IntLinear(fan_in, out, bits=spec[1])
    _, q, n_in, n_out, n_tap = spec
    return FlexorLinear(fan_in, out, q=q, n_in=n_in, n_out=n_out, n_tap=n_tap, seed=seed,
                        s_tanh=s_tanh)


def _conv(cin, cout, k, stride, padding, spec, seed, s_tanh):
    if spec is None:
        return nn.Conv2d(cin, cout, k, stride=stride, padding=padding)
    if spec[0] == "int":
        return IntConv2d(cin, cout, k, stride=stride, padding=padding, bits=spec[1])
    _, q, n_in, n_out, n_tap = spec
    return FlexorConv2d(cin, cout, k, stride=stride, padding=padding, q=q, n_in=n_in,
                        n_out=n_out, n_tap=n_tap, seed=seed, s_tanh=s_tanh)


class FlexorNet(nn.Module):
    """A chain of named modules: weighted layers, ``nn.BatchNorm1d/2d``, ``nn.ReLU``,
    ``nn.MaxPool2d``, ``nn.Flatten``. ``input_shape`` is ``[C, H, W]`` or ``[features]``."""

    def __init__(self, input_shape, named_modules):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.body = nn.Sequential()
        for name, module in named_modules:
            self.body.add_module(name, module)

    def flexor_layers(self):
        return [m for m in self.body if isinstance(m, (FlexorLinear, FlexorConv2d))]

    def set_s_tanh(self, value):
        for m in self.flexor_layers():
            m.s_tanh = value

    def set_sharpness(self, value):
        pass

    def forward(self, x):
        return self.body(x.reshape(len(x), *self.input_shape))

    def weight_count(self):
        return sum(m.weight.numel() if isinstance(m.weight, torch.Tensor) else m.flexor.numel
                   for m in self.body if hasattr(m, "weight") and not
                   isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)))

    def stored_weight_bits(self):
        """Weight bits the package will hold (float layers count 32 bits a weight)."""
        total = 0
        for m in self.body:
            if isinstance(m, (FlexorLinear, FlexorConv2d)):
                total += m.q * m.flexor.n_slices * m.n_in
            elif isinstance(m, (IntLinear, IntConv2d)):
                total += m.bits * m.weight.numel()
            elif isinstance(m, (nn.Linear, nn.Conv2d)):
                total += 32 * m.weight.numel()
        return total


def lenet5(specs, *, batchnorm=False, seed=0, s_tanh=100.0, num_classes=10):
    """The LeNet-5 of the FleXOR paper's MNIST experiment: 32C5-MP2-64C5-MP2-512FC-10 with
    'same' padding (28 → 14 → 7). ``specs``: one :class:`LayerSpec` (or ``None``) for all four
    weighted layers, or a dict ``{"conv1", "conv2", "fc1", "fc2"}``. ``batchnorm`` adds
    BatchNorm after each conv and fc1 (folded into α and bias on export)."""
    names = ("conv1", "conv2", "fc1", "fc2")
    if not isinstance(specs, dict):
        specs = {n: specs for n in names}
    layers = [("conv1", _conv(1, 32, 5, 1, 2, specs["conv1"], seed, s_tanh))]
    if batchnorm:
        layers.append(("bn1", nn.BatchNorm2d(32)))
    layers += [("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
               ("conv2", _conv(32, 64, 5, 1, 2, specs["conv2"], seed + 1, s_tanh))]
    if batchnorm:
        layers.append(("bn2", nn.BatchNorm2d(64)))
    layers += [("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)), ("flatten", nn.Flatten()),
               ("fc1", _linear(64 * 7 * 7, 512, specs["fc1"], seed + 2, s_tanh))]
    if batchnorm:
        layers.append(("bn3", nn.BatchNorm1d(512)))
    layers += [("relu3", nn.ReLU()),
               ("fc2", _linear(512, num_classes, specs["fc2"], seed + 3, s_tanh))]
    return FlexorNet((1, 28, 28), layers)
