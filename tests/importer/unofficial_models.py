"""Checkpoints in the format of sgsuh/flexor-unofficial (export_model, torch.save), with the
reference forward passes of its published architectures (models/lenet5.py,
models/resnet_cifar.py) rebuilt here in plain PyTorch, float64, from the decrypted weights.
Written from the format's description; nothing of that repository is imported."""

import numpy as np
import torch
import torch.nn.functional as F

from flexor_hw.ops.weighted import int_weights


def flexor_entry(rng, shape, q=1, n_in=4, n_out=10, n_tap=2):
    """An exported FleXOR layer with random bits (α float32, as the export writes it)."""
    numel = int(np.prod(shape))
    n_slices = -(-numel // n_out)
    mats = np.zeros((q, n_out, n_in), bool)
    for i in range(q):
        for r in range(n_out):
            mats[i, r, rng.choice(n_in, n_tap, replace=False)] = True
    bits = rng.integers(0, 2, (q, n_slices, n_in), dtype=np.uint8)
    alpha = rng.uniform(0.05, 0.3, (q, shape[0])) * 0.5 ** np.arange(q)[:, None]
    packed = [torch.tensor(np.packbits(bits[i].reshape(-1), bitorder="big")) for i in range(q)]
    return {"shape": tuple(shape), "spec": {"n_in": n_in, "n_out": n_out, "q": q,
                                            "n_tap": n_tap, "seed": 0},
            "n_slices": n_slices, "matrices": torch.tensor(mats), "packed": packed,
            "alpha": torch.tensor(alpha, dtype=torch.float32)}


def lenet5_checkpoint(rng, q=1, n_in=4, n_out=10):
    layers, fp = {}, {}
    for name, shape in (("conv1", (32, 1, 5, 5)), ("conv2", (64, 32, 5, 5)),
                        ("fc1", (512, 3136)), ("fc2", (10, 512))):
        layers[f"{name}.flexor"] = flexor_entry(rng, shape, q, n_in, n_out)
        fp[f"{name}.bias"] = torch.tensor(rng.normal(0, 0.1, shape[0]), dtype=torch.float32)
    return {"layers": layers, "fp_state": fp}


def _dense(entry):
    """Dense float64 weight of an exported layer, as the export's reconstruct_weight does."""
    shape, n_slices = entry["shape"], entry["n_slices"]
    q, n_in = entry["spec"]["q"], entry["spec"]["n_in"]
    numel = int(np.prod(shape))
    weight = torch.zeros(shape, dtype=torch.float64)
    for i in range(q):
        raw = entry["packed"][i].numpy()
        bits = torch.tensor(np.unpackbits(raw)[:n_slices * n_in].reshape(n_slices, n_in),
                            dtype=torch.long)
        y = (bits @ entry["matrices"][i].long().T) % 2
        b = (2.0 * y.reshape(-1)[:numel].double() - 1).reshape(shape)
        weight += entry["alpha"][i].double().reshape(-1, *([1] * (len(shape) - 1))) * b
    return weight


def lenet5_forward(ckpt, x):
    """models/lenet5.py: relu(conv 5×5 'same') → maxpool 2, twice; fc1 + relu; fc2."""
    L, fp = ckpt["layers"], ckpt["fp_state"]

    def w(n):
        return _dense(L[f"{n}.flexor"])

    def b(n):
        return fp[f"{n}.bias"].double()

    x = F.max_pool2d(F.relu(F.conv2d(x, w("conv1"), b("conv1"), padding=2)), 2)
    x = F.max_pool2d(F.relu(F.conv2d(x, w("conv2"), b("conv2"), padding=2)), 2)
    x = F.relu(F.linear(x.flatten(1), w("fc1"), b("fc1")))
    return F.linear(x, w("fc2"), b("fc2"))


def _bn_state(rng, prefix, c, fp, negative=0.25):
    gamma = rng.uniform(0.5, 1.5, c) * np.where(rng.random(c) < negative, -1, 1)
    fp[f"{prefix}.weight"] = torch.tensor(gamma, dtype=torch.float32)
    fp[f"{prefix}.bias"] = torch.tensor(rng.normal(0, 0.1, c), dtype=torch.float32)
    fp[f"{prefix}.running_mean"] = torch.tensor(rng.normal(0, 0.2, c), dtype=torch.float32)
    fp[f"{prefix}.running_var"] = torch.tensor(rng.uniform(0.3, 2.0, c), dtype=torch.float32)
    fp[f"{prefix}.num_batches_tracked"] = torch.tensor(100)


def resnet_checkpoint(rng, depth=20, q=1, n_in=4, n_out=10):
    n = (depth - 2) // 6
    layers, fp = {}, {}
    fp["conv1.weight"] = torch.tensor(rng.normal(0, 0.3, (16, 3, 3, 3)), dtype=torch.float32)
    _bn_state(rng, "bn1", 16, fp)
    cin = 16
    for stage, cout in zip((1, 2, 3), (16, 32, 64)):
        for j in range(n):
            p = f"layer{stage}.{j}"
            layers[f"{p}.conv1.flexor"] = flexor_entry(rng, (cout, cin, 3, 3), q, n_in, n_out)
            _bn_state(rng, f"{p}.bn1", cout, fp)
            layers[f"{p}.conv2.flexor"] = flexor_entry(rng, (cout, cout, 3, 3), q, n_in, n_out)
            _bn_state(rng, f"{p}.bn2", cout, fp)
            cin = cout
    fp["fc.weight"] = torch.tensor(rng.normal(0, 0.3, (10, 64)), dtype=torch.float32)
    fp["fc.bias"] = torch.tensor(rng.normal(0, 0.1, 10), dtype=torch.float32)
    return {"layers": layers, "fp_state": fp}


def _int8(w):
    """What the package stores for a full-precision layer: its int8 per-channel form."""
    w_int, scale = int_weights(w.numpy(), 8)
    return torch.tensor(w_int.astype(np.float64) *
                        scale.astype(np.float64).reshape(-1, *([1] * (w.dim() - 1))))


def resnet_forward(ckpt, x, depth=20):
    """models/resnet_cifar.py (option-A shortcuts), with the two full-precision layers at the
    int8 values the package holds."""
    L, fp = ckpt["layers"], ckpt["fp_state"]

    def bn(t, p):
        return F.batch_norm(t, fp[f"{p}.running_mean"].double(), fp[f"{p}.running_var"].double(),
                            fp[f"{p}.weight"].double(), fp[f"{p}.bias"].double(), False, 0.0,
                            1e-5)

    x = F.relu(bn(F.conv2d(x, _int8(fp["conv1.weight"]), padding=1), "bn1"))
    n = (depth - 2) // 6
    cin = 16
    for stage, cout in zip((1, 2, 3), (16, 32, 64)):
        for j in range(n):
            p = f"layer{stage}.{j}"
            stride = 2 if stage > 1 and j == 0 else 1
            out = F.relu(bn(F.conv2d(x, _dense(L[f"{p}.conv1.flexor"]), stride=stride,
                                     padding=1), f"{p}.bn1"))
            out = bn(F.conv2d(out, _dense(L[f"{p}.conv2.flexor"]), padding=1), f"{p}.bn2")
            if stride != 1 or cin != cout:
                pad = cout - cin
                short = F.pad(x[:, :, ::stride, ::stride], (0, 0, 0, 0, pad // 2, pad - pad // 2))
            else:
                short = x
            x = F.relu(out + short)
            cin = cout
    x = F.adaptive_avg_pool2d(x, 1).flatten(1)
    return F.linear(x, _int8(fp["fc.weight"]), fp["fc.bias"].double())
