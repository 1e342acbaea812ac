"""A FleXOR MLP, its training loop and its export to a v1 package."""

import math
import sys
import time

import numpy as np
import torch
from torch import nn

from ..package import Layer, Package, QuantFormat, chain
from ..synthetic import calibrate_scales
from .layers import FlexorLinear, s_tanh_schedule

__all__ = ["FlexorMLP", "FloatMLP", "train_model", "random_shift", "export_package", "accuracy"]


class FlexorMLP(nn.Module):
    """``features = [in, hidden..., out]``; ReLU after every layer but the last.

    ``quantizer`` (a :class:`BitwiseSoftQuantizer` over the ``in`` features) goes in front;
    the first layer then has ``in · b`` inputs.
    """

    def __init__(self, features, *, q=1, n_in=6, n_out=10, n_tap=2, seed=0, s_tanh=100.0,
                 quantizer=None):
        super().__init__()
        self.features = list(features)
        self.quantizer = quantizer
        sizes = list(features)
        if quantizer is not None:
            sizes[0] = features[0] * quantizer.bits
        self.layers = nn.ModuleList(
            FlexorLinear(a, b, q=q, n_in=n_in, n_out=n_out, n_tap=n_tap, seed=seed + k,
                         s_tanh=s_tanh)
            for k, (a, b) in enumerate(zip(sizes, sizes[1:])))

    def set_s_tanh(self, value):
        for layer in self.layers:
            layer.s_tanh = value

    def set_sharpness(self, value):
        if self.quantizer is not None:
            self.quantizer.sharpness = value

    def forward(self, x):
        if self.quantizer is not None:
            x = self.quantizer(x)
        for k, layer in enumerate(self.layers):
            x = layer(x)
            if k < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class FloatMLP(nn.Module):
    """The FP32 baseline with the same shape."""

    def __init__(self, features):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(features, features[1:]))

    def forward(self, x):
        for k, layer in enumerate(self.layers):
            x = layer(x)
            if k < len(self.layers) - 1:
                x = torch.relu(x)
        return x


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        return float((model(torch.as_tensor(x, dtype=torch.float32)).argmax(1).numpy() ==
                      np.asarray(y)).mean())


def random_shift(max_shift, shape):
    """An augmentation for :func:`train_model`: shift each image ``[C, H, W]`` (given
    flattened or not) by up to ``max_shift`` pixels in each direction, filling with zeros."""
    def augment(xb, gen):
        n = len(xb)
        img = xb.reshape(n, *shape)
        pad = torch.nn.functional.pad(img, (max_shift,) * 4)
        dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=gen)
        h, w = shape[-2:]
        rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :]
        out = pad[torch.arange(n)[:, None, None, None], torch.arange(shape[0])[None, :, None,
                                                                                  None],
                  rows, cols]
        return out.reshape(xb.shape)
    return augment


def train_model(model, x, y, *, epochs=60, batch=64, lr=3e-3, seed=0, s_tanh=(10.0, 100.0),
                sharpness=(2.0, 50.0), progress=None, augment=None, warmup_epochs=0,
                weight_decay=0.0):
    """Adam with cosine decay (after ``warmup_epochs`` of linear warm-up); S_tanh ramps
    geometrically from ``s_tanh[0]`` to ``s_tanh[1]`` and an input quantizer's sigmoid
    sharpness from ``sharpness[0]`` to ``sharpness[1]``. ``augment(x_batch, generator)``
    transforms each training batch (e.g. :func:`random_shift`).

    ``progress`` is a label: a one-line progress display on stderr while training.
    """
    torch.manual_seed(seed)
    x = torch.as_tensor(x, dtype=torch.float32)
    y = torch.as_tensor(y, dtype=torch.long)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay) \
        if weight_decay else torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = -(-len(x) // batch)
    total, warm = epochs * steps_per_epoch, warmup_epochs * steps_per_epoch

    def factor(step):
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(total - warm, 1)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        if hasattr(model, "set_s_tanh"):
            model.set_s_tanh(s_tanh_schedule(epoch, epochs, *s_tanh))
            model.set_sharpness(s_tanh_schedule(epoch, epochs, *sharpness))
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for s in range(0, len(x), batch):
            idx = order[s:s + batch]
            xb = x[idx] if augment is None else augment(x[idx], gen)
            opt.zero_grad()
            loss = loss_fn(model(xb), y[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if progress:
            done = (epoch + 1) / epochs
            bar = "#" * int(done * 20)
            print(f"\r  {progress:<22} [{bar:<20}] epoch {epoch + 1}/{epochs} "
                  f"loss {total / len(x):.4f} ({time.perf_counter() - t0:.0f} s)",
                  end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return model


def export_package(model, name, input_format, calibration_x, *, output_bits=8,
                   last_output_bits=16):
    """Export a trained :class:`FlexorMLP` as a package; output scales from calibration data.

    ``calibration_x`` holds real-valued inputs (``x_int · input_format.scale``). A model with
    an input quantizer exports its thresholds as integers of the input format:
    ``x_int·s ≥ t ⟺ x_int ≥ ⌈t/s⌉``, so the hard steps carry over exactly.
    """
    layers = []
    n = len(model.layers)
    for k, layer in enumerate(model.layers):
        last = k == n - 1
        bits = (layer.encrypted.detach() >= 0).to(torch.uint8).numpy()
        bias = (layer.bias.detach().numpy() if layer.bias is not None
                else np.zeros(layer.out_features, np.float32))
        layers.append(Layer(
            name=f"fc{k + 1}", weight_shape=(layer.out_features, layer.in_features),
            q=layer.q, n_in=layer.n_in, n_out=layer.n_out, n_tap=layer.n_tap, relu=not last,
            output=QuantFormat(1.0, last_output_bits if last else output_bits, last),
            xor=layer.xor.numpy().astype(np.uint8), encrypted=bits,
            alpha=layer.alpha.detach().numpy().astype(np.float32),
            bias=bias.astype(np.float32)))
    package = Package(name=name, input_shape=(model.features[0],), input=input_format,
                      nodes=chain(layers))
    if model.quantizer is not None:
        t = model.quantizer.thresholds.detach().double().numpy() / input_format.scale
        package.thresholds = np.clip(np.ceil(t), input_format.lo,
                                     input_format.hi + 1).astype(np.int64)
    calibrate_scales(package, calibration_x)
    return package.validate()
