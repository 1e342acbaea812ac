# amaranth: UnusedElaboratable=no
"""ConvEngine in Amaranth's simulator against the golden conv2d, exactly, with random stalls:
kernels 1/3/5, stride 1/2 (kernel 3 with stride 2), padding 0/1/2, non-square maps, channel
counts that do not divide the lanes, slices straddling output channels, q up to 3."""

import numpy as np
import pytest

from flexor_hw.gateware.conv import ConvEngine
from flexor_hw.golden import graph_constants, run_int
from flexor_hw.plan import LayerPlan
from flexor_hw.simulate import run_stream
from flexor_hw.synthetic import random_graph

CASES = [  # (c, h, w, out, k, s, p, q, lanes)
    (1, 6, 5, 3, 3, 1, 1, 1, 1), (2, 7, 6, 3, 3, 2, 1, 2, 2), (3, 5, 7, 2, 5, 1, 2, 1, 3),
    (2, 6, 6, 4, 1, 2, 0, 3, 1), (3, 4, 5, 5, 3, 1, 0, 2, 4),
]


@pytest.mark.parametrize("c, h, w, out, k, s, p, q, lanes", CASES,
                         ids=[f"c{c}h{h}w{w}o{o}k{k}s{s}p{p}q{q}l{n}"
                              for c, h, w, o, k, s, p, q, n in CASES])
def test_conv_engine_matches_golden(c, h, w, out, k, s, p, q, lanes):
    pkg = random_graph((c, h, w), f"c{out}k{k}s{s}p{p},fc2", q=q, n_in=4, n_out=7,
                       seed=c + h, negative_alpha=0.3, calibration=8)
    node = pkg.nodes[0]
    consts = graph_constants(pkg, 14)[node.name]
    dut = ConvEngine(LayerPlan(node, consts, lanes).params(), c, h, w, k, stride=s, padding=p)
    images = np.random.default_rng(h).integers(0, 256, (2, c, h, w))
    want = run_int(pkg, images, 14)[0].transpose(0, 2, 3, 1).reshape(-1)    # (oy, ox, o)
    beats = images.transpose(0, 2, 3, 1).reshape(-1)
    run = run_stream(dut, beats.tolist(), len(want), in_stall=0.3, out_stall=0.3, seed=k)
    assert run.outputs == want.tolist()
