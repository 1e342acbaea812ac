"""Board subcommands of ``flexor-hw``: ``board`` (a bitstream for a development board) and
``classify`` (images over the board's serial link, or over its simulation)."""

import argparse
import os

import numpy as np

from .errors import InputError

DEFAULT_RETRIES = 3


def _baud(text):
    from .board import MAX_BAUD
    from .cli_common import int_range
    return int_range(300, MAX_BAUD, f"a baud rate from 300 to {MAX_BAUD:,}")(text)


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0.01 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds from 0.01 to 3600, not {text!r}")
    return value


def _milliseconds(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0.1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"expected milliseconds from 0.1 to 10,000, not "
                                         f"{text!r}")
    return value


def cmd_board(args):
    from .board import BOARDS, board
    manifest = board(args.build_dir, args.board, args.output, clock_mhz=args.clock_mhz,
                     baud=args.baud, timeout_ms=args.frame_timeout_ms,
                     bitstream=not args.no_bitstream, seed=args.seed)
    spec = BOARDS[args.board]
    clock = (f"{manifest['clock_mhz']:.4g} MHz" +
             (f" (PLL from the {spec['osc_mhz']:g} MHz oscillator)" if manifest["pll"] else
              " (the oscillator)"))
    link = manifest["link"]
    print(f"{args.output}: {manifest['build']['top']} on the {spec['name']}, {clock}, UART "
          f"{manifest['baud']:,} baud 8N1 (divisor {manifest['divisor']}); frames of "
          f"{link['input']['frame_bytes']} image bytes, replies of "
          f"{link['output']['reply_bytes']} bytes")
    if manifest["bitstream"] is None:
        print("  sources only (--no-bitstream): run 'flexor-hw classify --sim "
              f"{args.output} --inputs X.npy' to try the link in simulation")
        return 0
    r, t = manifest["resources"], manifest["timing"]
    print(f"  placed: {r['luts']:,} LUT4 / {r['available_luts']:,}, {r['ffs']:,} FF, "
          f"{r['brams']} block RAM / {r['available_brams']}, {r['dsps']} DSP")
    fmax = "–" if t["fmax_mhz"] is None else f"{t['fmax_mhz']:.1f} MHz"
    print(f"  timing: Fmax {fmax} for a {t['clock_mhz']:.4g} MHz clock: "
          f"{'met' if t['met'] else 'NOT met'} (report: "
          f"{os.path.join(args.output, t['report'])})")
    print(f"  bitstream: {os.path.join(args.output, manifest['bitstream'])}")
    print(f"  program the board with: {manifest['program']}")
    return 0 if t["met"] else 1


def _check_inputs(spec, x):
    """Integer images ``[n, *shape]`` or ``[n, features]`` within the input's range."""
    i = spec["input"]
    shape, features = list(i["shape"]), int(np.prod(i["shape"]))
    if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.integer):
        raise InputError(f"inputs have dtype {x.dtype}, expected integer codes from {i['lo']} "
                         f"to {i['hi']}")
    if x.ndim < 2 or x.shape[0] == 0 or (list(x.shape[1:]) != shape and
                                         list(x.shape[1:]) != [features]):
        raise InputError(f"inputs have shape {list(x.shape)}, expected [n, "
                         f"{', '.join(map(str, shape))}] or [n, {features}] with n ≥ 1")
    if x.min() < i["lo"] or x.max() > i["hi"]:
        raise InputError(f"inputs span [{x.min()}, {x.max()}], but the design takes integer "
                         f"codes from {i['lo']} to {i['hi']}")


def cmd_classify(args):
    from .board import load_board
    from .cli_common import _load_npy, _save_npy, check_outputs
    from .host import Link, SerialTransport, image_beats, run_classify
    from .verify import check_labels
    if (args.port is None) == (args.sim is None):
        raise InputError("classify needs --port PORT (a board) or --sim BOARD_DIR (its "
                         "simulation), not both")
    if args.port is not None and args.board_dir is None:
        raise InputError("--port needs --board-dir DIR: the directory 'flexor-hw board' "
                         "made for the design on the board")
    if args.sim is not None and args.board_dir is not None:
        raise InputError("--sim BOARD_DIR names the board directory; --board-dir is for "
                         "--port")
    check_outputs((args.output, "output file"), (args.outputs, "output vectors file"))
    board = load_board(args.sim or args.board_dir)
    spec = board["link"]
    if args.outputs and spec["output"]["argmax"]:
        raise InputError("--outputs needs a design that returns its output vector; this one "
                         "ends in an argmax (build it without --argmax)")
    x = _load_npy(args.inputs, "inputs")
    _check_inputs(spec, x)
    labels = check_labels(_load_npy(args.labels, "labels"), x.shape[0],
                          spec["output"]["classes"], each="image") \
        if args.labels else None
    beats = image_beats(spec, x)
    frame_s = (spec["input"]["frame_bytes"] + spec["output"]["reply_bytes"] + 12) * 10 / \
        board["baud"]
    reply_timeout = args.timeout or max(0.5, 4 * frame_s + 0.2)
    if args.sim is not None:
        from .board_sim import SimTransport
        work = os.path.join(args.sim, "sim_build")
        transport = SimTransport(args.sim, work=work if os.access(args.sim, os.W_OK) else None,
                                 quiet=False)
        reply_timeout = args.timeout or 10.0        # wall time; the simulation is slower
    else:
        transport = SerialTransport(args.port, board["baud"])
    try:
        link = Link(transport, board, reply_timeout=reply_timeout, retries=args.retries)
        classes, vectors, seconds = run_classify(link, beats)
    finally:
        transport.close()
    n = x.shape[0]
    answered = classes >= 0
    shown = " ".join(map(str, classes[:64])) + (" …" if n > 64 else "")
    print(f"classes: {shown}")
    where = "simulated link" if args.sim else f"{board['baud']:,} baud"
    print(f"{n} images in {seconds:.2f} s: {n / seconds:,.1f} images/s over the link "
          f"({where}); {link.retried} retries" +
          (f" ({', '.join(f'{k}: {v}' for k, v in link.events.items() if v)})"
           if link.retried else ""))
    if labels is not None:
        correct = int((classes == labels).sum())
        print(f"accuracy: {correct / n:.2%} ({correct} of {n})")
    if args.output:
        _save_npy(args.output, classes)
    if args.outputs:
        _save_npy(args.outputs, vectors)
    if not answered.all():
        print(f"FAIL: {int((~answered).sum())} images got no answer after "
              f"{args.retries} retries (class -1)")
        return 1
    return 0


def add_board_commands(sub):
    from .board import BOARDS, DEFAULT_BAUD, DEFAULT_TIMEOUT_MS
    from .cli_common import _seed, int_range
    p = sub.add_parser("board", help="a bitstream for a development board: the network "
                                     "behind a UART (docs/board.md)")
    p.add_argument("build_dir", metavar="BUILD_DIR",
                   help="a directory made by 'flexor-hw build' (native interface)")
    p.add_argument("--board", required=True, choices=sorted(BOARDS), metavar="BOARD",
                   help="the board: " + ", ".join(sorted(BOARDS)))
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="directory for the board's sources, bitstream and timing report")
    p.add_argument("--clock-mhz", type=float, metavar="MHZ",
                   help="the design's clock (default: the board's oscillator, 12 MHz on the "
                        "iCEBreaker, 25 MHz on the ULX3S; any other through the PLL)")
    p.add_argument("--baud", type=_baud, default=DEFAULT_BAUD,
                   help=f"UART baud rate (default {DEFAULT_BAUD:,})")
    p.add_argument("--frame-timeout-ms", type=_milliseconds, default=DEFAULT_TIMEOUT_MS,
                   metavar="MS", help="silence after which the board gives up a frame that "
                                      f"has begun (default {DEFAULT_TIMEOUT_MS:g})")
    p.add_argument("--seed", type=_seed, metavar="N", help="nextpnr placement seed")
    p.add_argument("--no-bitstream", action="store_true",
                   help="write the sources only, without Yosys and nextpnr (enough for "
                        "'classify --sim')")
    p.set_defaults(func=cmd_board)

    p = sub.add_parser("classify", help="classify images on a board over its serial link, "
                                        "or on its simulation")
    p.add_argument("--port", metavar="PORT", help="the board's serial port, e.g. /dev/ttyUSB0")
    p.add_argument("--board-dir", metavar="DIR",
                   help="with --port: the directory 'flexor-hw board' made for the design")
    p.add_argument("--sim", metavar="BOARD_DIR",
                   help="instead of a board: the board directory's link and network in "
                        "Verilator, bit by bit on a simulated UART")
    p.add_argument("--inputs", required=True, metavar="X.npy",
                   help="integer images [n, C, H, W] (or [n, features])")
    p.add_argument("--labels", metavar="Y.npy", help="their classes: report accuracy")
    p.add_argument("-o", "--output", metavar="Y.npy", help="write the classes here")
    p.add_argument("--outputs", metavar="V.npy",
                   help="write the output vectors here (a design built without --argmax)")
    p.add_argument("--timeout", type=_seconds, metavar="S",
                   help="seconds to wait for a reply before retrying (default: four frame "
                        "times + 0.2, at least 0.5; 10 with --sim)")
    p.add_argument("--retries", type=int_range(0, 100), default=DEFAULT_RETRIES,
                   help=f"retries per image (default {DEFAULT_RETRIES})")
    p.set_defaults(func=cmd_classify)
