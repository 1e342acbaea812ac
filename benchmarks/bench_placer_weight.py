"""nextpnr's placer timing weight (``--placer-heap-timingweight``) against placed Fmax: one
build synthesized once per weight and placed at seeds 1..N, every seed's Fmax printed and
written to a JSON file as each weight lands (``flexor_hw.synth.PLACER_TIMING_WEIGHT`` is the
weight ``flexor-hw synth`` uses on the ECP5; nextpnr's own default is 10). Asserts nothing.

Run: python benchmarks/bench_placer_weight.py [BUILD] [--target ecp5-25k] [--weights 10 30]
     [--seeds 4] [--out benchmarks/placer_timing_weight.json]
LeNet-5 on the ECP5-25k: about 1 minute of Yosys and 2.5 of nextpnr a seed, per weight.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


def main():
    import flexor_hw.synth as s
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", nargs="?", default=os.path.join(ROOT, "rtl_out", "lenet5"))
    ap.add_argument("--target", default="ecp5-25k")
    ap.add_argument("--weights", type=int, nargs="+", default=[10, s.PLACER_TIMING_WEIGHT])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--out", default=os.path.join(HERE, "placer_timing_weight.json"))
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    records = []
    for weight in args.weights:
        s.PLACER_TIMING_WEIGHT = weight
        with tempfile.TemporaryDirectory(prefix="flexor-placer-") as work:
            report = s.synth(args.build, args.target, seed=1, seeds=args.seeds, workdir=work,
                             quiet=True)
        sweep = report.get("seed_sweep") or [{"seed": report["seed"],
                                              "fmax_mhz": report["fmax_mhz"]}]
        fmax = [r["fmax_mhz"] for r in sweep]
        records.append({"build": os.path.relpath(args.build, ROOT), "commit": commit,
                        "target": args.target, "timing_weight": weight,
                        "luts": report["luts"], "ffs": report["ffs"],
                        "fmax_mhz_by_seed": {r["seed"]: r["fmax_mhz"] for r in sweep}})
        shown = ", ".join("–" if f is None else f"{f:.1f}" for f in fmax)
        placed = [f for f in fmax if f is not None]
        print(f"timing weight {weight:3d}: {shown} MHz at seeds 1..{len(fmax)}"
              + (f" (least {min(placed):.1f}, mean {sum(placed) / len(placed):.1f})"
                 if placed else ""), flush=True)
        with open(args.out, "w") as f:
            json.dump(records, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
