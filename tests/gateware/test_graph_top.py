# amaranth: UnusedElaboratable=no
"""GraphTop in Amaranth's simulator: small conv networks (conv, max pool, flatten, linear)
against the golden model, exactly, with random stalls."""

import numpy as np
import pytest

from flexor_hw.errors import BuildError
from flexor_hw.gateware.network import GraphTop
from flexor_hw.golden import run_int
from flexor_hw.plan import plan_graph
from flexor_hw.simulate import run_stream
from flexor_hw.synthetic import random_graph


def image_beats(x):
    return x.transpose(0, 2, 3, 1).reshape(-1).tolist()          # (y, x, c) per image


@pytest.mark.parametrize("spec, shape, lanes, argmax", [
    ("c3k3p1,mp2,c4k3s2p1,fc5", (2, 8, 7), 2, False),      # a LeNet in miniature
    ("c4k5p2,mp2,fc6,fc3", (1, 8, 8), [3, 2, 1], True),
    ("c2k1,c3k3s2", (3, 5, 6), 1, False),                   # spatial output, (y, x, c) order
])
def test_graph_network_matches_golden(spec, shape, lanes, argmax):
    pkg = random_graph(shape, spec, q=2, n_in=4, n_out=7, seed=len(spec), calibration=8)
    stages = plan_graph(pkg, lanes, 12)
    dut = GraphTop(stages, argmax=argmax)
    x = np.random.default_rng(1).integers(0, 256, (2, *shape))
    y = run_int(pkg, x, 12)[-1]
    want = (y.argmax(1) if argmax else
            y.transpose(0, 2, 3, 1) if y.ndim == 4 else y).reshape(-1).tolist()
    run = run_stream(dut, image_beats(x), len(want), in_stall=0.2, out_stall=0.2, seed=2)
    assert run.outputs == want


def test_unmapped_nodes_are_named():
    pkg = random_graph((2, 6, 6), "c2k1,res4s2,gap,ifc3", seed=0, calibration=8)
    with pytest.raises(BuildError, match=r"^node 'add4' reads conv3, conv1: the hardware maps "
                                         r"chains of nodes so far \(residual adds come next\)$"):
        plan_graph(pkg, 1, 16)
