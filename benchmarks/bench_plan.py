"""Time of the folding pass (`flexor-hw build --target T` before any Verilog is written):
the shipped LeNet-5 and the paper's CIFAR ResNet-20 and ResNet-32 (as
``bench_resnet_fold.py`` makes them) folded to a device. Prints seconds, cycles per image and
the estimate of each; asserts nothing.

Run: python benchmarks/bench_plan.py [--targets ecp5-25k,ecp5-85k] [--nets lenet5,resnet20,resnet32]
"""

import argparse
import os
import sys
import time

from flexor_hw.build import plan_hardware
from flexor_hw.errors import FlexorError
from flexor_hw.package import load
from flexor_hw.synthetic import random_graph

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_resnet_fold import NETS  # noqa: E402


def package(name):
    if name == "lenet5":
        return load(os.path.join(HERE, "..", "examples", "mnist", "lenet5.flexor.npz"))
    return random_graph((3, 32, 32), NETS[name], q=1, n_in=6, n_out=10, seed=1,
                        calibration=16, name=name)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="ecp5-25k,ecp5-85k")
    ap.add_argument("--nets", default="lenet5,resnet20,resnet32")
    args = ap.parse_args()
    print(f"{'network':<10} {'target':<10} {'plan s':>7} {'cycles':>9}  estimate")
    for name in args.nets.split(","):
        pkg = package(name)
        for target in args.targets.split(","):
            t0 = time.perf_counter()
            try:
                graph = plan_hardware(pkg, target=target, argmax=True)
            except FlexorError as e:
                print(f"{name:<10} {target:<10} {time.perf_counter() - t0:7.1f} {'refused':>9}  "
                      f"{str(e)[:80]}", flush=True)
                continue
            e = graph.estimate()
            print(f"{name:<10} {target:<10} {time.perf_counter() - t0:7.1f} "
                  f"{graph.cycles_per_image():>9,}  {e['luts']:,} LUT4, {e['ffs']:,} FF, "
                  f"{e['brams']} block RAM, {e['dsps']} DSP", flush=True)


if __name__ == "__main__":
    main()
