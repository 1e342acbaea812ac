"""Hardware subcommands of ``flexor-hw``: build, verify."""

import argparse


def _lanes(text):
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer or one integer per layer (e.g. 4 or 8,2), not {text!r}") from None
    return values[0] if len(values) == 1 else values


def cmd_build(args):
    from .build import build
    manifest = build(args.package, args.output, lanes=args.lanes, frac_bits=args.frac_bits)
    print(f"{args.output}: top {manifest['top']}, {manifest['cycles_per_inference']} cycles per "
          f"inference, latency {manifest['latency_cycles']} cycles, ROM {manifest['rom_bits']} "
          f"bits ({manifest['bits_per_weight']:.3f} bits/weight), "
          f"{manifest['xor_gates']} XOR gates")


def add_hw_commands(sub):
    from .cli import DEFAULT_FRAC_BITS
    p = sub.add_parser("build", help="emit Verilog, ROM files and a manifest")
    p.add_argument("package")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="output directory, e.g. rtl_out/NAME")
    p.add_argument("--lanes", type=_lanes, default=1, metavar="N[,N...]",
                   help="XOR decoders per bit-plane: one value, or one per layer (default 1)")
    p.add_argument("--frac-bits", type=int, default=DEFAULT_FRAC_BITS, metavar="F",
                   help=f"fractional bits of the requantization constants "
                        f"(default {DEFAULT_FRAC_BITS})")
    p.set_defaults(func=cmd_build)
