"""FleXOR training in PyTorch (optional extra ``train``; nothing else imports torch)."""

from .export import export_net
from .layers import (BitwiseSoftQuantizer, FlexorConv2d, FlexorLinear, FlexorWeight, IntConv2d,
                     IntLinear, XorDecrypt, int_quantize, s_tanh_schedule)
from .model import (FloatMLP, FlexorMLP, accuracy, export_package, random_shift,
                    train_model)
from .net import FlexorNet, LayerSpec, lenet5

__all__ = ["BitwiseSoftQuantizer", "FlexorLinear", "FlexorConv2d", "FlexorWeight", "IntLinear",
           "IntConv2d", "XorDecrypt", "int_quantize", "s_tanh_schedule",
           "FlexorMLP", "FloatMLP", "FlexorNet", "LayerSpec", "lenet5",
           "train_model", "random_shift", "export_package", "export_net", "accuracy"]
