"""Folding sweep of the shipped LeNet-5: for a range of LUT budgets on a device, the folding
`--target T --budget luts=N` picks (the folding pass keeps the estimate within 65 % of N; at
a share of 1, `--target T` alone, within the device's own margin), its
cycles per image and estimated resources, and (with --synth) the placed figures beside the
estimate. One JSON record per point as it lands, so a stop loses nothing finished;
--plot-only redraws the Pareto plot from the JSON.

Run: python benchmarks/bench_fold.py [--target ecp5-25k] [--shares 0.3 0.5 0.7 1.0] [--synth]
         [--out benchmarks/fold_sweep_ecp5_25k.json]
     python benchmarks/bench_fold.py --plot-only --out benchmarks/fold_sweep_ecp5_25k.json
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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package", default=os.path.join(ROOT, "examples/mnist/lenet5.flexor.npz"))
    ap.add_argument("--target", default="ecp5-25k")
    ap.add_argument("--shares", type=float, nargs="+", default=[0.25, 0.4, 0.55, 0.7, 0.85, 1.0],
                    help="LUT budgets as shares of the device's LUTs")
    ap.add_argument("--synth", action="store_true", help="place every point (minutes each)")
    ap.add_argument("--out", help="JSON file (default: benchmarks/fold_sweep_TARGET.json)")
    ap.add_argument("--seed", type=int, default=1, help="nextpnr's seed")
    ap.add_argument("--plot-only", action="store_true")
    args = ap.parse_args()
    if args.out is None:
        args.out = os.path.join(HERE, f"fold_sweep_{args.target.replace('-', '_')}.json")
    if not args.plot_only:
        sweep(args)
    plot(args.out)


def sweep(args):
    from flexor_hw.build import build
    from flexor_hw.errors import FlexorError
    from flexor_hw.synth import TARGETS, synth
    device = TARGETS[args.target]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip() or None
    records = []
    for share in args.shares:
        # the whole device: as --target alone folds to it (its own LUT margin, if it has one)
        budget = None if share >= 1 else {
            "luts": int(device["luts"] * share), "ffs": int(device["luts"] * share),
            "brams": device["brams"], "dsps": device["dsps"]}
        with tempfile.TemporaryDirectory(prefix="fold-") as tmp:
            try:
                m = build(args.package, os.path.join(tmp, "rtl"), target=args.target,
                          budget=budget, argmax=True, quiet=True)
            except FlexorError as e:
                print(f"share {share:.2f}: {e}")
                continue
            rec = {"target": args.target, "commit": commit, "share": share, "budget": budget,
                   "fold": m["build"]["fold"], "cycles": m["cycles_per_inference"],
                   "ideal": m["ideal_cycles_per_inference"], "estimate": m["estimate"],
                   "macs": sum(layer["macs"] for layer in m["layers"]),
                   "bottleneck": m["bottleneck"]}
            print(f"share {share:.2f}: {rec['cycles']:,} cycles per image, fold {rec['fold']}, "
                  f"est. {m['estimate']['luts']:,} LUT4, {m['estimate']['brams']} block RAM",
                  flush=True)
            if args.synth:
                r = synth(os.path.join(tmp, "rtl"), args.target, seed=args.seed, quiet=True)
                rec["placed"] = {k: r.get(k) for k in ("luts", "ffs", "brams", "dsps",
                                                       "fmax_mhz", "fits")}
                if r.get("fmax_mhz"):
                    rec["images_per_s"] = r["fmax_mhz"] * 1e6 / rec["cycles"]
                if r.get("luts"):           # FINN's figure of merit, per 1,000 placed LUT4
                    rec["macs_per_cycle_per_klut"] = (rec["macs"] / rec["cycles"]
                                                      / (r["luts"] / 1000))
                print(f"  placed: {rec['placed']}", flush=True)
        records.append(rec)
        with open(args.out, "w") as f:
            json.dump(records, f, indent=2)
            f.write("\n")


def plot(path):
    if not os.path.exists(path):
        return
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    records = json.load(open(path))
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r["estimate"]["luts"] for r in records]
    ys = [100e6 / r["cycles"] for r in records]
    ax.plot(xs, ys, "o-", label="estimate, at 100 MHz")
    placed = [r for r in records if r.get("placed", {}).get("luts")]
    if placed:
        ax.plot([r["placed"]["luts"] for r in placed],
                [r.get("images_per_s", 0) for r in placed], "s", label="placed, at its Fmax")
    ax.set_xlabel("LUT4")
    ax.set_ylabel("images/s")
    ax.set_title(f"LeNet-5 folding sweep ({records[0]['target']})")
    ax.legend()
    fig.tight_layout()
    out = os.path.splitext(path)[0] + ".png"
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
