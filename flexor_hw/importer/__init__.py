"""``flexor-hw import``: checkpoints of other PyTorch FleXOR code → package.

One reader per external format; today :mod:`.flexor_unofficial` (the ``export_model`` output
of the public PyTorch FleXOR code: MLPs, LeNet-5, CIFAR ResNet-6n+2).
"""

import numpy as np

from ..errors import FlexorError, PackageError
from .flexor_unofficial import ARCHS, detect_arch, import_flexor_unofficial

__all__ = ["ARCHS", "detect_arch", "import_checkpoint", "load_checkpoint"]


def load_checkpoint(path):
    """Read a ``torch.save`` file with ``weights_only=True``: loading never executes code."""
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
