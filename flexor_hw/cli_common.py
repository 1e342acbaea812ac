"""Argument types and file helpers shared by the ``flexor-hw`` subcommands (``cli``, ``cli_hw``)."""

import argparse

import numpy as np

from .errors import FlexorError, InputError

DEFAULT_FRAC_BITS = 16


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {value}")
    return value


def _int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 64,37,13, not {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive integers, not {text!r}")
    return values


def _n_tap(text):
    if text == "random":
        return None
    return _positive_int(text)


def _load_npy(path, what):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"cannot read {what} {str(path)!r}: {e}") from None


def add_frac_bits(parser, help_suffix=""):
    parser.add_argument("--frac-bits", type=int, default=DEFAULT_FRAC_BITS, metavar="F",
                        help=f"fractional bits of the requantization constants "
                             f"(default {DEFAULT_FRAC_BITS}){help_suffix}")


def _save_package(package, path):
    from .package import save
    try:
        save(package, path)
    except OSError as e:
        raise FlexorError(f"cannot write {str(path)!r}: {e.strerror or e}") from None


def _save_npy(path, array):
    try:
        np.save(path, array, allow_pickle=False)
    except OSError as e:
        raise FlexorError(f"cannot write {str(path)!r}: {e.strerror or e}") from None
