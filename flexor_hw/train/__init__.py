"""FleXOR training in PyTorch (optional extra ``train``; nothing else imports torch)."""

from .layers import (BitwiseSoftQuantizer, FlexorLinear, XorDecrypt,
                     s_tanh_schedule)
from .model import FloatMLP, FlexorMLP, accuracy, export_package, train_model

__all__ = ["BitwiseSoftQuantizer", "FlexorLinear", "XorDecrypt", "s_tanh_schedule",
           "FlexorMLP", "FloatMLP",
           "train_model", "export_package", "accuracy"]
