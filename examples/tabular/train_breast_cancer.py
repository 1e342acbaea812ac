"""Compressed inputs into a compressed network: bitwise soft quantization + FleXOR.

    pip install torch==2.13.0 -e ".[train]"
    python examples/tabular/train_breast_cancer.py

scikit-learn's bundled breast-cancer data (30 features, offline). The device delivers each
feature as a 12-bit signed integer (standardized, scale 1/256); the input quantizer turns it
into b bits (1, 2, 4, 8) by b trained thresholds, and a FleXOR MLP 30·b → 32 → 2 classifies.
Writes results.json / results.md, cancer.flexor.npz (b = 4, 0.6 bits/weight) and the test set.
"""

import json
import os
import sys
import time

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from flexor_hw.golden import run_int
from flexor_hw.package import QuantFormat, save
from flexor_hw.train import (BitwiseSoftQuantizer, FloatMLP, FlexorMLP, accuracy,
                             export_package, train_model)

HERE = os.path.dirname(os.path.abspath(__file__))
RAW = QuantFormat(1 / 256, 12, True)          # the device's integer features
HIDDEN, EPOCHS, FRAC_BITS = 32, 150, 16
SHIPPED = (4, 6)                               # bits per feature, n_in (n_out = 10)


def data():
    d = load_breast_cancer()
    x_tr, x_te, y_tr, y_te = train_test_split(d.data, d.target, test_size=0.25, random_state=0,
                                              stratify=d.target)
    mean, std = x_tr.mean(0), x_tr.std(0)

    def raw(x):
        z = (x - mean) / std
        return np.clip(np.round(z / RAW.scale), RAW.lo, RAW.hi).astype(np.int64)

    return raw(x_tr), raw(x_te), y_tr.astype(np.int64), y_te.astype(np.int64)


def main():
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    x_tr, x_te, y_tr, y_te = data()
    xr_tr, xr_te = x_tr * RAW.scale, x_te * RAW.scale
    features = x_tr.shape[1]
    rows = []

    torch.manual_seed(0)
    fp = train_model(FloatMLP([features, HIDDEN, 2]), xr_tr, y_tr, epochs=EPOCHS, batch=32,
                     progress="FP32 weights, FP inputs")
    rows.append({"model": "FP32 MLP", "input_bits": 32, "bits_per_weight": 32.0,
                 "acc_float": accuracy(fp, xr_te, y_te), "acc_int": None})

    torch.manual_seed(0)
    ref = FlexorMLP([features, HIDDEN, 2], n_in=6, n_out=10, seed=0)
    train_model(ref, xr_tr, y_tr, epochs=EPOCHS, batch=32, progress="FleXOR, FP inputs")
    rows.append({"model": "FleXOR, float inputs", "input_bits": 32, "bits_per_weight": 0.6,
                 "acc_float": accuracy(ref, xr_te, y_te), "acc_int": None})

    configs = [(b, 6) for b in (1, 2, 4, 8)] + [(4, n_in) for n_in in (4, 8, 10)]
    shipped = None
    for bits, n_in in configs:
        torch.manual_seed(0)
        quant = BitwiseSoftQuantizer(features, bits, init_data=xr_tr)
        model = FlexorMLP([features, HIDDEN, 2], n_in=n_in, n_out=10, seed=0, quantizer=quant)
        train_model(model, xr_tr, y_tr, epochs=EPOCHS, batch=32,
                    progress=f"b={bits}, {n_in / 10:.1f} bits/w")
        package = export_package(model, "cancer", RAW, xr_tr, last_output_bits=16)
        out = run_int(package, x_te, FRAC_BITS)[-1]
        rows.append({"model": f"quantizer b={bits}, FleXOR {n_in}/10", "input_bits": bits,
                     "bits_per_weight": n_in / 10, "acc_float": accuracy(model, xr_te, y_te),
                     "acc_int": float((out.argmax(1) == y_te).mean())})
        if (bits, n_in) == SHIPPED:
            shipped = package

    save(shipped, os.path.join(HERE, "cancer.flexor.npz"))
    np.save(os.path.join(HERE, "test_x.npy"), x_te.astype(np.int16))
    np.save(os.path.join(HERE, "test_y.npy"), y_te.astype(np.uint8))
    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump({"hidden": HIDDEN, "epochs": EPOCHS, "frac_bits": FRAC_BITS,
                   "raw_input": RAW.to_json(), "test_vectors": int(len(y_te)), "rows": rows},
                  f, indent=2)
        f.write("\n")
    table = results_table(rows)
    with open(os.path.join(HERE, "results.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    print(f"\ntrained {len(rows)} models in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


def results_table(rows):
    def pct(v):
        return "–" if v is None else f"{100 * v:.2f} %"

    lines = ["| model | bits per input feature | input compression vs 32-bit | bits/weight | "
             "float model (hard steps) | integer golden model |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['input_bits']} | {32 / r['input_bits']:.0f}× | "
                     f"{r['bits_per_weight']:.1f} | {pct(r['acc_float'])} | "
                     f"{pct(r['acc_int'])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
