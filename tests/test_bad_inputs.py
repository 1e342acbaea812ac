"""Bad input, as a careless or hostile user gives it, to every subcommand: each is refused
with one line on stderr and exit status 2, writes nothing, and takes a few seconds and a
bounded amount of memory (the bombs run in a subprocess under an address-space limit).

One test per kind of bad input; the cases list every subcommand the kind applies to."""

import io
import json
import os
import re
import resource
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from flexor_hw.build import build
from flexor_hw.cli import main
from flexor_hw.limits import MAX_VECTORS
from flexor_hw.package import load, save
from flexor_hw.synthetic import random_graph, random_package

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEMORY_LIMIT = 3 << 30          # address space of a bomb's subprocess (numpy, amaranth: ~1 GiB)
ONE_LINE = re.compile(r"^flexor-hw( [a-z-]+)?: error: [^\n]+\n$")


# -- the fixtures: a small package, a graph, a built directory, their inputs ---------------

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("good")
    mlp = random_package([8, 5, 3], n_in=4, n_out=6, seed=1, name="small")
    save(mlp, d / "mlp.flexor.npz")
    graph = random_graph((2, 6, 6), "c3k3,mp2,fc3", n_in=4, n_out=6, seed=2, calibration=8)
    save(graph, d / "graph.flexor.npz")
    build(d / "mlp.flexor.npz", d / "rtl", quiet=True)
    np.save(d / "x.npy", np.random.default_rng(0).integers(0, 256, (4, 8)))
    np.save(d / "y.npy", np.array([0, 1, 2, 1]))
    np.save(d / "xr.npy", np.random.default_rng(0).uniform(0, 1, (4, 8)))
    return d


@pytest.fixture
def work(tmp_path, files, monkeypatch):
    """An empty directory to run in; the good files are read from where the fixture made
    them."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def snapshot(*dirs):
    out = set()
    for d in dirs:
        for root, subdirs, names in os.walk(d):
            out.update(os.path.join(root, n) for n in subdirs + names)
    return out


def refuse(argv, message, *dirs, capsys):
    """``main(argv)`` in process: exit 2, one line on stderr matching ``message`` (a regular
    expression, searched), nothing on stdout, nothing new on disk, in a few seconds."""
    dirs = dirs or (os.getcwd(),)
    before = snapshot(*dirs)
    t0 = time.perf_counter()
    status = main([str(a) for a in argv])
    elapsed = time.perf_counter() - t0
    out, err = capsys.readouterr()
    assert status == 2, (status, err)
    assert ONE_LINE.match(err), err
    assert re.search(message, err), err
    assert "Traceback" not in err and out == ""
    assert snapshot(*dirs) == before
    assert elapsed < 10, elapsed
    return err


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def refuse_bounded(argv, message, cwd):
    """The CLI in a subprocess under an address-space limit and a timeout."""
    before = snapshot(cwd)
    env = dict(os.environ, PYTHONPATH=ROOT, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "flexor_hw.cli", *map(str, argv)], cwd=cwd,
                       env=env, capture_output=True, text=True, timeout=60,
                       preexec_fn=_limit_memory)
    assert r.returncode == 2, r.stderr
    assert ONE_LINE.match(r.stderr), r.stderr
    assert re.search(message, r.stderr), r.stderr
    assert snapshot(cwd) == before
    assert time.perf_counter() - t0 < 30
    return r.stderr


def npy_bytes(header_shape, dtype="<f8", data=b"\0" * 64):
    """A .npy whose header declares ``header_shape`` but which holds only ``data``."""
    header = {"descr": dtype, "fortran_order": False, "shape": tuple(header_shape)}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + data


def rewrite_package(src, dst, *, manifest=None, members=None):
    """Copy a package, editing its manifest (a function of the dict, or raw text) and
    replacing members (name -> .npy bytes or array)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            name = info.filename[:-4]
            data = zin.read(info)
            if name == "manifest" and manifest is not None:
                text = manifest if isinstance(manifest, str) else \
                    json.dumps(manifest(json.loads(str(np.load(io.BytesIO(data))))))
                buf = io.BytesIO()
                np.save(buf, np.array(text))
                data = buf.getvalue()
            if members and name in members:
                data = members.pop(name)
                if isinstance(data, np.ndarray):
                    buf = io.BytesIO()
                    np.save(buf, data)
                    data = buf.getvalue()
            zout.writestr(info.filename, data)
        for name, data in (members or {}).items():
            zout.writestr(name + ".npy", data)
    return dst


def copy_build(src, dst):
    import shutil
    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text())
    m["package"]["file"] = os.path.relpath(src / m["package"]["file"], dst)
    (dst / "manifest.json").write_text(json.dumps(m))
    return dst


# -- memory and time bombs -------------------------------------------------------------

def test_member_claiming_a_terabyte(work, files):
    bomb = rewrite_package(files / "mlp.flexor.npz", work / "bomb.npz",
                           members={"layers/0/alpha": npy_bytes((125_000_000_000,))})
    message = (r"member 'layers/0/alpha' declares 1,000,000,000,000 bytes \(float64 "
               r"\[125000000000\]\), more than flexor-hw's limit of 268,435,456")
    for argv in (["inspect", bomb], ["build", bomb, "-o", work / "rtl"],
                 ["run", bomb, files / "x.npy", "-o", work / "y.npy"],
                 ["verify", bomb]):
        refuse_bounded(argv, message, work)


def test_input_array_claiming_a_terabyte(work, files, capsys):
    (work / "big.npy").write_bytes(npy_bytes((1000, 125_000_000)))
    message = r"declares 1,000,000,000,000 bytes .* more than flexor-hw's limit of 1,073,741,824"
    refuse_bounded(["run", files / "mlp.flexor.npz", work / "big.npy", "-o", work / "y.npy"],
                   message, work)
    refuse(["verify", files / "mlp.flexor.npz", "--inputs", work / "big.npy"], message,
           capsys=capsys)
    refuse(["import", work / "c.pt", "-o", work / "p.npz", "--calibrate", work / "big.npy"],
           message, capsys=capsys)


def test_truncated_input_array(work, files, capsys):
    (work / "cut.npy").write_bytes(npy_bytes((4, 8), "<i8", b"\0" * 40))
    refuse(["run", files / "mlp.flexor.npz", work / "cut.npy", "-o", work / "y.npy"],
           r"declares 256 bytes \(int64 \[4, 8\]\) but holds 40 \(truncated\)", capsys=capsys)


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "dir"])
def test_files_that_never_end(work, files, special, capsys):
    if special == "fifo":
        os.mkfifo(work / "fifo")
    elif special == "dir":
        os.mkdir(work / "dir")
    path = special if special.startswith("/") else work / special
    why = r"(not a regular file|it is a directory)"
    refuse_bounded(["inspect", path], rf"cannot read package .*: {why}$", work)
    for argv, what in ((["build", path, "-o", work / "rtl"], "package"),
                       (["run", path, files / "x.npy", "-o", work / "y.npy"], "package"),
                       (["run", files / "mlp.flexor.npz", path, "-o", work / "y.npy"], "input"),
                       (["verify", files / "rtl", "--inputs", path], "inputs"),
                       (["import", path, "-o", work / "p.npz", "--calibrate", files / "xr.npy"],
                        "checkpoint"),
                       (["import", work / "none.pt", "-o", work / "p.npz", "--calibrate",
                         path], "calibration data")):
        if special == "dir" and argv[0] == "verify" and argv[1] == path:
            continue
        refuse(argv, rf"cannot read {what} .*: {why}$", capsys=capsys)


def test_deeply_nested_manifests(work, files, capsys):
    nested = "[" * 200_000 + "]" * 200_000
    bomb = rewrite_package(files / "mlp.flexor.npz", work / "nested.npz", manifest=nested)
    refuse_bounded(["inspect", bomb], r"member 'manifest' is nested too deeply to be read$",
                   work)
    rtl = copy_build(files / "rtl", work / "rtl")
    (rtl / "manifest.json").write_text(nested)
    for argv in (["verify", rtl], ["synth", rtl]):
        refuse(argv, r"build manifest .* is nested too deeply to be read$", capsys=capsys)


@pytest.mark.parametrize("args, message", [
    (["--layers", "1000000000,10"], r"argument --layers: expected values up to flexor-hw's "
                                    r"limit of 4,194,304, not 1,000,000,000$"),
    (["--layers", "5000,5000,10"], r"layer 1's weight count is 25,000,000, more than "
                                   r"flexor-hw's limit of 16,777,216$"),
    (["--layers", ",".join(["4"] * 5000)], r"argument --layers: expected at most 4,097 values"),
    (["--layers", "8,3", "--q", "1000000000"], r"argument --q: expected a bit-plane count from "
                                               r"1 to 16, not 1000000000$"),
    (["--layers", "8,3", "--n-out", "1000000000"], r"argument --n-out: expected an integer "
                                                   r"from 1 to 4096"),
    (["--graph", "c1000000000k3", "--input-shape", "1,8,8"],
     r"node 'conv1': its weight count is 9,000,000,000, more than flexor-hw's limit"),
    (["--graph", "c2k1,gap,fc3", "--input-shape", "3,100000,100000"],
     r"the input's value count is 30,000,000,000, more than flexor-hw's limit of 4,194,304$"),
    (["--graph", "c2k1,gap,fc3", "--input-shape", "3,2000,2000"],
     r"the input's value count is 12,000,000, more than flexor-hw's limit of 4,194,304$"),
    (["--graph", "mp1000000000,fc3", "--input-shape", "1,4,4"], r"error: "),
])
def test_random_package_sizes(work, args, message, capsys):
    refuse(["random-package", "-o", work / "p.npz", *args], message, capsys=capsys)


def test_self_consistent_giant_graph(work, files, capsys):
    def giant(m):
        m["input"]["shape"] = [2, 300_000, 300_000]
        return m
    pkg = rewrite_package(files / "graph.flexor.npz", work / "giant.npz", manifest=giant)
    # conv1 (3×3) and pool1 fit any size; the flatten into fc4 no longer does, so make the
    # graph consistent: the input's value count is refused before anything is looked at.
    message = r"manifest: the input's value count is 180,000,000,000, more than flexor-hw's limit"
    for argv in (["inspect", pkg], ["build", pkg, "-o", work / "rtl"],
                 ["run", pkg, files / "x.npy", "-o", work / "y.npy"], ["verify", pkg]):
        refuse(argv, message, capsys=capsys)
    g = random_graph((1, 4, 4), "c2k1,gap", seed=0)
    save(g, work / "g.npz")
    wide = rewrite_package(work / "g.npz", work / "wide.npz",
                           manifest=lambda m: {**m, "input": {**m["input"],
                                                              "shape": [1, 1500, 1500]}})
    refuse(["inspect", wide], r"node 'conv1': its output value count is 4,500,000, more than "
                              r"flexor-hw's limit of 4,194,304$", capsys=capsys)
    refuse_bounded(["build", wide, "-o", work / "rtl"], r"output value count", work)


def test_too_many_vectors(work, files, capsys):
    refuse(["verify", files / "rtl", "--vectors", "1000000000"],
           rf"argument --vectors: expected a positive integer up to {MAX_VECTORS:,}, "
           rf"not 1,000,000,000$", capsys=capsys)
    refuse(["verify", files / "rtl", "--vectors", "1048576"],
           r"the HDL harness takes up to 4,194,304 input beats", capsys=capsys)


# -- the user's mistakes are exit 2, not 3 -----------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["random-package", "-o", "p.npz", "--layers", "8,3", "--seed", "-1"],
     r"^flexor-hw random-package: error: argument --seed: expected a seed from 0 to "
     r"4,294,967,295, not -1$"),
    (["verify", "{rtl}", "--seed", "-1"], r"argument --seed: expected a seed"),
    (["synth", "{rtl}", "--seed", "-1"], r"argument --seed: expected a seed"),
    (["random-package", "-o", "p.npz", "--layers", "64"],
     r"--layers needs at least two sizes, the input's and the output's \(e\.g\. 64,10\), "
     r"not 64$"),
    (["random-package", "-o", "p.npz", "--layers", "8,3", "--n-tap", "9"],
     r"--n-tap \(9\) must not exceed --n-in \(6\)"),
    (["random-package", "-o", "p.npz", "--layers", "8,3", "--n-in", "12"],
     r"--n-in \(12\) must not exceed --n-out \(10\)$"),
    (["random-package", "-o", "p.npz", "--layers", "8,3", "--input-bits", "64"],
     r"argument --input-bits: expected an integer from 1 to 32, not 64$"),
    (["random-package", "-o", "p.npz", "--layers", "8,3", "--input-bits", "1",
      "--input-signed"], r"--input-signed needs --input-bits of at least 2$"),
    (["random-package", "-o", "p.npz", "--graph", "c3k3", "--input-shape", "1,4,4",
      "--n-tap", "8"], r"--n-tap \(8\) must not exceed --n-in \(6\)"),
    (["random-package", "-o", "p.npz", "--layers", "8,3", "--name", "x" * 5000],
     r"manifest: name has 5000 characters, more than flexor-hw's limit of 128$"),
])
def test_user_mistakes_in_arguments(work, files, argv, message, capsys):
    argv = [a.replace("{rtl}", str(files / "rtl")) for a in argv]
    refuse(argv, message, capsys=capsys)


@pytest.mark.parametrize("budget, message", [
    ("luts=0", r"--budget: luts must be at least 1 \(no design is built without LUT4\), not 0$"),
    ("ffs=0", r"--budget: ffs must be at least 1 \(no design is built without flip-flops\)"),
    ("luts=-3", r"--budget takes luts=N,ffs=N,brams=N,dsps=N,lut_fill=P \(any of them\), "
                r"not 'luts=-3'$"),
    ("lut_fill=0", r"--budget: lut_fill is the percentage of the LUTs a folding may take, "
                   r"from 1 to 100, not 0$"),
    ("lut_fill=101", r"lut_fill is the percentage .* from 1 to 100, not 101$"),
    ("lut_fill=7.5", r"--budget takes .* not 'lut_fill=7\.5'$"),
])
def test_budgets_nothing_fits(work, files, budget, message, capsys):
    refuse(["build", files / "mlp.flexor.npz", "-o", work / "b", "--budget", budget], message,
           capsys=capsys)
    assert not (work / "b").exists()


def test_a_budget_beyond_the_target(work, files, capsys):
    refuse(["build", files / "mlp.flexor.npz", "-o", work / "b", "--target", "ecp5-25k",
            "--budget", "ffs=100000"],
           r"--budget ffs=100000 is more than ecp5-25k has \(24,288 flip-flops\); to let a "
           r"folding fill more of its LUTs, give lut_fill=P \(a percentage\)$", capsys=capsys)
    assert not (work / "b").exists()


def test_zero_vectors(work, files, capsys):
    np.save(work / "none.npy", np.zeros((0, 8), np.int64))
    np.save(work / "nolabels.npy", np.zeros(0, np.int64))
    message = r"input has shape \[0, 8\]: no vectors; expected at least one$"
    refuse(["run", files / "mlp.flexor.npz", work / "none.npy", "-o", work / "y.npy"],
           message, capsys=capsys)
    refuse(["run", files / "mlp.flexor.npz", work / "none.npy", "-o", work / "y.npy",
            "--float"], message, capsys=capsys)
    refuse(["verify", files / "rtl", "--inputs", work / "none.npy"], message, capsys=capsys)
    refuse(["verify", files / "mlp.flexor.npz", "--inputs", work / "none.npy", "--labels",
            work / "nolabels.npy"], message, capsys=capsys)


@pytest.mark.parametrize("damage, message", [
    (lambda t: t[:len(t) // 2], r"ROM file .*l0_weights\.hex': \d+ words, expected \d+ "
                                r"\(truncated, garbled or another build's: rebuild the design\)$"),
    (lambda t: "z" + t[1:], r"line 1 is not a \d+-digit hexadecimal word"),
    (lambda t: t + "00\n", r"(has \d+ bytes, more than|\d+ words, expected)"),
    (lambda t: "", r"0 words, expected"),
])
def test_damaged_rom_file(work, files, damage, message, capsys):
    rtl = copy_build(files / "rtl", work / "rtl")
    name = next(n for n in os.listdir(rtl) if n.endswith("l0_weights.hex"))
    (rtl / name).write_text(damage((rtl / name).read_text()))
    for argv in (["verify", rtl], ["synth", rtl]):
        refuse(argv, message, capsys=capsys)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t[:20], r"build manifest .* is not valid JSON"),
    (lambda t: "[]", r"is not a flexor-hw build manifest: not a JSON object$"),
    (lambda t: json.dumps({k: v for k, v in json.loads(t).items() if k != "layers"}),
     r"is not a flexor-hw build manifest: 'layers' is missing or not a list$"),
    (lambda t: json.dumps({**json.loads(t), "rom_files": ["../../../etc/passwd"]}),
     r"file names must be plain names in the directory, not '\.\./\.\./\.\./etc/passwd'$"),
    (lambda t: t.replace('"cycles_per_inference": ', '"cycles_per_inference": -', 1),
     r"'cycles_per_inference' must be a non-negative integer"),
    (lambda t: t.replace('"clock_mhz": 100.0', '"clock_mhz": NaN'), r"is not valid JSON"),
])
def test_bad_build_manifest(work, files, edit, message, capsys):
    rtl = copy_build(files / "rtl", work / "rtl")
    (rtl / "manifest.json").write_text(edit((rtl / "manifest.json").read_text()))
    for argv in (["verify", rtl], ["synth", rtl]):
        refuse(argv, message, capsys=capsys)


# -- output paths are checked before the work --------------------------------------------

def test_output_paths_checked_first(work, files, capsys):
    (work / "file").write_text("x")
    nodir = r"cannot write {} '{}': directory '.*' does not exist$"
    cases = [
        (["verify", files / "rtl", "--report", "nodir/r.json"], "report", "nodir/r.json"),
        (["verify", files / "rtl", "--driver", "cocotb", "--waves", "nodir/w.fst"],
         "waveform file", "nodir/w.fst"),
        (["synth", files / "rtl", "--report", "nodir/r.json"], "report", "nodir/r.json"),
        (["synth", files / "rtl", "--compare", "--report", "nodir/r.json"], "report",
         "nodir/r.json"),
        (["run", files / "mlp.flexor.npz", files / "x.npy", "-o", "nodir/y.npy"],
         "output file", "nodir/y.npy"),
        (["random-package", "-o", "nodir/p.npz", "--layers", "8,3"], "package",
         "nodir/p.npz"),
        (["import", "c.pt", "-o", "nodir/p.npz", "--calibrate", files / "xr.npy"], "package",
         "nodir/p.npz"),
    ]
    for argv, what, path in cases:
        refuse(argv, nodir.format(re.escape(what), re.escape(path)), capsys=capsys)
    refuse(["run", files / "mlp.flexor.npz", files / "x.npy", "-o", work],
           r"cannot write output file '.*': it is a directory$", capsys=capsys)
    refuse(["build", files / "mlp.flexor.npz", "-o", work / "file"],
           r"cannot write output directory '.*file': it exists and is not a directory$",
           capsys=capsys)
    refuse(["build", files / "mlp.flexor.npz", "-o", work / "file" / "rtl"],
           r"cannot write output directory '.*': '.*file' is not a directory$", capsys=capsys)


# -- partial output ----------------------------------------------------------------------

def test_build_writes_all_or_nothing(work, files, capsys):
    out = work / "out"
    out.mkdir()
    (out / "flexor_small_l0_consts.hex").mkdir()       # a file of the design, as a directory
    refuse(["build", files / "mlp.flexor.npz", "-o", out],
           r"cannot write '.*flexor_small_l0_consts\.hex': it exists and is not a regular file "
           r"\(nothing was written\)$", capsys=capsys)
    assert sorted(os.listdir(out)) == ["flexor_small_l0_consts.hex"]
    long_name = rewrite_package(files / "mlp.flexor.npz", work / "long.npz",
                                manifest=lambda m: {**m, "name": "n" * 5000})
    refuse(["build", long_name, "-o", work / "rtl2"],
           r"manifest: name has 5000 characters, more than flexor-hw's limit of 128$",
           capsys=capsys)
    assert not (work / "rtl2").exists()


def test_build_into_new_nested_directory_and_over_an_old_build(work, files, capsys):
    assert main(["build", str(files / "mlp.flexor.npz"), "-o", str(work / "a" / "b")]) == 0
    first = {n: (work / "a" / "b" / n).read_bytes() for n in os.listdir(work / "a" / "b")}
    assert main(["build", str(files / "mlp.flexor.npz"), "-o", str(work / "a" / "b")]) == 0
    assert {n: (work / "a" / "b" / n).read_bytes() for n in os.listdir(work / "a" / "b")} == first
    assert sorted(os.listdir(work)) == ["a"] and os.listdir(work / "a") == ["b"]
    capsys.readouterr()


# -- accepted silently before --------------------------------------------------------------

@pytest.mark.parametrize("clock", ["nan", "0", "-5", "inf", "1e9"])
def test_build_clock(work, files, clock, capsys):
    refuse(["build", files / "mlp.flexor.npz", "-o", work / "rtl", "--clock-mhz", clock],
           r"error: clock must be a frequency in MHz in \(0, 1000\], not ", capsys=capsys)


@pytest.mark.parametrize("labels, message", [
    (np.array([0.0, 1.0, 2.0, 1.0]), r"labels have dtype float64, expected integer class "
                                     r"indices from 0 to 2$"),
    (np.array([0, 1, 3, 1]), r"labels span \[0, 3\], but the network has 3 outputs: expected "
                             r"class indices from 0 to 2$"),
    (np.array([0, -1, 2, 1]), r"labels span \[-1, 2\]"),
    (np.array([0, 1, 2]), r"labels have shape \[3\], expected \[4\]: one per input vector$"),
    (np.array([True, False, True, True]), r"labels have dtype bool"),
])
def test_bad_labels(work, files, labels, message, capsys):
    np.save(work / "labels.npy", labels)
    for target in (files / "rtl", files / "mlp.flexor.npz"):
        refuse(["verify", target, "--inputs", files / "x.npy", "--labels", work / "labels.npy"],
               message, capsys=capsys)


def test_verify_options_that_would_be_ignored(work, files, capsys):
    refuse(["verify", files / "rtl", "--labels", files / "y.npy"],
           r"--labels needs --inputs \(the vectors they label\); random vectors have no "
           r"labels$", capsys=capsys)
    refuse(["verify", files / "rtl", "--lanes", "7"],
           r"--lanes applies only when TARGET is a package; '.*rtl' is a built directory",
           capsys=capsys)
    refuse(["verify", files / "rtl", "--argmax", "--frac-bits", "8"],
           r"--argmax and --frac-bits apply only when TARGET is a package", capsys=capsys)
    refuse(["verify", files / "rtl", "--inputs", files / "x.npy", "--vectors", "3"],
           r"--vectors counts random vectors; with --inputs", capsys=capsys)


def test_member_dtypes_are_the_formats(work, files, capsys):
    g = random_graph((4,), "ifc3", seed=0)
    save(g, work / "int.npz")
    w = load(work / "int.npz").nodes[0].weight
    for member, array, message in (
            ("nodes/fc1/weight", w.astype(np.int16),
             r"member 'nodes/fc1/weight' has dtype int16, expected int8"),
            ("nodes/fc1/weight_scale", np.ones(3, np.float64),
             r"member 'nodes/fc1/weight_scale' has dtype float64, expected float32")):
        bad = rewrite_package(work / "int.npz", work / "bad.npz", members={member: array})
        for argv in (["inspect", bad], ["build", bad, "-o", work / "rtl"]):
            refuse(argv, message, capsys=capsys)
        os.unlink(bad)
    bad = rewrite_package(files / "mlp.flexor.npz", work / "bad.npz",
                          members={"layers/0/xor": load(files / "mlp.flexor.npz").nodes[0]
                                   .xor.astype(bool)})
    refuse(["inspect", bad], r"member 'layers/0/xor' has dtype bool, expected uint8",
           capsys=capsys)


def test_run_writes_the_path_it_names(work, files, capsys):
    assert main(["run", str(files / "mlp.flexor.npz"), str(files / "x.npy"), "-o", "y"]) == 0
    assert capsys.readouterr().out.startswith("y: 4 vectors")
    assert os.listdir(work) == ["y"]
    assert np.load(work / "y").shape == (4, 3)


# -- checkpoints ---------------------------------------------------------------------------

torch = pytest.importorskip("torch")


def mlp_checkpoint():
    from tests.importer.unofficial_models import flexor_entry
    rng = np.random.default_rng(0)
    return {"layers": {"fc1.flexor": flexor_entry(rng, (5, 8), n_in=4, n_out=6),
                       "fc2.flexor": flexor_entry(rng, (3, 5), n_in=4, n_out=6)},
            "fp_state": {}}


class Unsafe:
    pass


@pytest.mark.parametrize("mangle, message", [
    (lambda c: c["layers"]["fc1.flexor"].update(
        packed=[p.float() for p in c["layers"]["fc1.flexor"]["packed"]]),
     r"checkpoint: layer 'fc1\.flexor' packed\[0\] has dtype float32, expected uint8 bytes"),
    (lambda c: c["layers"]["fc1.flexor"].update(
        packed=[p.to(torch.int16) - 300 for p in c["layers"]["fc1.flexor"]["packed"]]),
     r"checkpoint: layer 'fc1\.flexor' packed\[0\] holds values outside \[0, 255\]"),
    (lambda c: c["layers"]["fc1.flexor"].update(
        matrices=c["layers"]["fc1.flexor"]["matrices"].float() * 0.5),
     r"matrices has dtype float32, expected bool"),
    (lambda c: c.update(extra=Unsafe()),
     r"needs the Python object [\w.]*Unsafe, which safe loading refuses"),
])
def test_bad_checkpoints(work, files, mangle, message, capsys):
    ckpt = mlp_checkpoint()
    mangle(ckpt)
    torch.save(ckpt, work / "c.pt")
    err = refuse(["import", work / "c.pt", "-o", work / "p.npz", "--calibrate",
                  files / "xr.npy"], message, capsys=capsys)
    assert "weights_only=False" not in err and "trust" not in err


def test_text_file_as_checkpoint(work, files, capsys):
    (work / "c.pt").write_text("not a checkpoint\n")
    refuse(["import", work / "c.pt", "-o", work / "p.npz", "--calibrate", files / "xr.npy"],
           r"'.*c\.pt' is not a PyTorch checkpoint \(a file written by torch\.save: a zip "
           r"archive or a pickle\), it starts with b'not '$", capsys=capsys)


def test_good_checkpoint_imports(work, files, capsys):
    torch.save(mlp_checkpoint(), work / "c.pt")
    assert main(["import", str(work / "c.pt"), "-o", "p.npz", "--calibrate",
                 str(files / "xr.npy")]) == 0
    assert load(work / "p.npz").calibration["output"] == {"rule": "max", "headroom": 2.0}
    capsys.readouterr()


# -- messages --------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    ([], r"^flexor-hw: error: the following arguments are required: COMMAND$"),
    (["inspect"], r"^flexor-hw inspect: error: the following arguments are required: package$"),
    (["frobnicate"], r"^flexor-hw: error: argument COMMAND: invalid choice: 'frobnicate'"),
    (["random-package", "-o", "p.npz", "--q", "x"],
     r"^flexor-hw random-package: error: argument --q: expected a bit-plane count"),
    (["build", "p.npz", "-o", "d", "--lanes", "0"], r"argument --lanes: expected positive"),
    (["verify", "p", "--sim", "modelsim"], r"argument --sim: invalid choice: 'modelsim'"),
])
def test_usage_errors_are_one_line(work, argv, message, capsys):
    refuse(argv, message, capsys=capsys)


def test_failed_tool_quotes_its_log(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("flexor_hw.sim.harness_under_test",
                                                  os.path.join(ROOT, "sim", "harness.py"))
    harness = importlib.util.module_from_spec(spec)       # this tree's, not an installed one
    spec.loader.exec_module(harness)
    with pytest.raises(harness.HarnessError) as e:
        harness._check(["sh", "-c", "echo first; echo; echo 'the real reason'; exit 3"],
               str(tmp_path / "build.log"), str(tmp_path), dict(os.environ))
    text = str(e.value)
    assert text.startswith("sh failed (exit 3): ") and "the real reason" in text
    assert "\n" not in text and "build.log" not in text
