"""Argument types, argument parsing and file helpers shared by the ``flexor-hw`` subcommands
(``cli``, ``cli_hw``): the one place where command-line values and paths are checked, against
the limits of :mod:`flexor_hw.limits`, before any work starts."""

import argparse
import os
import sys
import tempfile

from .errors import FlexorError, InputError
from .limits import (MAX_ACTIVATIONS, MAX_N_OUT, MAX_NODES, MAX_Q, MAX_SEED,
                     check_output_file, load_npy)

DEFAULT_FRAC_BITS = 16


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (``PROG: error: MESSAGE``) and exit
    status 2, like every other error of flexor-hw."""

    def error(self, message):
        message = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int(text, lo, hi, what):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, not {text!r}") from None
    if not lo <= value <= hi:
        raise argparse.ArgumentTypeError(f"expected {what}, not {value}")
    return value


def int_range(lo, hi, what=None):
    """An argument type: an integer from ``lo`` to ``hi``."""
    what = what or f"an integer from {lo} to {hi:,}"

    def parse(text):
        return _int(text, lo, hi, what)
    parse.__name__ = "int"
    return parse


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {value}")
    return value


_seed = int_range(0, MAX_SEED, f"a seed from 0 to {MAX_SEED:,}")
_q = int_range(1, MAX_Q, f"a bit-plane count from 1 to {MAX_Q}")
_m_size = int_range(1, MAX_N_OUT, f"an integer from 1 to {MAX_N_OUT}")
_input_bits = int_range(1, 32, "an integer from 1 to 32")


def _int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 64,37,13, not {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive integers, not {text!r}")
    if len(values) > MAX_NODES + 1:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_NODES + 1:,} values, not "
                                         f"{len(values):,}")
    if max(values) > MAX_ACTIVATIONS:
        raise argparse.ArgumentTypeError(f"expected values up to flexor-hw's limit of "
                                         f"{MAX_ACTIVATIONS:,}, not {max(values):,}")
    return values


def _n_tap(text):
    if text == "random":
        return None
    return _m_size(text)


def _load_npy(path, what):
    return load_npy(path, what)


def add_frac_bits(parser, help_suffix="", default=DEFAULT_FRAC_BITS):
    parser.add_argument("--frac-bits", type=int, default=default, metavar="F",
                        help=f"fractional bits of the requantization constants "
                             f"(default {DEFAULT_FRAC_BITS}){help_suffix}")


def _write_atomically(path, write):
    """``write(file)`` into a temporary file beside ``path``, then rename it into place:
    ``path`` is either the complete new file or untouched."""
    path = str(path)
    parent = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=".flexor-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        raise FlexorError(f"cannot write {path!r}: {e.strerror or e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _save_package(package, path):
    from .package import save
    package.validate()
    _write_atomically(path, lambda f: save(package, f))


def _save_npy(path, array):
    import numpy as np
    _write_atomically(path, lambda f: np.save(f, array, allow_pickle=False))


def check_outputs(*paths):
    """Each ``(path, what)`` with a path can be written as a file; before any work."""
    for path, what in paths:
        if path is not None:
            check_output_file(path, what)


def main_errors(func, args):
    """Run a subcommand: a user error is one line and exit 2, a bug one line and exit 3."""
    try:
        return func(args)
    except FlexorError as e:
        print(f"flexor-hw: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flexor-hw: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a bug: one line, the traceback on request
        if os.environ.get("FLEXOR_HW_DEBUG"):
            raise
        text = " ".join(f"{type(e).__name__}: {e}".split())
        print(f"flexor-hw: internal error: {text} (run with FLEXOR_HW_DEBUG=1 for the "
              f"traceback, and please report it)", file=sys.stderr)
        return 3


__all__ = ["ArgumentParser", "InputError", "int_range", "check_outputs", "main_errors"]
