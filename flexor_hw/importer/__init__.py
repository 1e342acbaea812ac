"""``flexor-hw import``: checkpoints of other PyTorch FleXOR code → package.

One reader per external format; today :mod:`.flexor_unofficial` (the ``export_model`` output
of the public PyTorch FleXOR code: MLPs, LeNet-5, CIFAR ResNet-6n+2).
"""

import re

import numpy as np

from ..errors import FlexorError, PackageError
from ..limits import check_regular_file
from .flexor_unofficial import ARCHS, detect_arch, import_flexor_unofficial

__all__ = ["ARCHS", "detect_arch", "import_checkpoint", "load_checkpoint"]


def load_checkpoint(path):
    """Read a ``torch.save`` file with ``weights_only=True``: loading never executes code.

    The file must be a regular file of at most ``MAX_FILE_BYTES`` that starts like a
    ``torch.save`` file (a zip archive, or a pickle for the legacy format)."""
    path = str(path)
    try:
        import torch
    except ImportError:
        raise FlexorError("flexor-hw import needs PyTorch: pip install 'flexor-hw[train]'") \
            from None
    check_regular_file(path, "checkpoint", error=PackageError)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise PackageError(f"cannot read checkpoint {path!r}: {e.strerror or e}") from None
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise PackageError(f"{path!r} is not a PyTorch checkpoint (a file written by "
                           f"torch.save: a zip archive or a pickle), it starts with "
                           f"{head!r}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for bad files
        raise PackageError(f"cannot load checkpoint {path!r} with weights_only=True: "
                           f"{_why(e)}") from None


def _why(error):
    """torch's reason for refusing a file, without its advice to load it unsafely."""
    text = str(error)
    glob = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if glob:
        return (f"it needs the Python object {glob.group(1)}, which safe loading refuses "
                f"(loading it could run code; flexor-hw reads tensors, numbers, strings, lists "
                f"and dicts)")
    detail = re.search(r"WeightsUnpickler error: ([^\n]*)", text)
    if detail:
        first = re.split(r"(?<=\.)\s", detail.group(1).strip())[0]
        return f"it holds what safe loading refuses ({first.rstrip('.')})"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or any(w in lines[0] for w in ("weights_only", "trust")):
        return f"{type(error).__name__} (a damaged or unsupported file)"
    return f"{type(error).__name__}: {lines[0]}"


def import_checkpoint(ckpt, calibration_x, *, arch=None, name="imported", input_bits=8,
                      input_signed=None, input_shape=None, output_bits=8, last_output_bits=16):
    """Build a calibrated package from a checkpoint dict (see :mod:`.flexor_unofficial`).

    ``calibration_x``: real-valued inputs ``[n, C, H, W]`` or flattened. The input scale maps
    the largest ``|x|`` to the top code of an ``input_bits``-wide integer (signed when the data
    has negative values, unless told); every node's output scale comes from the float
    reference on the same data.
    """
    x = np.asarray(calibration_x)
    if not np.issubdtype(x.dtype, np.number):
        raise FlexorError(f"calibration data has dtype {x.dtype}, expected numbers")
    return import_flexor_unofficial(ckpt, x, arch=arch, name=name, input_bits=input_bits,
                                    input_signed=input_signed, input_shape=input_shape,
                                    output_bits=output_bits, last_output_bits=last_output_bits)
