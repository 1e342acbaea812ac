"""Train the digits MLP at 0.4 / 0.6 / 0.8 / 1.0 bits per weight and as an FP32 baseline.

    pip install torch==2.13.0 -e ".[train]"
    python examples/digits/train_digits.py

Uses scikit-learn's bundled 8×8 digits (offline). Writes, next to this file:
results.json and results.md (the accuracy table), digits.flexor.npz (the shipped package),
test_x.npy / test_y.npy (the quantized test set: 5-bit pixel values 0..16, labels).
"""

import json
import os
import sys
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from flexor_hw.golden import run_int
from flexor_hw.package import QuantFormat, save
from flexor_hw.train import FloatMLP, FlexorMLP, accuracy, export_package, train_model

HERE = os.path.dirname(os.path.abspath(__file__))
FEATURES = [64, 128, 10]
EPOCHS = 100
FRAC_BITS = 16
# (n_in, n_out): 0.4, 0.6, 0.8, 1.0 bits per weight with q = 1 and n_tap = 2.
CONFIGS = [(4, 10), (6, 10), (8, 10), (10, 10)]
SHIPPED = (6, 10)
# Pixels are integers 0..16: 5-bit unsigned integers with scale 1/16 represent them exactly.
INPUT = QuantFormat(1 / 16, 5, False)


def main():
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    digits = load_digits()
    x = digits.data.astype(np.int64)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0,
                                              stratify=y)
    xr_tr, xr_te = x_tr * INPUT.scale, x_te * INPUT.scale
    rows = []

    torch.manual_seed(0)
    fp32 = train_model(FloatMLP(FEATURES), xr_tr, y_tr, epochs=EPOCHS, progress="FP32")
    weights = sum(a * b for a, b in zip(FEATURES, FEATURES[1:]))
    rows.append({"model": "FP32", "bits_per_weight": 32.0, "stored_bits": 32 * weights,
                 "acc_fp32": accuracy(fp32, xr_te, y_te), "acc_float": None, "acc_int": None})

    shipped = None
    for n_in, n_out in CONFIGS:
        torch.manual_seed(0)
        model = FlexorMLP(FEATURES, n_in=n_in, n_out=n_out, n_tap=2, seed=0)
        train_model(model, xr_tr, y_tr, epochs=EPOCHS, s_tanh=(10.0, 100.0),
                    progress=f"FleXOR {n_in}/{n_out}")
        package = export_package(model, "digits", INPUT, xr_tr)
        out = run_int(package, x_te, FRAC_BITS)[-1]
        stored = sum(layer.stored_bits for layer in package.layers)
        rows.append({"model": f"FleXOR n_in/n_out = {n_in}/{n_out}",
                     "bits_per_weight": n_in / n_out, "stored_bits": stored,
                     "acc_fp32": None, "acc_float": accuracy(model, xr_te, y_te),
                     "acc_int": float((out.argmax(1) == y_te).mean())})
        if (n_in, n_out) == SHIPPED:
            shipped = package

    save(shipped, os.path.join(HERE, "digits.flexor.npz"))
    np.save(os.path.join(HERE, "test_x.npy"), x_te.astype(np.uint8))
    np.save(os.path.join(HERE, "test_y.npy"), y_te.astype(np.uint8))
    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump({"features": FEATURES, "epochs": EPOCHS, "frac_bits": FRAC_BITS,
                   "test_vectors": int(len(y_te)), "rows": rows}, f, indent=2)
        f.write("\n")
    table = results_table(rows)
    with open(os.path.join(HERE, "results.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    print(f"\ntrained {len(CONFIGS) + 1} models in {time.perf_counter() - t0:.0f} s; "
          f"shipped {SHIPPED[0]}/{SHIPPED[1]} as examples/digits/digits.flexor.npz",
          file=sys.stderr)


def results_table(rows):
    def pct(v):
        return "–" if v is None else f"{100 * v:.2f} %"

    lines = ["| model | bits/weight | stored weight bits | FP32 | float FleXOR | "
             "integer golden model |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['bits_per_weight']:.1f} | {r['stored_bits']:,} | "
                     f"{pct(r['acc_fp32'])} | {pct(r['acc_float'])} | {pct(r['acc_int'])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
