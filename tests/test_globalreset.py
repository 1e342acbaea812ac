"""The netlist pass that puts the units' resets on one global buffer on the ECP5
(:mod:`flexor_hw.globalreset`): only flip-flops reset by a unit's copy of the reset move,
every one onto the one DCCA's net, and the copies' other readers keep them."""

import json

from flexor_hw.globalreset import join_unit_resets


def _ff(d, q, lsr="0", srmode=None):
    params = {"CEMUX": "1 ", "LSRMUX": "LSR", "REGSET": "RESET"}
    if srmode:
        params["SRMODE"] = srmode
    return {"type": "TRELLIS_FF", "parameters": params,
            "port_directions": {"CLK": "input", "DI": "input", "LSR": "input", "Q": "output"},
            "connections": {"CLK": [2], "DI": [d], "LSR": [lsr], "Q": [q]}}


def test_the_units_resets_join_on_one_global_buffer():
    cells = {
        "rst_g0_copy.q_TRELLIS_FF_Q": _ff(3, 10),                  # a group's copy of rst
        "rst_top_copy.q_TRELLIS_FF_Q": _ff(3, 11),                 # the top's own
        "rst_conv1_copy.q_TRELLIS_FF_Q": _ff(10, 20),              # two units' copies
        "rst_conv2_window_copy.q_TRELLIS_FF_Q": _ff(10, 21),
        "conv1.count": _ff(30, 31, lsr=20, srmode="LSR_OVER_CE"),  # reset by its unit's copy
        "conv2_window.row": _ff(32, 33, lsr=21),
        "conv2_window.async": _ff(34, 35, lsr=21, srmode="ASYNC"),  # asynchronous: stays
        "held": _ff(36, 37, lsr=11),                                # the top's copy: stays
        "data": _ff(38, 39),                                        # no reset
        "lut": {"type": "LUT4", "port_directions": {"A": "input", "Z": "output"},
                "connections": {"A": [20], "Z": [40]}},            # reads a copy as logic
    }
    netlist = {"modules": {"top": {"cells": cells, "netnames": {"w": {"bits": [41]}}}}}
    before = json.loads(json.dumps(netlist))
    assert join_unit_resets(netlist) == 2
    dcca = cells["unit_resets_global$dcca"]
    assert dcca["type"] == "DCCA" and dcca["connections"]["CE"] == ["1"]
    assert dcca["connections"]["CLKI"] == [20]          # the first unit's copy, by name
    net = dcca["connections"]["CLKO"]
    assert net[0] > 41 and netlist["modules"]["top"]["netnames"]["unit_resets_global"]["bits"] == net
    assert cells["conv1.count"]["connections"]["LSR"] == net
    assert cells["conv2_window.row"]["connections"]["LSR"] == net
    assert cells["conv2_window.async"]["connections"]["LSR"] == [21]
    assert cells["held"]["connections"]["LSR"] == [11]
    assert cells["data"]["connections"]["LSR"] == ["0"]
    assert cells["lut"]["connections"]["A"] == [20]
    # copies that are not one signal two plain registers late: nothing is joined
    odd = json.loads(json.dumps(before))
    odd["modules"]["top"]["cells"]["rst_conv2_window_copy.q_TRELLIS_FF_Q"] = _ff(40, 21)
    assert join_unit_resets(odd) == 0 and "unit_resets_global$dcca" not in \
        odd["modules"]["top"]["cells"]
    # a netlist without the reset tree: nothing changes
    plain = {"modules": {"top": {"cells": {"a": _ff(1, 2, lsr=3)}}}}
    assert join_unit_resets(plain) == 0 and len(plain["modules"]["top"]["cells"]) == 1
