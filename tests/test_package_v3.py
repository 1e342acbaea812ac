"""Package format v3 (a graph of nodes): round trips, versions written, and total validation
(one error naming the node or member)."""

import json

import numpy as np
import pytest

from flexor_hw.errors import PackageError
from flexor_hw.golden import run_int
from flexor_hw.package import load, save
from flexor_hw.synthetic import random_graph, random_package

SPEC = "ic6k3p1,mp2,res8s2,c8k3s1p1,gap,ifc5"


@pytest.fixture(scope="module")
def graph():
    return random_graph((3, 10, 9), SPEC, q=2, n_in=5, n_out=9, seed=7, calibration=16)


def test_round_trip_is_exact_and_deterministic(tmp_path, graph):
    save(graph, tmp_path / "a.flexor.npz")
    save(graph, tmp_path / "b.flexor.npz")
    assert (tmp_path / "a.flexor.npz").read_bytes() == (tmp_path / "b.flexor.npz").read_bytes()
    back = load(tmp_path / "a.flexor.npz")
    assert back.manifest() == graph.manifest()
    assert back.manifest()["version"] == 3
    for a, b in zip(graph.nodes, back.nodes):
        for name, array in a.members().items():
            other = b.members()[name]
            assert array.dtype == other.dtype and np.array_equal(array, other)
    x = np.random.default_rng(0).integers(0, 256, (4, 3, 10, 9))
    assert np.array_equal(run_int(back, x)[-1], run_int(graph, x)[-1])


def test_chains_are_still_written_as_version_1_and_2(tmp_path):
    assert random_package([5, 4, 3]).manifest()["version"] == 1
    assert random_package([5, 4, 3], quantizer_bits=2).manifest()["version"] == 2
    assert random_graph((5,), "fc4,ifc3").manifest()["version"] == 3       # int8: needs v3


def test_output_may_be_listed_anywhere(tmp_path, graph):
    path = rewrite(tmp_path, graph, lambda m: m["nodes"].insert(0, m["nodes"].pop()))
    assert load(path).output_node.name == graph.output_node.name


def rewrite(tmp_path, package, edit=None, *, drop=None, replace=None):
    manifest = package.manifest()
    if edit:
        edit(manifest)
    members = {"manifest": np.array(json.dumps(manifest))}
    members.update(package.member_arrays())
    if drop:
        del members[drop]
    members.update(replace or {})
    path = tmp_path / "broken.flexor.npz"
    np.savez(path, **members)
    return path


def node(name):
    def find(m):
        return next(n for n in m["nodes"] if n["name"] == name)
    return find


def set_field(name, key, value):
    return lambda m: node(name)(m).__setitem__(key, value)


BROKEN = [
    ("dangling input", set_field("pool2", "inputs", ["nope"]),
     r"^manifest: node 'pool2' reads 'nope', which is not a node of the package \(nor "
     r"'input'\)$"),
    ("cycle", set_field("conv1", "inputs", ["add5"]),
     r"^manifest: nodes 'conv1', 'pool2', 'conv3', 'conv4', 'add5', 'conv6', 'gap7', 'fc8' "
     r"form a cycle \(or read from one\)$"),
    ("two outputs", set_field("conv6", "inputs", ["pool2"]),
     r"^manifest: nodes 'add5', 'fc8' are all unused; a package has exactly one output node, "
     r"read by no other$"),
    ("unknown op", set_field("pool2", "op", "avgpool9"),
     r"^manifest: node 'pool2' has unknown op 'avgpool9' \(known: add, conv2d, "
     r"global_avgpool, linear, maxpool2d\)$"),
    ("arity", set_field("add5", "inputs", ["conv4"]),
     r"^manifest: node 'add5' \(add\) takes 2 inputs, not 1$"),
    ("duplicate name", set_field("conv3", "name", "conv1"),
     r"^manifest: node name 'conv1' is used twice$"),
    ("slash in name", set_field("conv1", "name", "a/b"),
     r"^manifest: nodes\[0\]\.name must be a non-empty string without '/', other than "
     r"'input', not 'a/b'$"),
    ("conv weight shape", set_field("conv3", "weight_shape", [8, 6, 3]),
     r"^manifest: node 'conv3' weight_shape must be \[out, in, kh, kw\] of positive integers, "
     r"not \[8, 6, 3\]$"),
    ("linear after wrong features", set_field("fc8", "weight_shape", [5, 9]),
     r"^manifest: node 'fc8' has 9 inputs but its input 'gap7' has 8 features \(shape "
     r"\[8\]\)$"),
    ("bad stride", set_field("conv3", "stride", [0, 1]),
     r"^manifest: node 'conv3' stride must be an integer or a pair of integers >= 1, not "
     r"\[0, 1\]$"),
    ("bad weights kind", set_field("conv3", "weights", {"kind": "ternary"}),
     r"^manifest: node 'conv3' weights must be an object with kind 'flexor' or 'int'"),
    ("bad shortcut", set_field("add5", "shortcut", {"stride": 2, "pad_channels": [1]}),
     r"^manifest: node 'add5' shortcut\.pad_channels must be \[before, after\] of integers "
     r">= 0, not \[1\]$"),
    ("pool missing kernel", lambda m: node("pool2")(m).pop("kernel"),
     r"^manifest: node 'pool2' has no 'kernel'$"),
]


@pytest.mark.parametrize("case, edit, msg", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_graph_is_one_clear_error(tmp_path, graph, case, edit, msg):
    with pytest.raises(PackageError, match=msg):
        load(rewrite(tmp_path, graph, edit))


MEMBERS = [
    ("missing int8 weight", dict(drop="nodes/conv1/weight"),
     r"^member 'nodes/conv1/weight' is missing$"),
    ("int8 out of range", dict(replace={"nodes/fc8/weight": np.full((5, 8), 300, np.int16)}),
     r"^member 'nodes/fc8/weight' holds values outside \[-128, 127\]$"),
    ("float int weights", dict(replace={"nodes/fc8/weight": np.zeros((5, 8), np.float32)}),
     r"^member 'nodes/fc8/weight' has dtype float32, expected integers$"),
    ("weight scale shape", dict(replace={"nodes/conv1/weight_scale": np.ones(5, np.float32)}),
     r"^member 'nodes/conv1/weight_scale' has shape \[5\], expected \[6\]$"),
    ("nan alpha", dict(replace={"nodes/conv3/alpha": np.full((2, 8), np.nan, np.float32)}),
     r"^member 'nodes/conv3/alpha' holds NaN or infinite values$"),
    ("encrypted shape", dict(replace={"nodes/conv4/encrypted": np.zeros((2, 3, 5), np.uint8)}),
     r"^member 'nodes/conv4/encrypted' has shape \[2, 3, 5\], expected \[2, 64, 5\]$"),
    ("unexpected member", dict(replace={"nodes/pool2/alpha": np.zeros(3)}),
     r"^member 'nodes/pool2/alpha' is not part of format version 3$"),
]


@pytest.mark.parametrize("case, edit, msg", MEMBERS, ids=[b[0] for b in MEMBERS])
def test_broken_member_is_one_clear_error(tmp_path, graph, case, edit, msg):
    with pytest.raises(PackageError, match=msg):
        load(rewrite(tmp_path, graph, **edit))


def test_the_graph_has_the_expected_shapes(graph):
    shapes = graph.shapes()
    assert shapes["conv1"] == (6, 10, 9) and shapes["pool2"] == (6, 5, 4)
    assert shapes["conv3"] == (8, 3, 2) and shapes["add5"] == (8, 3, 2)
    assert shapes["gap7"] == (8,) and shapes["fc8"] == (5,)
    assert graph.macs()["conv3"] == 8 * 6 * 9 * 3 * 2
