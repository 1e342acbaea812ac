"""The paper's CIFAR-10 ResNets folded to a device: ResNet-20 and ResNet-32 (FleXOR 3×3 convs
at n_in 6 / n_out 10, int8 first conv and fc, option-A shortcuts; random weights, calibrated;
0.63 and 0.62 bits/weight over all weights), built with ``--target``; prints each folding's
cycles per image and estimate; with ``--verilator N`` runs N random images through each
folded build on Verilator against the golden model, unstalled, and prints the measured
cycles per image beside the manifest's; with ``--synth`` places each with ``flexor-hw
synth``, one at a time, writing ``benchmarks/<net>_<target>.{json,md}`` as each lands.
Asserts nothing. A placement of ResNet-20 on the ECP5-85k takes Yosys about 8 minutes and
nextpnr far longer on 2 cores: run it in the background.

Run: python benchmarks/bench_resnet_fold.py [--target ecp5-85k] [--budget lut_fill=90]
     [--nets resnet20,resnet32] [--verilator N] [--synth]
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

from flexor_hw.build import build
from flexor_hw.errors import FlexorError
from flexor_hw.hw.fold import parse_budget
from flexor_hw.package import save
from flexor_hw.synthetic import random_graph

HERE = os.path.dirname(os.path.abspath(__file__))


def resnet(n):
    """A CIFAR ResNet-6n+2's graph spec: n blocks per stage of 16, 32 and 64 channels."""
    blocks = (["res16"] * n + ["res32s2"] + ["res32"] * (n - 1) + ["res64s2"]
              + ["res64"] * (n - 1))
    return "ic16k3p1," + ",".join(blocks) + ",gap,ifc10"


NETS = {"resnet20": resnet(3), "resnet32": resnet(5)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="ecp5-85k")
    ap.add_argument("--budget", default=None, help="as build's --budget (e.g. lut_fill=90)")
    ap.add_argument("--nets", default="resnet20,resnet32")
    ap.add_argument("--verilator", type=int, default=0, metavar="N",
                    help="images to run on Verilator (at least 2: cycles per image are "
                         "measured between images)")
    ap.add_argument("--synth", action="store_true")
    args = ap.parse_args()
    if args.verilator == 1:
        ap.error("--verilator needs at least 2 images")
    for name in args.nets.split(","):
        pkg = random_graph((3, 32, 32), NETS[name], q=1, n_in=6, n_out=10, seed=1,
                           calibration=16, name=name)
        with tempfile.TemporaryDirectory(prefix=f"flexor-{name}-") as tmp:
            path = os.path.join(tmp, f"{name}.flexor.npz")
            save(pkg, path)
            rtl = os.path.join(tmp, "rtl")
            try:
                manifest = build(path, rtl, target=args.target, argmax=True, quiet=True,
                                 budget=parse_budget(args.budget) if args.budget else None)
            except FlexorError as e:
                print(f"{name} on {args.target}: {e}")
                continue
            e, cycles = manifest["estimate"], manifest["cycles_per_inference"]
            print(f"{name} on {args.target}: {cycles:,} cycles per image "
                  f"({cycles / manifest['ideal_cycles_per_inference']:.2f}× the ideal), "
                  f"{manifest['bits_per_weight']:.3f} bits/weight; estimated {e['luts']:,} LUT4, "
                  f"{e['ffs']:,} FF, {e['brams']} block RAM, {e['dsps']} DSP; "
                  f"{100e6 / cycles:,.0f} images/s at 100 MHz", flush=True)
            if args.verilator:
                verilator(pkg, rtl, manifest, args.verilator, tmp)
            if args.synth:
                from flexor_hw.synth import synth
                report = os.path.join(HERE, f"{name}_{args.target.replace('-', '_')}.json")
                r = synth(rtl, args.target, report=report)
                fmax = r["fmax_mhz"]
                print(f"  placed: {r['luts']:,} LUT4, {r['ffs']:,} FF, {r['brams']} block RAM, "
                      f"{r['dsps']} DSP, Fmax {fmax or 0:.1f} MHz, "
                      f"{(fmax or 0) * 1e6 / cycles:,.0f} images/s; Yosys "
                      f"{r['synth_seconds'] / 60:.1f} min, nextpnr {r['pnr_seconds'] / 60:.1f} "
                      f"min -> {report}", flush=True)


def verilator(pkg, rtl, manifest, n, tmp):
    """``n`` random images through the build on Verilator: mismatches and measured cycles."""
    from flexor_hw.verify import verify
    x = np.random.default_rng(0).integers(pkg.input.lo, pkg.input.hi + 1, (n, *pkg.input_shape))
    t = time.perf_counter()
    report = verify(rtl, sim="verilator", inputs=x, in_stall=0.0, out_stall=0.0,
                    workdir=os.path.join(tmp, "v"), quiet=True)
    measured, cycles = report["measured_cycles_per_inference"], manifest["cycles_per_inference"]
    gaps = report["cycles_between_outputs"]
    steady = next((k for k in range(len(gaps)) if set(gaps[k:]) == {cycles}), None)
    print(f"  verilator: {n} images, {report['mismatches']} mismatches; measured "
          f"{measured:,.1f} cycles per image on average, the manifest {cycles:,} "
          f"({'equal' if measured == cycles else f'{measured / cycles:.4f}×'}); between "
          f"outputs {', '.join(f'{g:,}' for g in gaps[:6])}{' …' if len(gaps) > 6 else ''}"
          + (f" (the manifest's from image {steady + 2} on)" if steady is not None else
             " (never the manifest's throughout)") + "; build "
          f"{report['build_seconds']:.0f} s, {report['sim_cycles_per_s']:,.0f} cycles/s, "
          f"{time.perf_counter() - t:.0f} s in all", flush=True)


if __name__ == "__main__":
    sys.exit(main())
