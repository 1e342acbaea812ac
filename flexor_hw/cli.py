"""``flexor-hw`` command line. Every user error is one line on stderr and exit status 2."""

import sys

import numpy as np

from . import __version__
from .cli_common import (ArgumentParser, _input_bits, _int_list, _load_npy, _m_size, _n_tap,
                         _q, _save_npy, _save_package, _seed, add_frac_bits, check_outputs,
                         main_errors)
from .errors import InputError


def cmd_inspect(args):
    from .package import load
    from .report import package_table
    print(package_table(load(args.package)))


def cmd_run(args):
    from .golden import _check_shape, check_input, run_float, run_int
    from .ops.base import check_frac_bits
    from .package import load
    check_outputs((args.output, "output file"))
    frac_bits = check_frac_bits(args.frac_bits)
    package = load(args.package)
    x = _load_npy(args.input, "input")
    if args.float:
        if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x) or \
                not np.isfinite(x).all():
            raise InputError("input for --float must hold finite real numbers")
        _check_shape(package, x)
        y = run_float(package, x)
    else:
        check_input(package, x)
        y = run_int(package, x, frac_bits)[-1]
    _save_npy(args.output, y)
    print(f"{args.output}: {y.shape[0]} vectors × {'×'.join(map(str, y.shape[1:]))} outputs "
          f"({'float reference' if args.float else f'integer model, F = {frac_bits}'})")


def cmd_random_package(args):
    from .synthetic import random_graph, random_package
    common = dict(n_in=args.n_in, n_out=args.n_out, q=args.q, n_tap=args.n_tap, seed=args.seed,
                  name=args.name, input_bits=args.input_bits, input_signed=args.input_signed)
    if (args.layers is None) == (args.graph is None):
        raise InputError("random-package needs --layers (an MLP) or --graph with "
                         "--input-shape (any graph), not both")
    if args.layers is not None and len(args.layers) < 2:
        raise InputError(f"--layers needs at least two sizes, the input's and the output's "
                         f"(e.g. 64,10), not {','.join(map(str, args.layers))}")
    if args.n_in > args.n_out:
        raise InputError(f"--n-in ({args.n_in}) must not exceed --n-out ({args.n_out})")
    if args.n_tap is not None and args.n_tap > args.n_in:
        raise InputError(f"--n-tap ({args.n_tap}) must not exceed --n-in ({args.n_in}): a row "
                         f"of M⊕ has n_in entries")
    if args.input_signed and args.input_bits < 2:
        raise InputError("--input-signed needs --input-bits of at least 2")
    check_outputs((args.output, "package"))
    if args.graph is not None:
        if args.input_shape is None:
            raise InputError("--graph needs --input-shape, e.g. 1,28,28")
        try:
            package = random_graph(args.input_shape, args.graph, **common)
        except ValueError as e:
            raise InputError(str(e)) from None
        what = f"{len(package.nodes)} nodes, input {args.input_shape}"
    else:
        try:
            package = random_package(args.layers, **common)
        except ValueError as e:
            raise InputError(str(e)) from None
        what = f"{len(package.layers)} layers, {' → '.join(str(v) for v in args.layers)}"
    _save_package(package, args.output)
    print(f"{args.output}: {what} (format version {package.version})")


def cmd_import(args):
    from .importer import import_checkpoint, load_checkpoint
    check_outputs((args.output, "package"))
    x = _load_npy(args.calibrate, "calibration data")
    package = import_checkpoint(load_checkpoint(args.checkpoint), x, arch=args.arch,
                                name=args.name, input_bits=args.input_bits)
    _save_package(package, args.output)
    print(f"{args.output}: {len(package.nodes)} nodes imported "
          f"({sum(n.weighted for n in package.nodes)} weighted), input "
          f"{list(package.input_shape)} scale {package.input.scale:g} ({package.input.bits}-bit "
          f"{'signed' if package.input.signed else 'unsigned'}), format version "
          f"{package.version}")


def build_parser():
    parser = ArgumentParser(
        prog="flexor-hw",
        description="FleXOR-compressed networks to verified FPGA RTL.")
    parser.add_argument("--version", action="version", version=f"flexor-hw {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("inspect", help="print a package's layers and compression")
    p.add_argument("package")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("run", help="run the golden model on an input array")
    p.add_argument("package")
    p.add_argument("input", help=".npy array [batch, *input.shape]")
    p.add_argument("-o", "--output", required=True, help=".npy file for the outputs")
    p.add_argument("--float", action="store_true",
                   help="run the float reference on real-valued inputs instead")
    add_frac_bits(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("random-package", help="write a random valid package of any shape")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--layers", type=_int_list, metavar="N,N,...",
                   help="an MLP: feature counts input, hidden..., output (e.g. 64,37,13)")
    p.add_argument("--graph", metavar="SPEC",
                   help="any graph, e.g. c32k5p2,mp2,c64k5p2,mp2,fc512,fc10 (LeNet-5) or "
                        "ic16k3p1,res16,res32s2,res64s2,gap,ifc10 (a ResNet-8): "
                        "c<out>k<k>[s<s>][p<p>] conv, fc<out> linear, prefix i for int8 "
                        "weights, mp<k>[s<s>] max pool, gap global average pool, "
                        "res<out>[s<s>] residual block")
    p.add_argument("--input-shape", type=_int_list, metavar="C,H,W",
                   help="input shape of --graph (e.g. 1,28,28)")
    p.add_argument("--n-in", type=_m_size, default=6)
    p.add_argument("--n-out", type=_m_size, default=10)
    p.add_argument("--q", type=_q, default=1)
    p.add_argument("--n-tap", type=_n_tap, default=2, help="ones per M⊕ row, or 'random'")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--name", default="random")
    p.add_argument("--input-bits", type=_input_bits, default=8)
    p.add_argument("--input-signed", action="store_true")
    p.set_defaults(func=cmd_random_package)

    p = sub.add_parser("import", help="convert a PyTorch FleXOR checkpoint into a package")
    p.add_argument("checkpoint", help="file written by torch.save (read with weights_only=True)")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--calibrate", required=True, metavar="DATA.npy",
                   help="real-valued inputs [n, C, H, W] (or flattened [n, C·H·W]): the "
                        "activation scales come from them")
    p.add_argument("--arch", choices=["mlp", "lenet5", "resnet"],
                   help="architecture of the checkpoint (default: recognized from its keys)")
    p.add_argument("--name", default="imported")
    p.add_argument("--input-bits", type=_input_bits, default=8)
    p.set_defaults(func=cmd_import)

    from .cli_hw import add_hw_commands
    add_hw_commands(sub)
    from .cli_board import add_board_commands
    add_board_commands(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:         # a usage error (one line, status 2), --help, --version
        return e.code
    return main_errors(args.func, args) or 0


if __name__ == "__main__":
    sys.exit(main())
