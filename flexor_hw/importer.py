"""``flexor-hw import``: checkpoints of other PyTorch FleXOR code → v1 package.

Expected checkpoint (``torch.save`` of a dict, loaded with ``weights_only=True``)::

    {"layers": {name: {"shape": [out, in],
                       "spec": {"q", "n_in", "n_out", "n_tap", "seed"},
                       "n_slices": int,
                       "matrices": bool [q, n_out, n_in],
                       "packed": [q × uint8 tensor],   # bits [n_slices, n_in] flattened,
                                                       # 1 = non-negative, MSB-first, zero-padded
                       "alpha": [q, out]}},
     "fp_state": {"<name>.bias": [out], ...}}

Layers are chained in the dict's order, with ReLU after every layer but the last.
"""

import numpy as np

from .errors import FlexorError, PackageError
from .package import Layer, Package, QuantFormat, chain
from .synthetic import calibrate_scales

__all__ = ["import_checkpoint", "load_checkpoint"]


def load_checkpoint(path):
    try:
        import torch
    except ImportError:
        raise FlexorError("flexor-hw import needs PyTorch: pip install 'flexor-hw[train]'") \
            from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PackageError(f"cannot read checkpoint {str(path)!r}: no such file") from None
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for bad files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PackageError(f"cannot load checkpoint {str(path)!r} with weights_only=True: "
                           f"{first}") from None


def _array(value, where):
    try:
        import torch
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    try:
        return np.asarray(value)
    except Exception:  # noqa: BLE001
        raise PackageError(f"checkpoint: {where} is not an array") from None


def import_checkpoint(ckpt, calibration_x, *, name="imported", input_bits=8, input_signed=None,
                      output_bits=8, last_output_bits=16):
    """Build a package from a checkpoint dict; scales come from real-valued calibration inputs.

    The input scale maps the largest |calibration input| to the top code of a
    ``input_bits``-wide integer (signed when the data has negative values, unless told).
    """
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("layers"), dict) \
            or not ckpt["layers"]:
        raise PackageError("checkpoint: expected a dict with a non-empty 'layers' dict")
    fp_state = ckpt.get("fp_state", {}) or {}
    if not isinstance(fp_state, dict):
        raise PackageError("checkpoint: 'fp_state' must be a dict")
    names = list(ckpt["layers"])
    unmapped = sorted(k for k in fp_state if k not in {f"{n}.bias" for n in names})
    if unmapped:
        raise FlexorError("checkpoint has full-precision layers the hardware cannot map yet: "
                          + ", ".join(unmapped))
    layers = []
    for k, lname in enumerate(names):
        entry = ckpt["layers"][lname]
        where = f"layer {lname!r}"
        try:
            shape = [int(v) for v in entry["shape"]]
            spec = entry["spec"]
            q, n_in, n_out = int(spec["q"]), int(spec["n_in"]), int(spec["n_out"])
            n_tap = spec.get("n_tap")
            n_slices = int(entry["n_slices"])
            matrices = _array(entry["matrices"], f"{where} matrices")
            packed = entry["packed"]
            alpha = _array(entry["alpha"], f"{where} alpha")
        except (KeyError, TypeError, ValueError) as e:
            raise PackageError(f"checkpoint: {where} lacks or mangles {e}") from None
        if len(shape) != 2:
            raise FlexorError(f"checkpoint: {where} has weight shape {shape}; only linear "
                              f"layers [out, in] can be mapped yet")
        if len(packed) != q:
            raise PackageError(f"checkpoint: {where} packed has {len(packed)} planes, "
                               f"expected q = {q}")
        encrypted = []
        for i, plane in enumerate(packed):
            raw = _array(plane, f"{where} packed[{i}]").astype(np.uint8).reshape(-1)
            bits = np.unpackbits(raw, bitorder="big")
            if bits.size < n_slices * n_in:
                raise PackageError(f"checkpoint: {where} packed[{i}] holds {bits.size} bits, "
                                   f"expected {n_slices * n_in}")
            encrypted.append(bits[:n_slices * n_in].reshape(n_slices, n_in))
        bias = fp_state.get(f"{lname}.bias")
        bias = (np.zeros(shape[0], np.float32) if bias is None
                else _array(bias, f"{lname}.bias").astype(np.float32))
        last = k == len(names) - 1
        layers.append(Layer(
            name=lname, weight_shape=tuple(shape), q=q, n_in=n_in, n_out=n_out,
            n_tap=None if n_tap is None else int(n_tap), relu=not last,
            output=QuantFormat(1.0, last_output_bits if last else output_bits, last),
            xor=matrices.astype(np.uint8), encrypted=np.stack(encrypted),
            alpha=alpha.astype(np.float32), bias=bias))
    x = np.asarray(calibration_x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != layers[0].fan_in:
        raise FlexorError(f"calibration data has shape {list(x.shape)}, expected "
                          f"[n, {layers[0].fan_in}]")
    if not np.isfinite(x).all():
        raise FlexorError("calibration data holds NaN or infinite values")
    signed = bool((x < 0).any()) if input_signed is None else input_signed
    top = (1 << (input_bits - 1)) - 1 if signed else (1 << input_bits) - 1
    peak = float(np.abs(x).max()) or 1.0
    package = Package(name=name, input_shape=(layers[0].fan_in,),
                      input=QuantFormat(peak / top, input_bits, signed), nodes=chain(layers))
    package.validate()
    calibrate_scales(package, x)
    return package.validate()
