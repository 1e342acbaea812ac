import io
import json
import os
import tempfile
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from flexor_hw.errors import PackageError
from flexor_hw.package import load, save
from flexor_hw.synthetic import random_package


def assert_same(a, b):
    assert a.manifest() == b.manifest()
    for la, lb in zip(a.layers, b.layers):
        for name in ("xor", "encrypted", "alpha", "bias"):
            x, y = getattr(la, name), getattr(lb, name)
            assert x.dtype == y.dtype and x.shape == y.shape and (x == y).all()


@given(st.lists(st.integers(1, 40), min_size=2, max_size=4), st.integers(1, 3),
       st.integers(0, 1000), st.booleans())
@settings(max_examples=25, deadline=None)
def test_save_load_round_trip_is_exact(features, q, seed, random_fill):
    pkg = random_package(features, n_in=5, n_out=9, q=q, n_tap=None if random_fill else 2,
                         seed=seed)
    buf = io.BytesIO()
    save(pkg, buf)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "round-trip.flexor.npz")
        with open(path, "wb") as f:
            f.write(buf.getvalue())
        assert_same(pkg, load(path))


def test_save_is_deterministic(tmp_path, small_package):
    save(small_package, tmp_path / "a.flexor.npz")
    save(small_package, tmp_path / "b.flexor.npz")
    assert (tmp_path / "a.flexor.npz").read_bytes() == (tmp_path / "b.flexor.npz").read_bytes()


def test_missing_bias_reads_as_zero(tmp_path, small_package):
    path = rewrite(tmp_path, small_package, drop="layers/1/bias")
    assert (load(path).layers[1].bias == 0).all()


def members_of(package):
    out = {"manifest": np.array(json.dumps(package.manifest()))}
    for k, layer in enumerate(package.layers):
        for name in ("xor", "encrypted", "alpha", "bias"):
            out[f"layers/{k}/{name}"] = getattr(layer, name)
    return out


def rewrite(tmp_path, package, *, drop=None, replace=None, manifest=None, pickled=None):
    members = members_of(package)
    if manifest is not None:
        m = package.manifest()
        manifest(m)
        members["manifest"] = np.array(json.dumps(m))
    if drop:
        del members[drop]
    if replace:
        members.update(replace)
    path = tmp_path / "broken.flexor.npz"
    if pickled:
        members[pickled] = np.array([{"evil": 1}], dtype=object)
    np.savez(path, **members)
    return path


def set_key(path, value):
    def edit(m):
        obj = m
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value
    return edit


BROKEN = [
    ("missing member", dict(drop="layers/0/xor"), r"^member 'layers/0/xor' is missing$"),
    ("missing manifest", dict(drop="manifest"), r"^member 'manifest' is missing$"),
    ("xor shape", dict(replace={"layers/0/xor": np.zeros((2, 11, 6), np.uint8)}),
     r"^member 'layers/0/xor' has shape \[2, 11, 6\], expected \[2, 11, 7\]$"),
    ("encrypted shape", dict(replace={"layers/1/encrypted": np.zeros((2, 5, 7), np.uint8)}),
     r"^member 'layers/1/encrypted' has shape \[2, 5, 7\], expected \[2, 6, 7\]$"),
    ("alpha shape", dict(replace={"layers/0/alpha": np.ones((1, 13), np.float32)}),
     r"^member 'layers/0/alpha' has shape \[1, 13\], expected \[2, 13\]$"),
    ("values not 0/1", dict(replace={"layers/0/encrypted":
                                     np.full((2, 44, 7), 2, np.uint8)}),
     r"^member 'layers/0/encrypted' holds values other than 0 and 1$"),
    ("float xor", dict(replace={"layers/0/xor": np.zeros((2, 11, 7), np.float32)}),
     r"^member 'layers/0/xor' has dtype float32, expected uint8 0/1$"),
    ("nan alpha", dict(replace={"layers/1/alpha": np.full((2, 5), np.nan, np.float32)}),
     r"^member 'layers/1/alpha' holds NaN or infinite values$"),
    ("inf bias", dict(replace={"layers/0/bias": np.full(13, np.inf, np.float32)}),
     r"^member 'layers/0/bias' holds NaN or infinite values$"),
    ("n_tap mismatch", dict(replace={"layers/0/xor": np.ones((2, 11, 7), np.uint8)}),
     r"^member 'layers/0/xor': row 0 of bit-plane 0 has 7 ones, expected n_tap = 2$"),
    ("n_in > n_out", dict(manifest=set_key(["layers", 0, "n_in"], 12)),
     r"^manifest: layer 'fc1' n_in \(12\) must not exceed n_out \(11\)$"),
    ("unknown version", dict(manifest=set_key(["version"], 7)),
     r"^manifest: unknown format version 7 \(this flexor-hw reads versions 1, 2 and 3\)$"),
    ("wrong format", dict(manifest=set_key(["format"], "other")),
     r"^manifest: format must be 'flexor-package', not 'other'$"),
    ("nan scale", dict(manifest=set_key(["input", "scale"], float("nan"))),
     r"^manifest: input\.scale must be a finite positive number, not nan$"),
    ("inf output scale", dict(manifest=set_key(["layers", 1, "output", "scale"],
                                               float("inf"))),
     r"^manifest: layer 'fc2' output\.scale must be a finite positive number, not inf$"),
    ("bad kind", dict(manifest=set_key(["layers", 0, "kind"], "conv2d")),
     r"^manifest: layer 'fc1' has kind 'conv2d'; format version 1 supports 'linear'$"),
    ("chain mismatch", dict(manifest=set_key(["layers", 1, "weight_shape"], [5, 12])),
     r"^manifest: layer 'fc2' has 12 inputs but its input has 13 features$"),
    ("pickled member", dict(pickled="layers/0/alpha"),
     r"^member 'layers/0/alpha' holds pickled Python objects; packages must contain only "
     r"arrays$"),
    ("unexpected member", dict(replace={"layers/0/extra": np.zeros(3)}),
     r"^member 'layers/0/extra' is not part of format version 1$"),
]


@pytest.mark.parametrize("case, edit, msg", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_package_is_one_clear_error(tmp_path, small_package, case, edit, msg):
    path = rewrite(tmp_path, small_package, **edit)
    with pytest.raises(PackageError, match=msg):
        load(path)


def test_pickled_manifest_is_rejected(tmp_path, small_package):
    members = members_of(small_package)
    members["manifest"] = np.array([{"format": "x"}], dtype=object)
    np.savez(tmp_path / "p.npz", **members)
    with pytest.raises(PackageError, match=r"^member 'manifest' holds pickled Python objects"):
        load(tmp_path / "p.npz")


def test_truncated_file(tmp_path, small_package):
    save(small_package, tmp_path / "ok.flexor.npz")
    data = (tmp_path / "ok.flexor.npz").read_bytes()
    (tmp_path / "cut.flexor.npz").write_bytes(data[:len(data) // 2])
    with pytest.raises(PackageError, match=r"is not a \.flexor\.npz package \(not a zip archive, "
                                           r"or truncated\)$"):
        load(tmp_path / "cut.flexor.npz")


def test_corrupt_member(tmp_path, small_package):
    save(small_package, tmp_path / "ok.flexor.npz")
    data = bytearray((tmp_path / "ok.flexor.npz").read_bytes())
    with zipfile.ZipFile(tmp_path / "ok.flexor.npz") as zf:
        info = zf.getinfo("layers/0/encrypted.npy")
    start = info.header_offset + 30 + len(info.filename) + 4
    data[start:start + 8] = b"\xff" * 8
    (tmp_path / "bad.flexor.npz").write_bytes(bytes(data))
    with pytest.raises(PackageError, match=r"^member 'layers/0/encrypted' cannot be read"):
        load(tmp_path / "bad.flexor.npz")


def test_not_a_zip(tmp_path):
    (tmp_path / "x.flexor.npz").write_text("hello")
    with pytest.raises(PackageError, match=r"not a zip archive"):
        load(tmp_path / "x.flexor.npz")


def test_missing_file(tmp_path):
    with pytest.raises(PackageError, match=r"^cannot read package .*nope\.npz.*: No such file"):
        load(tmp_path / "nope.npz")


def test_manifest_not_json(tmp_path, small_package):
    path = rewrite(tmp_path, small_package, replace={"manifest": np.array("{not json")})
    with pytest.raises(PackageError, match=r"^member 'manifest' is not valid JSON"):
        load(path)
